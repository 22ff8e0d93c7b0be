//! Documents → fixed-length token sequences, as sparsify's `chunk_and_tokenize` makes them: documents in groups
//! of 2048 are joined with EOS (with a leading EOS), cut into `ctx_len` tokens, and each group's short remainder
//! is dropped. Sequences are then shuffled with a seed (through a bounded buffer, so memory stays bounded) and
//! cut to `max_tokens`.

use crate::corpus::{for_each_document, CorpusStats};
use crate::tokenizer::TextTokenizer;
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::path::Path;

/// sparsify maps its dataset in batches of this many documents.
const DOCS_PER_GROUP: usize = 2048;

#[derive(Clone, Debug)]
pub struct SequenceConfig {
    pub ctx_len: usize,
    pub seed: u64,
    pub max_tokens: Option<u64>,
    /// Sequences held for shuffling; a corpus with fewer is shuffled globally.
    pub shuffle_buffer: usize,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SequenceStats {
    pub corpus: CorpusStats,
    pub tokens_in_corpus: u64,
    pub sequences_available: u64,
    pub sequences: u64,
}

/// Returns `sequences × ctx_len` token ids, row-major; row `i` is sequence id `i`.
pub fn build_sequences(
    text: &Path,
    text_field: &str,
    tok: &TextTokenizer,
    cfg: &SequenceConfig,
) -> Result<(Vec<u32>, SequenceStats)> {
    let ctx = cfg.ctx_len;
    let want = cfg.max_tokens.map(|t| (t / ctx as u64).max(1));
    let mut stats = SequenceStats::default();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut buffer: Vec<Vec<u32>> = Vec::new();
    let mut out: Vec<u32> = Vec::new();
    let mut group: Vec<String> = Vec::new();
    let mut emitted = 0u64;

    let mut flush = |group: &mut Vec<String>,
                     buffer: &mut Vec<Vec<u32>>,
                     stats: &mut SequenceStats|
     -> Result<()> {
        let encoded: Vec<Result<Vec<u32>>> = group.par_iter().map(|d| tok.encode(d)).collect();
        group.clear();
        let mut ids = Vec::new();
        for doc in encoded {
            ids.push(tok.eos_id);
            ids.extend(doc?);
        }
        stats.tokens_in_corpus += ids.len() as u64;
        let body = if tok.add_bos { ctx - 1 } else { ctx };
        for chunk in ids.chunks_exact(body) {
            let mut seq = Vec::with_capacity(ctx);
            if tok.add_bos {
                seq.push(tok.bos_id.unwrap_or(tok.eos_id));
            }
            seq.extend_from_slice(chunk);
            stats.sequences_available += 1;
            // Bounded shuffle: once full, each new sequence evicts a random one.
            if buffer.len() < cfg.shuffle_buffer {
                buffer.push(seq);
            } else {
                let j = rng.random_range(0..buffer.len());
                let evicted = std::mem::replace(&mut buffer[j], seq);
                if want.is_none_or(|w| emitted < w) {
                    out.extend(evicted);
                    emitted += 1;
                }
            }
        }
        Ok(())
    };

    let corpus = for_each_document(text, text_field, |doc| {
        group.push(doc);
        if group.len() == DOCS_PER_GROUP {
            flush(&mut group, &mut buffer, &mut stats)?;
        }
        Ok(())
    })?;
    if !group.is_empty() {
        flush(&mut group, &mut buffer, &mut stats)?;
    }
    // Fisher–Yates over what is left, with the same generator.
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x9e37_79b9_7f4a_7c15);
    for i in (1..buffer.len()).rev() {
        buffer.swap(i, rng.random_range(0..=i));
    }
    for seq in buffer {
        if want.is_some_and(|w| emitted >= w) {
            break;
        }
        out.extend(seq);
        emitted += 1;
    }
    stats.corpus = corpus;
    stats.sequences = emitted;
    if emitted == 0 {
        bail!(
            "{}: the corpus gives no full sequence of {ctx} tokens ({} tokens in all); use a smaller --ctx-len",
            text.display(),
            stats.tokens_in_corpus
        );
    }
    Ok((out, stats))
}
