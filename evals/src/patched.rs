//! The model's next-token loss with a coder patched in place of one layer's MLP.
//!
//! For each batch of held-out sequences: the clean log-probabilities; those with layer L's MLP output replaced
//! by zeros; and for each coder, those with it replaced by the coder's prediction — a transcoder's from the
//! MLP input, an SAE on mlp_out's reconstruction of the output, an SAE on mlp_in's reconstruction of the input
//! run through the MLP. Sums of cross-entropy and KL(clean ‖ patched) are kept in f64.

use anyhow::{anyhow, Result};
use cache_format::{Cache, Side};
use extractor::model::{LanguageModel, MlpHook, Stop};
use extractor::ops::{ce_sum, log_softmax};
use std::collections::BTreeMap;
use trainer::checkpoint::LoadedCoder;
use trainer::coder::Encoder;
use trainer::regression::AffineMap;

/// Complete held-out sequences (all `ctx_len` positions present), rebuilt from token ids, seq ids and
/// positions, at most `max`.
pub fn held_out_sequences(cache: &Cache, held: &[usize], max: usize) -> Result<Vec<Vec<u32>>> {
    let ctx = cache.manifest().spec.ctx_len as usize;
    let mut seqs: BTreeMap<u64, Vec<Option<u32>>> = BTreeMap::new();
    for &i in held {
        let shard = cache.open_shard(i)?;
        for ((&t, &s), &p) in shard
            .token_ids()
            .iter()
            .zip(shard.seq_ids())
            .zip(shard.positions())
        {
            seqs.entry(s).or_insert_with(|| vec![None; ctx])[p as usize] = Some(t);
        }
    }
    Ok(seqs
        .into_values()
        .filter_map(|s| s.into_iter().collect::<Option<Vec<u32>>>())
        .take(max)
        .collect())
}

/// Σ over positions of KL(clean ‖ patched), from log-probabilities (terms of clean probability below e⁻⁸⁰
/// skipped).
pub fn kl_sum(clean: &[f32], patched: &[f32]) -> f64 {
    clean
        .iter()
        .zip(patched)
        .map(|(&c, &p)| {
            if c > -80.0 {
                (c as f64).exp() * (c - p) as f64
            } else {
                0.0
            }
        })
        .sum()
}

/// Summed losses over every evaluated position.
pub struct PatchedLosses {
    /// Positions with a target.
    pub count: u64,
    /// Positions of the sequences (the KL's denominator).
    pub positions: u64,
    pub ce_clean: f64,
    pub ce_zero: f64,
    /// Per coder.
    pub ce_patched: Vec<f64>,
    pub kl: Vec<f64>,
    /// With the linear baseline patched in, when it is evaluated: (CE sum, KL sum).
    pub linear: Option<(f64, f64)>,
}

impl PatchedLosses {
    /// Mean clean cross-entropy.
    pub fn ce_clean(&self) -> f64 {
        self.ce_clean / self.count as f64
    }
}

/// What replaces the MLP: the coders (each made ready as its encoder) and, optionally, the linear baseline.
pub struct Replacements<'a> {
    pub coders: &'a [LoadedCoder],
    pub encoders: &'a [Encoder<'a>],
    pub linear: Option<&'a AffineMap>,
}

/// The losses of `seqs` (each of `ctx` tokens), clean, with layer `layer`'s MLP zeroed, and with each
/// replacement patched in, `batch_seqs` sequences per forward pass.
pub fn losses(
    model: &dyn LanguageModel,
    seqs: &[Vec<u32>],
    ctx: usize,
    layer: usize,
    with: &Replacements,
    batch_seqs: usize,
) -> Result<PatchedLosses> {
    let (coders, encoders) = (with.coders, with.encoders);
    let vocab = model.info().vocab_size;
    let mut sums = PatchedLosses {
        count: 0,
        positions: (seqs.len() * ctx) as u64,
        ce_clean: 0.0,
        ce_zero: 0.0,
        ce_patched: vec![0.0; coders.len()],
        kl: vec![0.0; coders.len()],
        linear: with.linear.map(|_| (0.0, 0.0)),
    };
    for batch in seqs.chunks(batch_seqs.max(1)) {
        let tokens: Vec<u32> = batch.concat();
        let run = |patch: &mut MlpHook| -> Result<Vec<f32>> {
            let mut lp = model
                .forward(&tokens, ctx, Stop::Logits, patch)
                .ok_or_else(|| anyhow!("the model returned no logits"))?;
            log_softmax(&mut lp, vocab);
            Ok(lp)
        };
        let clean = run(&mut |_, _, _| {})?;
        let (c, m) = ce_sum(&clean, vocab, &tokens, ctx);
        sums.ce_clean += c;
        sums.count += m;
        let zeroed = run(&mut |l, _, out| {
            if l == layer {
                out.fill(0.0)
            }
        })?;
        sums.ce_zero += ce_sum(&zeroed, vocab, &tokens, ctx).0;
        for (j, (c, encoder)) in coders.iter().zip(encoders).enumerate() {
            let patched = run(&mut |l, mlp_in: &[f32], out: &mut [f32]| {
                if l == layer {
                    let prediction = predict(model, l, c, encoder, mlp_in, &*out);
                    out.copy_from_slice(&prediction);
                }
            })?;
            sums.ce_patched[j] += ce_sum(&patched, vocab, &tokens, ctx).0;
            sums.kl[j] += kl_sum(&clean, &patched);
        }
        if let (Some(map), Some((ce, kl))) = (with.linear, sums.linear.as_mut()) {
            let patched = run(&mut |l, mlp_in: &[f32], out: &mut [f32]| {
                if l == layer {
                    out.copy_from_slice(&map.predict(mlp_in, mlp_in.len() / map.d_in));
                }
            })?;
            *ce += ce_sum(&patched, vocab, &tokens, ctx).0;
            *kl += kl_sum(&clean, &patched);
        }
    }
    Ok(sums)
}

/// What the coder puts in place of layer `l`'s MLP output `out`, given the MLP's input.
fn predict(
    model: &dyn LanguageModel,
    l: usize,
    c: &LoadedCoder,
    encoder: &Encoder,
    mlp_in: &[f32],
    out: &[f32],
) -> Vec<f32> {
    let coder = &c.coder;
    let rows = mlp_in.len() / coder.cfg.d_in;
    let reconstruct = |x: &[f32]| coder.decode(&encoder.encode(x, rows), x, rows);
    match c.meta.sides() {
        (Side::MlpIn, Side::MlpOut) => reconstruct(mlp_in),
        (Side::MlpOut, _) => reconstruct(out),
        (Side::MlpIn, Side::MlpIn) => model.mlp(l, &reconstruct(mlp_in)),
    }
}
