//! Local generation (the offline model of `interp`) against transformers on the same GGUF
//! (scripts/golden_generate.py): the chat template renders the same prompt text and token ids, the first new
//! token's logits agree, greedy decoding gives the same tokens; and decoding over the KV cache equals the plain
//! forward pass.
use extractor::generate::{LocalChat, Sampling};
use extractor::model::{LanguageModel, Stop};
use extractor::source::ModelSource;
mod common;
use common::{rel_error, root};

fn chat() -> LocalChat {
    let model = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    LocalChat::open(&ModelSource::open(&model).unwrap()).unwrap()
}

#[test]
fn greedy_chat_matches_transformers() {
    let golden: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join("tests/fixtures/generate_smollm2.json")).unwrap(),
    )
    .unwrap();
    let chat = chat();
    for conv in golden["conversations"].as_array().unwrap() {
        let messages = conv["messages"].as_array().unwrap();
        let text = chat.template.render(messages).unwrap();
        assert_eq!(text, conv["prompt"].as_str().unwrap(), "rendered prompt");
        let ids: Vec<u32> = serde_json::from_value(conv["prompt_ids"].clone()).unwrap();
        assert_eq!(chat.prompt_ids(messages).unwrap(), ids, "prompt token ids");

        // The first new token's logits.
        let mut cache = chat.model.new_cache();
        let logits = chat.model.extend(&mut cache, &ids);
        let first = &conv["first_logits"];
        let head: Vec<f32> = serde_json::from_value(first["head"].clone()).unwrap();
        let err = rel_error(&logits[..head.len()], &head);
        println!(
            "first-token logits (ids < {}): relative error {err:.2e}",
            head.len()
        );
        assert!(err < 1e-4, "first-token logits: relative error {err:.2e}");
        let top_ids: Vec<usize> = serde_json::from_value(first["top_ids"].clone()).unwrap();
        let top: Vec<f32> = serde_json::from_value(first["top_values"].clone()).unwrap();
        let ours: Vec<f32> = top_ids.iter().map(|&i| logits[i]).collect();
        assert!(rel_error(&ours, &top) < 1e-4, "top-64 logits");

        // Greedy decoding: the same tokens (every step's top-2 gap in the fixture is far above f32 noise).
        let want: Vec<u32> = serde_json::from_value(conv["generated_ids"].clone()).unwrap();
        let gaps: Vec<f64> = serde_json::from_value(conv["top2_gaps"].clone()).unwrap();
        assert!(
            gaps.iter().all(|&g| g > 1e-3),
            "the fixture has a near-tie; regenerate with other prompts"
        );
        let greedy = Sampling {
            temperature: 0.0,
            seed: 0,
        };
        let got = chat
            .generate_ids(
                &ids,
                golden["new_tokens"].as_u64().unwrap() as usize,
                &greedy,
            )
            .unwrap();
        assert_eq!(got, want, "greedy continuation");
        let answer = chat.chat(messages, 48, &greedy).unwrap();
        assert_eq!(answer, conv["answer"].as_str().unwrap());
        println!("{answer:?}");
    }
}

#[test]
fn decoding_over_the_cache_equals_the_full_forward() {
    let chat = chat();
    let ids = chat
        .tokenizer
        .encode("Errors detected during execution are called exceptions and are not unconditionally fatal.")
        .unwrap();
    let n = ids.len();
    let full = chat
        .model
        .forward(&ids, n, Stop::Logits, &mut |_, _, _| {})
        .unwrap();
    let vocab = chat.model.info().vocab_size;
    // A prefill of most of the text, then one token at a time, then a chunk of two.
    let mut cache = chat.model.new_cache();
    let mut pos = n - 5;
    let mut last = chat.model.extend(&mut cache, &ids[..pos]);
    assert!(rel_error(&last, &full[(pos - 1) * vocab..pos * vocab]) < 1e-5);
    for step in [1, 1, 1, 2] {
        last = chat.model.extend(&mut cache, &ids[pos..pos + step]);
        pos += step;
        let err = rel_error(&last, &full[(pos - 1) * vocab..pos * vocab]);
        assert!(
            err < 1e-5,
            "logits at position {}: relative error {err:.2e}",
            pos - 1
        );
    }
    assert_eq!(cache.len(), n);
}

#[test]
fn sampling_is_seeded() {
    let chat = chat();
    let messages = [serde_json::json!({"role": "user", "content": "Name a fruit."})];
    let ids = chat.prompt_ids(&messages).unwrap();
    let hot = |seed| Sampling {
        temperature: 1.0,
        seed,
    };
    let a = chat.generate_ids(&ids, 12, &hot(1)).unwrap();
    assert_eq!(
        a,
        chat.generate_ids(&ids, 12, &hot(1)).unwrap(),
        "same seed, same tokens"
    );
    let others: Vec<Vec<u32>> = (2..6)
        .map(|s| chat.generate_ids(&ids, 12, &hot(s)).unwrap())
        .collect();
    assert!(
        others.iter().any(|o| *o != a),
        "other seeds sample other tokens"
    );
}

/// A list decoded under the `[d, d, …]` format: every entry is the better of `0` and `1` given everything
/// before it, checked against a plain forward pass over the whole text (no cache); the cache kept from the
/// previous prompt changes nothing.
#[test]
fn binary_lists_choose_the_likelier_digit() {
    let chat = chat();
    let ask = |n: usize| {
        let examples: String = (1..=n)
            .map(|i| {
                format!(
                    "Example {i}: {}\n",
                    if i % 2 == 0 {
                        "the for loop"
                    } else {
                        "an exception"
                    }
                )
            })
            .collect();
        let content = format!(
            "Does each example mention a loop?\n{examples}Answer with a list of {n} numbers."
        );
        vec![serde_json::json!({"role": "user", "content": content})]
    };
    let greedy = Sampling {
        temperature: 0.0,
        seed: 0,
    };
    for n in [1, 5] {
        let messages = ask(n);
        let (answer, p_one) = chat.binary_list(&messages, n, &greedy).unwrap();
        assert_eq!(p_one.len(), n);
        let digits: Vec<&str> = answer
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(", ")
            .collect();
        assert_eq!(digits.len(), n, "{answer}");
        assert!(digits.iter().all(|d| *d == "0" || *d == "1"), "{answer}");
        let prompt = chat.prompt_ids(&messages).unwrap();
        let answer_ids = chat.tokenizer.encode(&answer).unwrap();
        let (zero, one) = (
            chat.tokenizer.encode("0").unwrap()[0],
            chat.tokenizer.encode("1").unwrap()[0],
        );
        let vocab = chat.model.info().vocab_size;
        let all: Vec<u32> = prompt.iter().chain(&answer_ids).cloned().collect();
        let logits = chat
            .model
            .forward(&all, all.len(), Stop::Logits, &mut |_, _, _| {})
            .unwrap();
        let mut entry = 0;
        for (j, &id) in answer_ids.iter().enumerate() {
            if id == zero || id == one {
                let row = &logits[(prompt.len() + j - 1) * vocab..][..vocab];
                let (l0, l1) = (row[zero as usize], row[one as usize]);
                assert_eq!(
                    id,
                    if l1 > l0 { one } else { zero },
                    "entry at token {j} of {answer}"
                );
                let p = 1.0 / (1.0 + ((l0 - l1) as f64).exp());
                assert!(
                    (p - p_one[entry]).abs() < 1e-4,
                    "P(1) of entry {entry}: {} vs {p}",
                    p_one[entry]
                );
                entry += 1;
            }
        }
        assert_eq!(entry, n);
        let again = chat.binary_list(&messages, n, &greedy).unwrap();
        assert_eq!(again.0, answer, "again, from the kept cache");
    }
}

/// Simulation's digit lists: each entry is the likeliest of the ten digit tokens given everything before it,
/// and its expected value Σ d · p(d) is the one computed by hand from a plain forward pass's logits.
#[test]
fn digit_lists_give_each_entrys_expected_digit() {
    let chat = chat();
    let n = 4;
    let content = format!(
        "Rate how much each token is about loops, from 0 to 9.\n1. \"for\"\n2. \" the\"\n3. \" while\"\n\
         4. \" list\"\nAnswer with a list of {n} digits."
    );
    let messages = vec![serde_json::json!({"role": "user", "content": content})];
    let greedy = Sampling {
        temperature: 0.0,
        seed: 0,
    };
    let (answer, expected) = chat.digit_list(&messages, n, &greedy).unwrap();
    assert_eq!(expected.len(), n);
    let digit_ids: Vec<u32> = (0..10)
        .map(|d| chat.tokenizer.encode(&d.to_string()).unwrap()[0])
        .collect();
    let prompt = chat.prompt_ids(&messages).unwrap();
    let answer_ids = chat.tokenizer.encode(&answer).unwrap();
    let vocab = chat.model.info().vocab_size;
    let all: Vec<u32> = prompt.iter().chain(&answer_ids).cloned().collect();
    let logits = chat
        .model
        .forward(&all, all.len(), Stop::Logits, &mut |_, _, _| {})
        .unwrap();
    let mut entry = 0;
    for (j, &id) in answer_ids.iter().enumerate() {
        let Some(d) = digit_ids.iter().position(|&t| t == id) else {
            continue;
        };
        let row = &logits[(prompt.len() + j - 1) * vocab..][..vocab];
        let l: Vec<f64> = digit_ids.iter().map(|&t| row[t as usize] as f64).collect();
        let best = (0..10).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap();
        assert_eq!(d, best, "entry {entry} of {answer} is the likeliest digit");
        let z: f64 = l.iter().map(|v| v.exp()).sum();
        let by_hand: f64 = l
            .iter()
            .enumerate()
            .map(|(d, v)| d as f64 * v.exp() / z)
            .sum();
        assert!(
            (by_hand - expected[entry]).abs() < 1e-3,
            "entry {entry}: expected digit {} vs {by_hand} by hand",
            expected[entry]
        );
        entry += 1;
    }
    assert_eq!(entry, n, "{answer}");
}
