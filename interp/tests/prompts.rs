//! The prompts on fixed inputs against committed golden copies (interp/tests/golden/*.json), so any change to
//! what the explainer and scorers are asked is deliberate: regenerate with SPARSECODER_UPDATE_GOLDEN=1 and
//! review the diff.
use interp::chat::ChatMessage;
use interp::prompts::{
    detection_prompt, explain_prompt, fuzzing_prompt, render_window, ExplainerExample,
};
use std::path::PathBuf;

fn check(name: &str, messages: &[ChatMessage]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(messages).unwrap() + "\n";
    if std::env::var_os("SPARSECODER_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let golden =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        text,
        golden,
        "{name}: the prompt differs from {}",
        path.display()
    );
}

fn tokens(s: &[&str]) -> Vec<String> {
    s.iter().map(|t| t.to_string()).collect()
}

#[test]
fn explainer_prompt_is_the_golden_one() {
    let a = tokens(&[
        "The",
        " for",
        " statement",
        " iterates",
        " over",
        " items",
        ".",
    ]);
    let b = tokens(&[
        "Use", " a", " for", " loop", ":", "\n", "for", " x", " in", " y",
    ]);
    let examples = [
        ExplainerExample {
            text: render_window(&a, &[false, true, false, false, false, false, false]),
            active: vec![(" for".into(), 10)],
        },
        ExplainerExample {
            text: render_window(
                &b,
                &[
                    false, false, true, false, false, false, true, false, false, false,
                ],
            ),
            active: vec![(" for".into(), 7), ("for".into(), 3)],
        },
    ];
    check("explain", &explain_prompt(&examples));
}

#[test]
fn scoring_prompts_are_the_golden_ones() {
    let plain = vec![
        "The for statement iterates over items.".to_string(),
        "Errors detected during execution are called exceptions.".to_string(),
    ];
    check(
        "detection",
        &detection_prompt("the keyword \"for\" in loops", &plain),
    );
    let marked = vec![
        "The <<for>> statement iterates over items.".to_string(),
        "Errors <<detected>> during execution are called exceptions.".to_string(),
    ];
    check(
        "fuzzing",
        &fuzzing_prompt("the keyword \"for\" in loops", &marked),
    );
}
