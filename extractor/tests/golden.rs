//! Our GGUF reader, tokenizer and Llama forward pass against Hugging Face transformers (PyTorch, CPU, f32) on
//! the same GGUF file: fixtures made by scripts/golden_smollm2.py. Needs the real model
//! (scripts/fetch_default.sh); a missing model fails the test, it is never skipped.
use extractor::gguf::GgufFile;
use extractor::llama::Llama;
use extractor::model::{LanguageModel, MlpHook, Stop};
use extractor::ops::next_token_loss;
use extractor::tokenizer::TextTokenizer;
mod common;
use common::{ids, load_golden, rel_error, root, Golden};
use std::collections::HashMap;
use std::path::PathBuf;

pub fn model_path() -> PathBuf {
    let p = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch_default.sh first",
        p.display()
    );
    p
}

fn golden() -> Golden {
    let dir = root().join("tests/fixtures");
    load_golden(
        &dir.join("smollm2_golden.json"),
        &dir.join("smollm2_golden.safetensors"),
    )
}

#[test]
fn tokenizer_matches_transformers() {
    let g = golden();
    let gguf = GgufFile::open(&model_path()).unwrap();
    let tok = TextTokenizer::from_gguf(&gguf).unwrap();
    assert_eq!(tok.vocab_size, 49152);
    assert_eq!((tok.eos_id, tok.bos_id, tok.add_bos), (2, Some(1), false));
    let ours = tok.encode(g.meta["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        ours,
        ids(&g.meta["ids"]),
        "SmolLM2 pre-tokenizer (digits isolated)"
    );
    assert_eq!(
        ours,
        ids(&g.meta["ids_gguf"]),
        "transformers' GGUF tokenizer"
    );
    assert_eq!(ours, g.token_ids);
    let ours = tok
        .encode(g.meta["text_no_digits"].as_str().unwrap())
        .unwrap();
    assert_eq!(ours, ids(&g.meta["ids_no_digits"]));
    // Control tokens are matched whole.
    assert_eq!(tok.encode("<|im_start|>user").unwrap()[0], 1);
}

#[test]
fn forward_matches_transformers() {
    let g = golden();
    let gguf = GgufFile::open(&model_path()).unwrap();
    let model = Llama::from_gguf(&gguf, None, true).unwrap();
    let tokens = &g.token_ids;
    let n = tokens.len();
    let mut captured: HashMap<String, Vec<f32>> = HashMap::new();
    let logits = model
        .forward(tokens, n, Stop::Logits, &mut |l, mlp_in, mlp_out| {
            captured.insert(format!("mlp_in_{l}"), mlp_in.to_vec());
            captured.insert(format!("mlp_out_{l}"), mlp_out.to_vec());
        })
        .unwrap();
    for layer in [3, 7] {
        for side in ["mlp_in", "mlp_out"] {
            let key = format!("{side}_{layer}");
            let err = rel_error(&captured[&key], &g.tensors[&key]);
            println!("{key}: relative error {err:.3e}");
            assert!(err < 1e-3, "{key}: relative error {err:.3e}");
        }
    }
    let err = rel_error(&logits[(n - 1) * 49152..], &g.tensors["last_logits"]);
    println!("last-token logits: relative error {err:.3e}");
    assert!(err < 1e-3, "logits: relative error {err:.3e}");
    let loss = next_token_loss(&logits, 49152, tokens, n);
    let want = g.meta["loss"].as_f64().unwrap();
    println!("loss: ours {loss:.6}, transformers {want:.6}");
    assert!((loss - want).abs() / want < 0.005, "loss {loss} vs {want}");

    // A pass that stops after layer 7, on a model loaded only that deep, gives the same activations.
    let shallow = Llama::from_gguf(&gguf, Some(7), false).unwrap();
    let mut again = HashMap::new();
    assert!(shallow
        .forward(tokens, n, Stop::AfterLayer(7), &mut |l, _, out| {
            again.insert(l, out.to_vec());
        })
        .is_none());
    assert_eq!(again.len(), 8);
    assert_eq!(again[&7], captured["mlp_out_7"]);
}

#[test]
fn patching_the_mlp_output_matches_transformers() {
    let g = golden();
    let gguf = GgufFile::open(&model_path()).unwrap();
    let model = Llama::from_gguf(&gguf, None, true).unwrap();
    let tokens = &g.token_ids;
    let n = tokens.len();
    let loss_with = |patch: &mut MlpHook| {
        next_token_loss(
            &model.forward(tokens, n, Stop::Logits, patch).unwrap(),
            49152,
            tokens,
            n,
        )
    };
    let clean = loss_with(&mut |_, _, _| {});
    // Identity: the MLP output replaced by a copy of itself changes nothing.
    let identity = loss_with(&mut |l, _, out: &mut [f32]| {
        if l == 3 {
            let copy = out.to_vec();
            out.copy_from_slice(&copy);
        }
    });
    assert_eq!(identity, clean);
    let zero = loss_with(&mut |l, _, out: &mut [f32]| {
        if l == 3 {
            out.fill(0.0);
        }
    });
    let want = g.meta["loss_zero_ablated_layer3_mlp"].as_f64().unwrap();
    println!("zero-ablated layer 3 MLP: ours {zero:.6}, transformers {want:.6} (clean {clean:.6})");
    assert!((zero - want).abs() / want < 0.005, "{zero} vs {want}");
    assert!(
        (zero - clean).abs() > 1e-3,
        "the ablation must change the loss"
    );
}
