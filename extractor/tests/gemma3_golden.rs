//! The gemma3 architecture from GGUF (Gemma-3-270M base, Q4_K_M) against Hugging Face transformers (PyTorch,
//! CPU, f32) on the same file: fixtures made by scripts/golden_gemma3.py. Token ids (SentencePiece pieces as a
//! Unigram model with byte fallback) of a long text and of awkward short ones, MLP input and output of a local
//! and a global layer past the sliding window, last-token logits, loss, and a greedy continuation token for
//! token through the KV cache. Needs scripts/fetch_models.sh gemma (CI runs it); without the model the tests
//! say so and skip. Also: a GGUF of an architecture we do not run is refused naming it.
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

const VOCAB: usize = 262144;

fn model_path() -> Option<PathBuf> {
    let p = root().join("models/gemma-3-270m-q4_k_m.gguf");
    if p.exists() {
        Some(p)
    } else {
        println!(
            "skipped: {} is missing (scripts/fetch_models.sh gemma)",
            p.display()
        );
        None
    }
}

fn golden() -> Golden {
    let dir = root().join("tests/fixtures");
    load_golden(
        &dir.join("gemma3_golden.json"),
        &dir.join("gemma3_golden.safetensors"),
    )
}

/// BOS (Gemma's tokenizer adds it) and the text's ids.
fn with_bos(tok: &TextTokenizer, text: &str) -> Vec<u32> {
    let mut v = vec![tok.bos_id.unwrap()];
    v.extend(tok.encode(text).unwrap());
    v
}

#[test]
fn gemma3_tokenizer_matches_transformers() {
    let Some(path) = model_path() else { return };
    let g = golden();
    let tok = TextTokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
    assert_eq!((tok.bos_id, tok.eos_id, tok.add_bos), (Some(2), 1, true));
    let text = g.meta["text"].as_str().unwrap();
    assert_eq!(with_bos(&tok, text), ids(&g.meta["ids"]), "the long text");
    let texts = g.meta["texts"].as_array().unwrap();
    for (i, t) in texts.iter().enumerate() {
        let t = t.as_str().unwrap();
        let ours = with_bos(&tok, t);
        assert_eq!(ours, ids(&g.meta["texts_ids"][i]), "{t:?}");
        let back = tok.inner.decode(&ours, false).unwrap();
        assert_eq!(back, g.meta["texts_decoded"][i].as_str().unwrap(), "{t:?}");
    }
}

#[test]
fn gemma3_forward_and_greedy_generation_match_transformers() {
    let Some(path) = model_path() else { return };
    let g = golden();
    let gguf = GgufFile::open(&path).unwrap();
    let model = Llama::from_gguf(&gguf, None, true).unwrap();
    let c = &model.config;
    assert_eq!((c.head_dim, c.sliding_window), (256, Some(512)));
    let tokens = g.token_ids.clone();
    let n = tokens.len();
    assert!(n > 512, "the text must be longer than the sliding window");
    let mut captured: HashMap<String, Vec<f32>> = HashMap::new();
    let logits = model
        .forward(&tokens, n, Stop::Logits, &mut |l, mlp_in, mlp_out| {
            captured.insert(format!("mlp_in_{l}"), mlp_in.to_vec());
            captured.insert(format!("mlp_out_{l}"), mlp_out.to_vec());
        })
        .unwrap();
    // The fixture keeps the last positions (past the window) of each layer's MLP tensors.
    let kept = g.meta["last_positions"].as_u64().unwrap() as usize * c.d_model;
    for layer in g.meta["layers"].as_array().unwrap() {
        for side in ["mlp_in", "mlp_out"] {
            let key = format!("{side}_{layer}");
            let ours = &captured[&key];
            let err = rel_error(&ours[ours.len() - kept..], &g.tensors[&key]);
            println!("{key}: relative error {err:.3e}");
            assert!(err < 1e-3, "{key}: relative error {err:.3e}");
        }
    }
    let err = rel_error(&logits[(n - 1) * VOCAB..], &g.tensors["last_logits"]);
    println!("last-token logits: relative error {err:.3e}");
    assert!(err < 1e-3, "logits: relative error {err:.3e}");
    let loss = next_token_loss(&logits, VOCAB, &tokens, n);
    let want = g.meta["loss"].as_f64().unwrap();
    println!("loss: ours {loss:.6}, transformers {want:.6}");
    assert!((loss - want).abs() / want < 0.005, "loss {loss} vs {want}");

    // Greedy decoding through the KV cache, token for token.
    let prompt = ids(&g.meta["prompt_ids"]);
    let want = ids(&g.meta["greedy_ids"]);
    let mut cache = model.new_cache();
    let mut next = model.extend(&mut cache, &prompt);
    let mut got = Vec::new();
    for _ in 0..want.len() {
        let id = next
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0 as u32;
        got.push(id);
        next = model.extend(&mut cache, &[id]);
    }
    assert_eq!(got, want, "greedy continuation of {:?}", g.meta["prompt"]);
}

#[test]
fn a_base_model_without_a_chat_template_is_refused_as_a_chat_model() {
    let Some(path) = model_path() else { return };
    let err = extractor::generate::LocalChat::open(&ModelSource::open(&path).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no chat template"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// A GGUF v3 file holding only `general.architecture` (no tensors).
fn gguf_of_architecture(path: &std::path::Path, arch: &str) {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes()); // tensors
    b.extend(1u64.to_le_bytes()); // metadata entries
    let key = b"general.architecture";
    b.extend((key.len() as u64).to_le_bytes());
    b.extend(key);
    b.extend(8u32.to_le_bytes()); // string
    b.extend((arch.len() as u64).to_le_bytes());
    b.extend(arch.as_bytes());
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_gguf_of_an_architecture_we_do_not_run_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mamba.gguf");
    gguf_of_architecture(&p, "mamba");
    let source = ModelSource::open(&p).unwrap();
    let err = source.num_layers().unwrap_err().to_string();
    assert!(
        err.contains("general.architecture is \"mamba\", which sparsecoder does not run from GGUF (it runs llama, qwen2, gemma3)"),
        "{err}"
    );
    let err = Llama::from_gguf(&GgufFile::open(&p).unwrap(), None, false)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("general.architecture is \"mamba\""), "{err}");
}
