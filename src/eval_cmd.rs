//! `sparsecoder eval`: the paper's comparison of coders on held-out data.
//!
//! - On the held-out shards of the cache: FVU over all held-out rows (Σ error² / Σ (y − mean y)², the mean
//!   taken over those rows), variance explained = 1 − FVU, L0, dead latents (never fired on the held-out rows),
//!   dense latents (fired on more than 10 % of them), and the histogram of log10 firing frequencies.
//! - On held-out sequences: the model's next-token cross-entropy clean, with layer L's MLP output replaced by
//!   the coder's prediction, and with it replaced by zeros; the increase in %, and KL(clean ‖ patched).

use crate::coders::{find_coders, load_for_cache, sides};
use anyhow::{bail, Result};
use cache_format::{Cache, Section};
use clap::Args;
use extractor::model::{MlpHook, Stop};
use extractor::source::ModelSource;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use trainer::checkpoint::CoderMeta;
use trainer::coder::{Kind, SparseCoder};
use trainer::fused_topk::QuantizedEncoder;

#[derive(Args)]
pub struct EvalCli {
    /// The model the cache was extracted from (GGUF file or Hugging Face folder).
    #[arg(long)]
    model: PathBuf,
    /// The activation cache; its held-out shards are used.
    #[arg(long)]
    cache: PathBuf,
    /// Coder folders, or folders holding coder folders (a sweep's output): every coder under them is evaluated.
    #[arg(long, num_args = 1.., required = true)]
    checkpoints: Vec<PathBuf>,
    /// Tokens of held-out sequences for the cross-entropy runs.
    #[arg(long, default_value_t = 8192)]
    tokens: u64,
    /// The last N shards are held out (as in `train`).
    #[arg(long, default_value_t = 1)]
    holdout_shards: usize,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 4)]
    batch_seqs: usize,
    /// Where eval.json and eval.csv go (default: the first checkpoints folder).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Serialize)]
struct CoderEval {
    name: String,
    kind: Kind,
    sae_on: Option<String>,
    k: usize,
    num_latents: usize,
    fvu: f64,
    variance_explained: f64,
    l0: f64,
    dead_pct: f64,
    dense_pct: f64,
    /// Latents per log10 firing frequency bin: key = floor(log10 f) ("dead" for never).
    density_histogram: BTreeMap<String, u64>,
    ce_patched: f64,
    ce_increase_pct: f64,
    kl: f64,
}

#[derive(Serialize)]
struct Report {
    cache: String,
    layer: u32,
    held_out_rows: u64,
    ce_tokens: u64,
    ce_clean: f64,
    ce_zero_ablated: f64,
    coders: Vec<CoderEval>,
}

struct ActivationStats {
    fvu: f64,
    l0: f64,
    fired: Vec<u64>,
    rows: u64,
}

fn activation_stats(
    cache: &Cache,
    held: &[usize],
    coder: &SparseCoder,
    quantized: Option<&QuantizedEncoder>,
    meta: &CoderMeta,
) -> Result<ActivationStats> {
    let (input, target) = sides(meta);
    let (d_in, d_out) = (coder.cfg.d_in, coder.cfg.d_out);
    let (mut sse, mut sum, mut sum_sq) = (0f64, vec![0f64; d_out], 0f64);
    let (mut l0, mut rows_total) = (0f64, 0u64);
    let mut fired = vec![0u64; coder.cfg.num_latents];
    const CHUNK: usize = 4096;
    for &i in held {
        let shard = cache.open_shard(i)?;
        let n = shard.rows() as usize;
        for first in (0..n).step_by(CHUNK) {
            let rows = CHUNK.min(n - first);
            let (mut x, mut y) = (vec![0f32; rows * d_in], vec![0f32; rows * d_out]);
            shard.read_rows_f32(input, first, &mut x);
            shard.read_rows_f32(target, first, &mut y);
            let enc = coder.encode_with(&x, rows, quantized);
            let y_hat = coder.decode(&enc, &x, rows);
            for (p, t) in y_hat.iter().zip(&y) {
                sse += ((p - t) as f64).powi(2);
            }
            for row in y.chunks(d_out) {
                for (s, v) in sum.iter_mut().zip(row) {
                    *s += *v as f64;
                    sum_sq += (*v as f64).powi(2);
                }
            }
            for l in SparseCoder::fired(&enc) {
                fired[l as usize] += 1;
                l0 += 1.0;
            }
            rows_total += rows as u64;
        }
    }
    let n = rows_total as f64;
    let total_variance = sum_sq - sum.iter().map(|s| s * s / n).sum::<f64>();
    Ok(ActivationStats {
        fvu: sse / total_variance,
        l0: l0 / n,
        fired,
        rows: rows_total,
    })
}

/// Complete held-out sequences (all `ctx_len` positions present), rebuilt from token ids, seq ids and positions.
fn held_out_sequences(cache: &Cache, held: &[usize], max: usize) -> Result<Vec<Vec<u32>>> {
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

/// Per position: log-softmax of a row of logits.
fn log_softmax(logits: &mut [f32], vocab: usize) {
    for row in logits.chunks_mut(vocab) {
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let lse = row
            .iter()
            .map(|&v| ((v - max) as f64).exp())
            .sum::<f64>()
            .ln() as f32
            + max;
        row.iter_mut().for_each(|v| *v -= lse);
    }
}

/// (summed next-token CE, count) of log-probabilities `lp` for sequences of `ctx` tokens.
fn ce_sum(lp: &[f32], vocab: usize, tokens: &[u32], ctx: usize) -> (f64, u64) {
    let mut total = (0.0, 0);
    for (r, row) in lp.chunks(vocab).enumerate() {
        if (r + 1) % ctx != 0 {
            total.0 -= row[tokens[r + 1] as usize] as f64;
            total.1 += 1;
        }
    }
    total
}

/// Σ over positions of KL(clean ‖ patched), from log-probabilities.
fn kl_sum(clean: &[f32], patched: &[f32]) -> f64 {
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

pub fn eval(cli: EvalCli) -> Result<ExitCode> {
    let cache = Cache::open(&cli.cache)?;
    let spec = cache.manifest().spec.clone();
    let source = ModelSource::open(&cli.model)?;
    let sha = source.sha256()?;
    if sha != spec.model.sha256 {
        bail!(
            "{}: sha256 {sha} is not that of the model the cache was extracted from ({})",
            cli.model.display(),
            spec.model.sha256
        );
    }
    let (_, held) = cache.split(cli.holdout_shards)?;
    let coder_dirs = find_coders(&cli.checkpoints)?;
    let mut coders = Vec::new();
    for dir in &coder_dirs {
        coders.push(load_for_cache(dir, &spec)?);
    }

    let ctx = spec.ctx_len as usize;
    let seqs = held_out_sequences(&cache, &held, (cli.tokens as usize / ctx).max(1))?;
    if seqs.is_empty() {
        bail!(
            "{}: the held-out shards hold no complete sequence of {ctx} tokens",
            cli.cache.display()
        );
    }
    let model = source.load(None, true)?;
    let vocab = model.info().vocab_size;
    // W_enc rounded once per coder for the screened encoder, not once per batch.
    let quantized: Vec<_> = coders
        .iter()
        .map(|(_, c, _)| c.quantize_encoder())
        .collect();
    let layer = spec.layer as usize;
    let n = coders.len();
    let (mut ce_clean, mut ce_zero, mut count) = (0f64, 0f64, 0u64);
    let (mut ce_patched, mut kl) = (vec![0f64; n], vec![0f64; n]);
    for batch in seqs.chunks(cli.batch_seqs.max(1)) {
        let tokens: Vec<u32> = batch.concat();
        let run = |patch: &mut MlpHook| {
            let mut lp = model
                .forward(&tokens, ctx, Stop::Logits, patch)
                .expect("logits");
            log_softmax(&mut lp, vocab);
            lp
        };
        let clean = run(&mut |_, _, _| {});
        let (c, m) = ce_sum(&clean, vocab, &tokens, ctx);
        ce_clean += c;
        count += m;
        ce_zero += ce_sum(
            &run(&mut |l, _, out| {
                if l == layer {
                    out.fill(0.0)
                }
            }),
            vocab,
            &tokens,
            ctx,
        )
        .0;
        for (j, (_, coder, meta)) in coders.iter().enumerate() {
            let patched = run(&mut |l, mlp_in: &[f32], out: &mut [f32]| {
                if l != layer {
                    return;
                }
                let rows = mlp_in.len() / coder.cfg.d_in;
                let encode = |x: &[f32]| coder.encode_with(x, rows, quantized[j].as_ref());
                let prediction = match sides(meta) {
                    (Section::MlpIn, Section::MlpOut) => {
                        coder.decode(&encode(mlp_in), mlp_in, rows)
                    }
                    (Section::MlpOut, _) => coder.decode(&encode(out), out, rows),
                    _ => model.mlp(l, &coder.decode(&encode(mlp_in), mlp_in, rows)),
                };
                out.copy_from_slice(&prediction);
            });
            ce_patched[j] += ce_sum(&patched, vocab, &tokens, ctx).0;
            kl[j] += kl_sum(&clean, &patched);
        }
    }
    let positions = (seqs.len() * ctx) as f64;
    let ce_clean = ce_clean / count as f64;
    let mut rows_out = Vec::new();
    let mut firing = Vec::new();
    for (j, (name, coder, meta)) in coders.iter().enumerate() {
        let a = activation_stats(&cache, &held, coder, quantized[j].as_ref(), meta)?;
        let mut hist = BTreeMap::new();
        for &f in &a.fired {
            let key = if f == 0 {
                "dead".to_string()
            } else {
                format!("{}", (f as f64 / a.rows as f64).log10().floor() as i32)
            };
            *hist.entry(key).or_insert(0) += 1;
        }
        let latents = coder.cfg.num_latents as f64;
        let cep = ce_patched[j] / count as f64;
        rows_out.push(CoderEval {
            name: name.clone(),
            kind: coder.cfg.kind,
            sae_on: meta.sae_on.clone(),
            k: coder.cfg.k,
            num_latents: coder.cfg.num_latents,
            fvu: a.fvu,
            variance_explained: 1.0 - a.fvu,
            l0: a.l0,
            dead_pct: 100.0 * a.fired.iter().filter(|&&f| f == 0).count() as f64 / latents,
            dense_pct: 100.0
                * a.fired
                    .iter()
                    .filter(|&&f| f as f64 > 0.1 * a.rows as f64)
                    .count() as f64
                / latents,
            density_histogram: hist,
            ce_patched: cep,
            ce_increase_pct: 100.0 * (cep - ce_clean) / ce_clean,
            kl: kl[j] / positions,
        });
        firing.push((a.fired, a.rows));
    }
    let report = Report {
        cache: cli.cache.display().to_string(),
        layer: spec.layer,
        held_out_rows: held.iter().map(|&i| cache.manifest().shards[i].rows).sum(),
        ce_tokens: count,
        ce_clean,
        ce_zero_ablated: ce_zero / count as f64,
        coders: rows_out,
    };
    let out = cli.out.as_deref().unwrap_or(&cli.checkpoints[0]);
    print_and_save(&report, out)?;
    let densities: Vec<crate::plots::Density> = report
        .coders
        .iter()
        .zip(&firing)
        .map(|(c, (fired, rows))| crate::plots::Density {
            name: &c.name,
            fired,
            rows: *rows,
        })
        .collect();
    let points: Vec<(String, f64, f64)> = report
        .coders
        .iter()
        .map(|c| (c.name.clone(), c.fvu, c.ce_increase_pct))
        .collect();
    let plotted = crate::plots::density_histograms(&out.join("density.png"), &densities)
        .and_then(|_| crate::plots::fvu_vs_ce(&out.join("fvu_vs_ce.png"), &points));
    match plotted {
        Ok(()) => println!(
            "wrote {} and {}",
            out.join("density.png").display(),
            out.join("fvu_vs_ce.png").display()
        ),
        Err(e) => eprintln!("warning: no plots: {e:#}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_and_save(r: &Report, out: &Path) -> Result<()> {
    println!(
        "layer {}: {} held-out rows; CE on {} tokens: clean {:.4}, zero-ablated MLP {:.4} (+{:.2} %)",
        r.layer,
        r.held_out_rows,
        r.ce_tokens,
        r.ce_clean,
        r.ce_zero_ablated,
        100.0 * (r.ce_zero_ablated - r.ce_clean) / r.ce_clean
    );
    let header = "coder,kind,k,latents,fvu,variance_explained,l0,dead_pct,dense_pct,ce_clean,ce_patched,ce_increase_pct,kl";
    println!(
        "{:<26} {:>5} {:>4} {:>7} {:>8} {:>7} {:>7} {:>7} {:>9} {:>9} {:>7} {:>8}",
        "coder",
        "kind",
        "k",
        "latents",
        "FVU",
        "L0",
        "dead%",
        "dense%",
        "CE clean",
        "CE patch",
        "ΔCE %",
        "KL"
    );
    let mut csv = format!("{header}\n");
    for c in &r.coders {
        println!(
            "{:<26} {:>5} {:>4} {:>7} {:>8.4} {:>7.2} {:>7.2} {:>7.2} {:>9.4} {:>9.4} {:>7.2} {:>8.4}",
            c.name, c.kind.short(), c.k, c.num_latents, c.fvu, c.l0, c.dead_pct, c.dense_pct, r.ce_clean, c.ce_patched, c.ce_increase_pct, c.kl
        );
        csv += &format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            c.name,
            c.kind.short(),
            c.k,
            c.num_latents,
            c.fvu,
            c.variance_explained,
            c.l0,
            c.dead_pct,
            c.dense_pct,
            r.ce_clean,
            c.ce_patched,
            c.ce_increase_pct,
            c.kl
        );
    }
    std::fs::create_dir_all(out)?;
    cache_format::fsutil::write_atomic(&out.join("eval.json"), |w| {
        w.write_all(serde_json::to_string_pretty(r)?.as_bytes())
    })?;
    cache_format::fsutil::write_atomic(&out.join("eval.csv"), |w| w.write_all(csv.as_bytes()))?;
    println!(
        "wrote {} and {}",
        out.join("eval.json").display(),
        out.join("eval.csv").display()
    );
    Ok(())
}
