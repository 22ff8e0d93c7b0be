//! The tokenizer: built from GGUF metadata with the `tokenizers` crate, or loaded from a Hugging Face
//! `tokenizer.json`. From GGUF: byte-level BPE (`tokenizer.ggml.model` "gpt2": vocabulary, merges,
//! pre-tokenizer type), or Gemma's SentencePiece vocabulary ("llama" in a gemma3 file: pieces and scores), which
//! transformers rebuilds as a Unigram model with byte fallback (`GGUFGemmaConverter`) and so do we; control
//! tokens are matched whole in both.

use crate::gguf::{GgufFile, Value};
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::Path;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::BPE;
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

/// The Llama 3 split, used by the `llama-bpe`/`llama3` GGUF pre-tokenizers.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split (its `tokenizer.json`): Llama 3's, with every digit on its own.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

pub struct TextTokenizer {
    pub inner: Tokenizer,
    pub eos_id: u32,
    pub bos_id: Option<u32>,
    /// Whether a BOS token starts every sequence (as the model's own tokenizer does).
    pub add_bos: bool,
    pub vocab_size: u32,
    /// sha256 of the tokenizer's definition.
    pub hash: String,
    pub source: String,
}

impl TextTokenizer {
    pub fn from_gguf(g: &GgufFile) -> Result<TextTokenizer> {
        let path = g.path().display().to_string();
        let model = g.get_str("tokenizer.ggml.model")?;
        let tokens = g.get_strings("tokenizer.ggml.tokens")?;
        let pre = g.get_str("tokenizer.ggml.pre").unwrap_or("default");
        let gemma = g
            .get_str("general.architecture")
            .is_ok_and(|a| a.starts_with("gemma"));
        let mut hasher = Sha256::new();
        hasher.update(pre.as_bytes());
        for t in &tokens {
            hasher.update(t.as_bytes());
            hasher.update([0]);
        }
        let mut tok = match model {
            "gpt2" => {
                let merges = g.get_strings("tokenizer.ggml.merges")?;
                for m in &merges {
                    hasher.update(m.as_bytes());
                    hasher.update([0]);
                }
                byte_level_bpe(&path, &tokens, &merges, pre)?
            }
            "llama" if gemma => {
                let scores = g.get_f32s("tokenizer.ggml.scores")?;
                for s in &scores {
                    hasher.update(s.to_le_bytes());
                }
                let unk = g.get_u64("tokenizer.ggml.unknown_token_id").ok();
                gemma_unigram(&path, &tokens, &scores, unk.map(|u| u as usize))?
            }
            other => bail!(
                "{path}: tokenizer.ggml.model is {other:?}; supported from GGUF: byte-level BPE (\"gpt2\") and \
                 Gemma's SentencePiece pieces (\"llama\" in a gemma file)"
            ),
        };
        // Control tokens (type 3) are matched whole in text, as special tokens.
        if let Ok(Value::Array(types)) = g.get("tokenizer.ggml.token_type") {
            let special: Vec<AddedToken> = tokens
                .iter()
                .zip(types)
                .filter(|(_, t)| t.as_u64() == Some(3))
                .map(|(s, _)| AddedToken::from(s.to_string(), true))
                .collect();
            tok.add_special_tokens(&special);
        }
        let id = |k: &str| g.get_u64(k).ok().map(|v| v as u32);
        Ok(TextTokenizer {
            inner: tok,
            eos_id: id("tokenizer.ggml.eos_token_id")
                .ok_or_else(|| anyhow!("{path}: no tokenizer.ggml.eos_token_id"))?,
            bos_id: id("tokenizer.ggml.bos_token_id"),
            add_bos: g
                .get("tokenizer.ggml.add_bos_token")
                .ok()
                .and_then(Value::as_bool)
                .unwrap_or(false),
            vocab_size: tokens.len() as u32,
            hash: format!("{:x}", hasher.finalize()),
            source: match model {
                "gpt2" => format!("gguf-metadata (pre-tokenizer {pre})"),
                _ => "gguf-metadata (sentencepiece unigram)".to_string(),
            },
        })
    }
}

/// Byte-level BPE from GGUF's vocabulary and merges, with the split of the named pre-tokenizer.
fn byte_level_bpe(path: &str, tokens: &[&str], merges: &[&str], pre: &str) -> Result<Tokenizer> {
    let vocab: std::collections::HashMap<String, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    let merges = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| {
                    anyhow!("{path}: merge {m:?} is not two tokens separated by a space")
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(
            vocab
                .into_iter()
                .collect::<tokenizers::models::bpe::Vocab>(),
            merges,
        )
        .build()
        .map_err(|e| anyhow!("{path}: building the BPE model: {e}"))?;
    let mut tok = Tokenizer::new(bpe);
    let byte_level = ByteLevel::new(false, true, true);
    let pre_tokenizer: PreTokenizerWrapper = match pre {
            // GPT-2's split inside the byte-level step.
            "default" | "gpt2" => byte_level.into(),
            // SmolLM: every digit on its own, then GPT-2's split.
            "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
            "llama3" | "llama-v3" | "llama-bpe" | "qwen2" => Sequence::new(vec![
                Split::new(
                    SplitPattern::Regex(if pre == "qwen2" { QWEN2_SPLIT } else { LLAMA3_SPLIT }.into()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| anyhow!("split regex: {e}"))?
                .into(),
                ByteLevel::new(false, true, false).into(),
            ])
            .into(),
            other => bail!("{path}: pre-tokenizer {other:?} is not supported (supported: default, gpt2, smollm, llama-bpe, qwen2)"),
        };
    tok.with_pre_tokenizer(Some(pre_tokenizer));
    tok.with_decoder(Some(ByteLevel::default()));
    Ok(tok)
}

/// Gemma's SentencePiece pieces as transformers' `GGUFGemmaConverter` rebuilds them: a Unigram model over the
/// pieces and their scores (a tab for `<0x09>`, `▁`s for a piece of spaces), byte fallback, spaces replaced by
/// `▁` before it, and the reverse when decoding.
fn gemma_unigram(
    path: &str,
    tokens: &[&str],
    scores: &[f32],
    unk: Option<usize>,
) -> Result<Tokenizer> {
    if scores.len() != tokens.len() {
        bail!(
            "{path}: tokenizer.ggml.scores has {} entries; expected one per token ({})",
            scores.len(),
            tokens.len()
        );
    }
    let vocab: Vec<(String, f64)> = tokens
        .iter()
        .zip(scores)
        .map(|(&t, &s)| {
            let piece = match t {
                "<0x09>" => "\t".to_string(),
                t if t.contains(' ') && t.trim().is_empty() => "▁".repeat(t.chars().count()),
                t => t.to_string(),
            };
            (piece, s as f64)
        })
        .collect();
    let model = Unigram::from(vocab, unk, true)
        .map_err(|e| anyhow!("{path}: building the unigram model: {e}"))?;
    let mut tok = Tokenizer::new(model);
    let replace = |a: &str, b: &str| Replace::new(a, b).map_err(|e| anyhow!("replace {a:?}: {e}"));
    tok.with_normalizer(Some(replace(" ", "▁")?));
    tok.with_pre_tokenizer(Some(
        Split::new(" ", SplitDelimiterBehavior::MergedWithPrevious, false)
            .map_err(|e| anyhow!("split: {e}"))?,
    ));
    tok.with_decoder(Some(DecoderSequence::new(vec![
        DecoderWrapper::Replace(replace("▁", " ")?),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ])));
    Ok(tok)
}

impl TextTokenizer {
    /// A Hugging Face model folder's `tokenizer.json`. EOS is `tokenizer_config.json`'s `eos_token` (what
    /// sparsify's `chunk_and_tokenize` joins documents with), else `config.json`'s `eos_token_id`. Whether BOS
    /// starts each sequence is read off the tokenizer itself: its post-processor adds it or not, as in HF.
    pub fn from_hf_folder(dir: &Path) -> Result<TextTokenizer> {
        let path = dir.join("tokenizer.json");
        let bytes = std::fs::read(&path)
            .with_context(|| format!("{}: cannot read the tokenizer", path.display()))?;
        let inner = Tokenizer::from_bytes(&bytes)
            .map_err(|e| anyhow!("{}: not a valid tokenizer.json: {e}", path.display()))?;
        let read_json = |name: &str| -> Result<Option<serde_json::Value>> {
            let p = dir.join(name);
            if !p.exists() {
                return Ok(None);
            }
            let text =
                std::fs::read(&p).with_context(|| format!("{}: cannot read", p.display()))?;
            serde_json::from_slice(&text)
                .map(Some)
                .with_context(|| format!("{}: not valid JSON", p.display()))
        };
        let tok_cfg = read_json("tokenizer_config.json")?;
        let model_cfg = read_json("config.json")?;
        let token_text = |v: &serde_json::Value| -> Option<String> {
            v.as_str()
                .or_else(|| v.get("content").and_then(|c| c.as_str()))
                .map(str::to_string)
        };
        let eos_from_tokenizer = tok_cfg
            .as_ref()
            .and_then(|c| c.get("eos_token"))
            .and_then(token_text)
            .map(|t| {
                inner.token_to_id(&t).ok_or_else(|| {
                    anyhow!(
                        "{}: eos_token {t:?} is not in {}",
                        dir.join("tokenizer_config.json").display(),
                        path.display()
                    )
                })
            })
            .transpose()?;
        let eos_from_config = model_cfg.as_ref().and_then(|c| {
            let v = c.get("eos_token_id")?;
            v.as_u64().or_else(|| v.as_array()?.first()?.as_u64())
        });
        let eos_id = eos_from_tokenizer
            .or(eos_from_config.map(|v| v as u32))
            .ok_or_else(|| {
                anyhow!(
                    "{}: no EOS token: neither tokenizer_config.json's eos_token nor config.json's eos_token_id is set",
                    dir.display()
                )
            })?;
        // A token the post-processor puts before the text is the BOS every sequence starts with.
        let probe = |special: bool| -> Result<Vec<u32>> {
            Ok(inner
                .encode("a", special)
                .map_err(|e| anyhow!("{}: {e}", path.display()))?
                .get_ids()
                .to_vec())
        };
        let (with, without) = (probe(true)?, probe(false)?);
        let bos_id = (with.len() > without.len() && with.ends_with(&without)).then(|| with[0]);
        Ok(TextTokenizer {
            vocab_size: inner.get_vocab_size(true) as u32,
            inner,
            eos_id,
            bos_id,
            add_bos: bos_id.is_some(),
            hash: format!("{:x}", Sha256::digest(&bytes)),
            source: path.display().to_string(),
        })
    }

    /// Token ids of `text`, without BOS/EOS.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }
}
