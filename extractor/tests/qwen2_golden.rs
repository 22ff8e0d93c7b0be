//! The qwen2 architecture from GGUF (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M) against Hugging Face transformers
//! (PyTorch, CPU, f32) on the same file: fixtures made by scripts/golden_qwen2.py. Token ids, MLP input and
//! output of two layers, last-token logits, loss, the ChatML prompt through the GGUF's own chat template, and
//! a greedy continuation token for token. Needs scripts/fetch_models.sh qwen (CI runs it); without the model
//! the tests say so and skip.
use extractor::generate::{LocalChat, Sampling};
use extractor::gguf::GgufFile;
use extractor::llama::Llama;
use extractor::model::{LanguageModel, Stop};
use extractor::ops::next_token_loss;
use extractor::source::ModelSource;
use extractor::tokenizer::TextTokenizer;
mod common;
use common::{ids, load_golden, rel_error, root, Golden};
use std::collections::HashMap;
use std::path::PathBuf;

const VOCAB: usize = 151936;

fn model_path() -> Option<PathBuf> {
    let p = root().join("models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
    if p.exists() {
        Some(p)
    } else {
        println!(
            "skipped: {} is missing (scripts/fetch_models.sh qwen)",
            p.display()
        );
        None
    }
}

fn golden() -> Golden {
    let dir = root().join("tests/fixtures");
    load_golden(
        &dir.join("qwen2_golden.json"),
        &dir.join("qwen2_golden.safetensors"),
    )
}

#[test]
fn qwen2_tokenizer_and_forward_match_transformers() {
    let Some(path) = model_path() else { return };
    let g = golden();
    let gguf = GgufFile::open(&path).unwrap();
    let tok = TextTokenizer::from_gguf(&gguf).unwrap();
    assert_eq!((tok.eos_id, tok.add_bos), (151645, false));
    let ours = tok.encode(g.meta["text"].as_str().unwrap()).unwrap();
    assert_eq!(ours, ids(&g.meta["ids"]), "token ids (digits one by one)");
    assert_eq!(ours, g.token_ids);

    let model = Llama::from_gguf(&gguf, None, true).unwrap();
    let n = ours.len();
    let mut captured: HashMap<String, Vec<f32>> = HashMap::new();
    let logits = model
        .forward(&ours, n, Stop::Logits, &mut |l, mlp_in, mlp_out| {
            captured.insert(format!("mlp_in_{l}"), mlp_in.to_vec());
            captured.insert(format!("mlp_out_{l}"), mlp_out.to_vec());
        })
        .unwrap();
    for layer in [3, 14] {
        for side in ["mlp_in", "mlp_out"] {
            let key = format!("{side}_{layer}");
            let err = rel_error(&captured[&key], &g.tensors[&key]);
            println!("{key}: relative error {err:.3e}");
            assert!(err < 1e-3, "{key}: relative error {err:.3e}");
        }
    }
    let err = rel_error(&logits[(n - 1) * VOCAB..], &g.tensors["last_logits"]);
    println!("last-token logits: relative error {err:.3e}");
    assert!(err < 1e-3, "logits: relative error {err:.3e}");
    let loss = next_token_loss(&logits, VOCAB, &ours, n);
    let want = g.meta["loss"].as_f64().unwrap();
    println!("loss: ours {loss:.6}, transformers {want:.6}");
    assert!((loss - want).abs() / want < 0.005, "loss {loss} vs {want}");
}

#[test]
fn qwen2_chat_template_and_greedy_generation_match_transformers() {
    let Some(path) = model_path() else { return };
    let g = golden();
    let chat = LocalChat::open(&ModelSource::open(&path).unwrap()).unwrap();
    let messages = serde_json::json!([{"role": "user", "content": "Write a Python function that returns the square of x."}]);
    let messages = messages.as_array().unwrap();
    let text = chat.template.render(messages).unwrap();
    assert_eq!(
        text,
        g.meta["chat_text"].as_str().unwrap(),
        "the GGUF's chat template, rendered"
    );
    let prompt = chat.prompt_ids(messages).unwrap();
    assert_eq!(prompt, ids(&g.meta["chat_ids"]), "prompt token ids");
    let want = ids(&g.meta["greedy_ids"]);
    let greedy = Sampling {
        temperature: 0.0,
        seed: 0,
    };
    let got = chat.generate_ids(&prompt, want.len(), &greedy).unwrap();
    println!(
        "greedy: {:?}",
        chat.tokenizer.inner.decode(&got, false).unwrap()
    );
    assert_eq!(got, want, "greedy continuation, token for token");
}
