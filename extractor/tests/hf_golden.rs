//! Hugging Face folders of the paper's three architectures (GPT-NeoX, Llama 3, Gemma 2) against transformers
//! (PyTorch, CPU, f32): tiny random-weight models and golden outputs made by scripts/make_hf_fixtures.py.
//! Token ids must be identical; MLP inputs/outputs of two layers and all logits within 1e-4 relative error.
use extractor::model::Stop;
use extractor::ops::next_token_loss;
use extractor::source::ModelSource;
mod common;
use common::{ids, load_golden, rel_error, root};
use std::collections::HashMap;

fn check_architecture(arch: &str) {
    let dir = root().join("tests/fixtures/hf").join(arch);
    let g = load_golden(&dir.join("golden.json"), &dir.join("golden.safetensors"));
    let source = ModelSource::open(&dir).unwrap();

    // Tokenizer: the same ids as transformers, BOS exactly where its tokenizer adds one.
    let tok = source.tokenizer().unwrap();
    let text = g.meta["text"].as_str().unwrap();
    let plain = tok.encode(text).unwrap();
    assert_eq!(
        plain,
        ids(&g.meta["ids_without_special_tokens"]),
        "{arch}: token ids"
    );
    assert_eq!(
        tok.add_bos,
        g.meta["bos_added"].as_bool().unwrap(),
        "{arch}: BOS"
    );
    let mut tokens = Vec::new();
    if tok.add_bos {
        tokens.push(tok.bos_id.unwrap());
    }
    tokens.extend(&plain);
    assert_eq!(tokens, g.token_ids, "{arch}: token ids with special tokens");

    let model = source.load(None, true).unwrap();
    let vocab = model.info().vocab_size;
    assert_eq!(vocab, g.meta["vocab_size"].as_u64().unwrap() as usize);
    let n = tokens.len();
    let mut captured: HashMap<String, Vec<f32>> = HashMap::new();
    let logits = model
        .forward(&tokens, n, Stop::Logits, &mut |l, mlp_in, mlp_out| {
            captured.insert(format!("mlp_in_{l}"), mlp_in.to_vec());
            captured.insert(format!("mlp_out_{l}"), mlp_out.to_vec());
        })
        .unwrap();
    for layer in [1, 2] {
        for side in ["mlp_in", "mlp_out"] {
            let key = format!("{side}_{layer}");
            let err = rel_error(&captured[&key], &g.tensors[&key]);
            println!("{arch} {key}: relative error {err:.3e}");
            assert!(err < 1e-4, "{arch} {key}: relative error {err:.3e}");
        }
    }
    let err = rel_error(&logits, &g.tensors["logits"]);
    println!("{arch} logits: relative error {err:.3e}");
    assert!(err < 1e-4, "{arch} logits: relative error {err:.3e}");
    let loss = next_token_loss(&logits, vocab, &tokens, n);
    let want = g.meta["loss"].as_f64().unwrap();
    println!("{arch} loss: ours {loss:.6}, transformers {want:.6}");
    assert!(
        (loss - want).abs() / want < 1e-4,
        "{arch}: loss {loss} vs {want}"
    );

    // Loaded only to layer 1 and stopped there: the same activations.
    let shallow = source.load(Some(1), false).unwrap();
    let mut again = HashMap::new();
    assert!(shallow
        .forward(&tokens, n, Stop::AfterLayer(1), &mut |l, _, out| {
            again.insert(l, out.to_vec());
        })
        .is_none());
    assert_eq!(again.len(), 2);
    assert_eq!(again[&1], captured["mlp_out_1"]);
}

#[test]
fn gpt_neox_matches_transformers() {
    check_architecture("gpt_neox");
}

#[test]
fn llama3_matches_transformers() {
    check_architecture("llama3");
}

#[test]
fn gemma2_matches_transformers() {
    check_architecture("gemma2");
}

#[test]
fn missing_tensor_and_bad_shape_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let src = root().join("tests/fixtures/hf/gpt_neox");
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    // Weights with one tensor left out.
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != "gpt_neox.layers.1.mlp.dense_4h_to_h.weight")
        .collect();
    safetensors::serialize_to_file(kept, None, &tmp.path().join("model.safetensors")).unwrap();
    let source = ModelSource::open(tmp.path()).unwrap();
    assert!(source.load(Some(0), false).is_ok(), "layer 0 is complete");
    let err = source.load(Some(1), false).err().unwrap().to_string();
    assert!(
        err.contains("gpt_neox.layers.1.mlp.dense_4h_to_h.weight") && err.contains("missing"),
        "{err}"
    );

    // A config whose width disagrees with the weights.
    let cfg = std::fs::read_to_string(src.join("config.json")).unwrap();
    std::fs::write(
        tmp.path().join("config.json"),
        cfg.replace("\"intermediate_size\": 256", "\"intermediate_size\": 200"),
    )
    .unwrap();
    std::fs::copy(
        src.join("model.safetensors"),
        tmp.path().join("model.safetensors"),
    )
    .unwrap();
    let err = ModelSource::open(tmp.path())
        .unwrap()
        .load(None, false)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("dense_h_to_4h.weight")
            && err.contains("[256, 64]")
            && err.contains("[200, 64]"),
        "{err}"
    );

    // An architecture we do not have.
    std::fs::write(
        tmp.path().join("config.json"),
        cfg.replace("GPTNeoXForCausalLM", "MambaForCausalLM"),
    )
    .unwrap();
    let err = ModelSource::open(tmp.path()).err().unwrap().to_string();
    assert!(
        err.contains("MambaForCausalLM") && err.contains("supported"),
        "{err}"
    );

    // No weights at all.
    std::fs::remove_file(tmp.path().join("model.safetensors")).unwrap();
    std::fs::write(tmp.path().join("config.json"), &cfg).unwrap();
    let err = ModelSource::open(tmp.path()).err().unwrap().to_string();
    assert!(err.contains("no model.safetensors"), "{err}");
}
