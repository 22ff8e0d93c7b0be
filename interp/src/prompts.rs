//! The prompts of the method (explain, detect, fuzz, simulate) and the parsers of their answers. Windows are shown
//! as text, with the tokens to point at wrapped in `<<` `>>`; every prompt is a system and a user message.
//! Answers that do not parse give `None` and are counted by the caller, never fatal.

use crate::chat::ChatMessage;

pub const OPEN: &str = "<<";
pub const CLOSE: &str = ">>";

/// A window's token strings as one line of text, with each run of marked tokens wrapped in `<<` `>>` (leading
/// whitespace of a run stays outside the marks) and newlines shown as `\n`.
pub fn render_window(token_text: &[String], marked: &[bool]) -> String {
    let mut out = String::new();
    let mut open = false;
    for (i, text) in token_text.iter().enumerate() {
        let text = text.replace('\n', "\\n");
        if marked[i] && !open {
            let trimmed = text.trim_start();
            out.push_str(&text[..text.len() - trimmed.len()]);
            out.push_str(OPEN);
            out.push_str(trimmed);
            open = true;
        } else {
            if !marked[i] && open {
                out.push_str(CLOSE);
                open = false;
            }
            out.push_str(&text);
        }
    }
    if open {
        out.push_str(CLOSE);
    }
    out
}

/// One example for the explainer: its text with the active tokens marked, and those tokens with their
/// activation on a 0–10 scale.
pub struct ExplainerExample {
    pub text: String,
    pub active: Vec<(String, u32)>,
}

const EXPLAIN_SYSTEM: &str = "You study one feature of a neural network that reads text. You will see text \
examples. In each one the tokens where the feature is active are marked <<like this>>, and the line after it \
lists each marked token with the feature's strength on it, from 1 to 10. Find what the marked tokens, and the \
words just before them, have in common. Describe it in one short sentence, on the last line, after \
\"[EXPLANATION]:\".";

pub fn explain_prompt(examples: &[ExplainerExample]) -> Vec<ChatMessage> {
    let mut user = String::new();
    for (i, e) in examples.iter().enumerate() {
        let acts: Vec<String> = e
            .active
            .iter()
            .map(|(t, a)| format!("({:?}, {a})", t.trim()))
            .collect();
        user.push_str(&format!(
            "Example {}: {}\nActivations: {}\n\n",
            i + 1,
            e.text,
            acts.join(", ")
        ));
    }
    user.push_str("Which tokens or contexts is the feature active on? One sentence, after \"[EXPLANATION]:\".");
    vec![
        ChatMessage::new("system", EXPLAIN_SYSTEM),
        ChatMessage::new("user", user),
    ]
}

/// A baseline explanation made without a language model: the `n` tokens (trimmed text, unless all whitespace)
/// that carry the most firings among `active` (each active token of the explainer's examples with its
/// activation), ties broken by summed activation, then by text. `None` when `active` has no text at all.
pub fn top_tokens_explanation(active: &[(String, f32)], n: usize) -> Option<String> {
    let mut by_token: std::collections::BTreeMap<&str, (usize, f64)> = Default::default();
    for (token, act) in active {
        // Whitespace tokens (line breaks, indentation) are features too: kept whole, shown escaped.
        let token = match token.trim() {
            "" => token.as_str(),
            trimmed => trimmed,
        };
        if !token.is_empty() {
            let e = by_token.entry(token).or_default();
            e.0 += 1;
            e.1 += *act as f64;
        }
    }
    let mut ranked: Vec<(&str, (usize, f64))> = by_token.into_iter().collect();
    ranked.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(b.1 .1.total_cmp(&a.1 .1)));
    let quoted: Vec<String> = ranked
        .iter()
        .take(n)
        .map(|(t, _)| format!("{t:?}"))
        .collect();
    match quoted.as_slice() {
        [] => None,
        [one] => Some(format!("The feature is active on the token {one}.")),
        [init @ .., last] => Some(format!(
            "The feature is active on the tokens {} and {last}.",
            init.join(", ")
        )),
    }
}

/// The explanation in an explainer's answer: the text after the last `[EXPLANATION]:`, else the answer's first
/// non-empty line (small models answer first and ramble after); its first line, trimmed, without a leading
/// `Explanation:`. `None` if that is empty.
pub fn parse_explanation(answer: &str) -> Option<String> {
    let tail = match answer.rfind("[EXPLANATION]:") {
        Some(i) => answer[i + "[EXPLANATION]:".len()..].trim_start(),
        None => answer.lines().find(|l| !l.trim().is_empty())?.trim(),
    };
    let line = tail.lines().next().unwrap_or("").trim();
    let line = line
        .strip_prefix("Explanation:")
        .or_else(|| line.strip_prefix("explanation:"))
        .unwrap_or(line)
        .trim();
    (!line.is_empty()).then(|| line.to_string())
}

// The answer format is described, never shown: small models copy an example answer whatever the examples.
const DETECT_SYSTEM: &str = "You check an explanation of a feature of a neural network that reads text. You \
get the explanation and numbered text examples. For each example, decide whether the feature, as explained, is \
active on some token of the example. Reply with a list in square brackets holding one number per example, in \
order: 1 if it is active, 0 if it is not.";

const FUZZ_SYSTEM: &str = "You check an explanation of a feature of a neural network that reads text. You get \
the explanation and numbered text examples, each with some tokens marked <<like this>>. For each example, decide \
whether the marked tokens are ones the explanation says the feature is active on. Reply with a list in square \
brackets holding one number per example, in order: 1 if the marking fits the explanation, 0 if it does not.";

fn scoring_prompt(system: &str, explanation: &str, texts: &[String]) -> Vec<ChatMessage> {
    let mut user = format!("Explanation: {explanation}\n\n");
    for (i, t) in texts.iter().enumerate() {
        user.push_str(&format!("Example {}: {t}\n", i + 1));
    }
    let n = texts.len();
    user.push_str(&format!(
        "\nAnswer with a list of {n} number{}.",
        if n == 1 { "" } else { "s" }
    ));
    vec![
        ChatMessage::new("system", system),
        ChatMessage::new("user", user),
    ]
}

/// Detection: plain windows (no marks); does the feature fire somewhere in each?
pub fn detection_prompt(explanation: &str, texts: &[String]) -> Vec<ChatMessage> {
    scoring_prompt(DETECT_SYSTEM, explanation, texts)
}

/// Fuzzing: windows with marked tokens; does each marking fit the explanation?
pub fn fuzzing_prompt(explanation: &str, texts: &[String]) -> Vec<ChatMessage> {
    scoring_prompt(FUZZ_SYSTEM, explanation, texts)
}

const SIMULATE_SYSTEM: &str = "You check an explanation of a feature of a neural network that reads text. You \
get the explanation and a text split into numbered tokens. Predict how strongly the feature, as explained, is \
active on each token, from 0 (not active) to 9 (most active); on most tokens of most texts it is not active. \
Reply with a list in square brackets holding one digit per token, in order.";

/// Simulation: the explanation and one window's tokens, numbered; the answer predicts each token's activation
/// on a 0–9 scale (one digit each, so that every value is one token for the models that read the digits).
pub fn simulation_prompt(explanation: &str, tokens: &[String]) -> Vec<ChatMessage> {
    let mut user = format!("Explanation: {explanation}\n\nTokens:\n");
    for (i, t) in tokens.iter().enumerate() {
        user.push_str(&format!("{}. {:?}\n", i + 1, t));
    }
    user.push_str(&format!("\nAnswer with a list of {} digits.", tokens.len()));
    vec![
        ChatMessage::new("system", SIMULATE_SYSTEM),
        ChatMessage::new("user", user),
    ]
}

/// The answer's list of `n` digits 0–9 (as [`parse_binary_list`] reads lists, with every digit allowed).
pub fn parse_digit_list(answer: &str, n: usize) -> Option<Vec<u8>> {
    parse_list(answer, n, 9)
}

/// The answer's list of `n` zeros and ones: the last bracketed list made only of 0s and 1s, else the 0/1
/// digits standing alone in the answer. `None` unless exactly `n` are found.
pub fn parse_binary_list(answer: &str, n: usize) -> Option<Vec<bool>> {
    Some(
        parse_list(answer, n, 1)?
            .into_iter()
            .map(|d| d == 1)
            .collect(),
    )
}

/// The answer's list of `n` single digits from 0 to `max`: the last bracketed list made only of them, else
/// such digits standing alone in the answer. `None` unless exactly `n` are found.
fn parse_list(answer: &str, n: usize, max: u8) -> Option<Vec<u8>> {
    let entry = |t: &str| -> Option<u8> {
        let d: u8 = (t.len() == 1).then(|| t.parse().ok())??;
        (d <= max).then_some(d)
    };
    let as_bits = |s: &str| -> Option<Vec<u8>> {
        s.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .map(entry)
            .collect()
    };
    let mut lists = Vec::new();
    let mut rest = answer;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else {
            break;
        };
        lists.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    if let Some(bits) = lists.iter().rev().find_map(|l| as_bits(l)) {
        return (bits.len() == n).then_some(bits);
    }
    let bits: Vec<u8> = answer
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(entry)
        .collect();
    (bits.len() == n).then_some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn top_tokens_counts_firings_then_activation() {
        let active: Vec<(String, f32)> = [
            (" open", 2.0),
            ("open", 1.0),
            (" file", 5.0),
            (" read", 1.0),
            (" read", 1.5),
            ("\n", 0.2),
            (" \"q\"", 0.5),
        ]
        .iter()
        .map(|(t, a)| (t.to_string(), *a))
        .collect();
        // open and read fire twice (open's sum 3.0 > read's 2.5), then file (5.0) before "q" (0.5) before
        // the line break (0.2), kept and escaped.
        assert_eq!(
            top_tokens_explanation(&active, 3).unwrap(),
            r#"The feature is active on the tokens "open", "read" and "file"."#
        );
        assert_eq!(
            top_tokens_explanation(&active, 4).unwrap(),
            r#"The feature is active on the tokens "open", "read", "file" and "\"q\""."#
        );
        assert_eq!(
            top_tokens_explanation(&active, 9).unwrap(),
            r#"The feature is active on the tokens "open", "read", "file", "\"q\"" and "\n"."#
        );
        assert_eq!(
            top_tokens_explanation(&active[..1], 3).unwrap(),
            r#"The feature is active on the token "open"."#
        );
        assert_eq!(top_tokens_explanation(&[], 3), None);
    }

    #[test]
    fn marks_wrap_runs_and_keep_leading_space_outside() {
        let t = strings(&["The", " for", " loop", " runs", "\n", "x"]);
        let m = [false, true, true, false, false, true];
        assert_eq!(render_window(&t, &m), "The <<for loop>> runs\\n<<x>>");
        assert_eq!(render_window(&t, &[false; 6]), "The for loop runs\\nx");
    }

    #[test]
    fn explanations_are_found() {
        assert_eq!(
            parse_explanation("Looking at these...\n[EXPLANATION]: the keyword for in loops\nmore"),
            Some("the keyword for in loops".into())
        );
        assert_eq!(
            parse_explanation("Explanation: Python loop keywords.\n"),
            Some("Python loop keywords.".into())
        );
        assert_eq!(
            parse_explanation("\nThe keyword for.\n\n- Example 1:\n- Example 2:"),
            Some("The keyword for.".into())
        );
        assert_eq!(parse_explanation("  \n [EXPLANATION]:   \n"), None);
        assert_eq!(parse_explanation(""), None);
    }

    #[test]
    fn digit_lists_parse_or_are_refused() {
        assert_eq!(parse_digit_list("[0, 3, 9]", 3), Some(vec![0, 3, 9]));
        assert_eq!(parse_digit_list("[0, 10, 9]", 3), None, "10 is not a digit");
        assert_eq!(parse_digit_list("[0, 3]", 3), None);
    }

    #[test]
    fn binary_lists_parse_or_are_refused() {
        assert_eq!(
            parse_binary_list("[1, 0, 1]", 3),
            Some(vec![true, false, true])
        );
        assert_eq!(
            parse_binary_list("Here: [a, b]\nAnswer: [0,0, 1]", 3),
            Some(vec![false, false, true])
        );
        assert_eq!(
            parse_binary_list("1 0 0 1", 4),
            Some(vec![true, false, false, true])
        );
        assert_eq!(parse_binary_list("[1, 0]", 3), None, "wrong length");
        assert_eq!(parse_binary_list("Example 1: yes", 2), None);
        assert_eq!(parse_binary_list("[1, 2, 0]", 3), None);
    }
}
