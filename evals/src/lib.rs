//! Evaluation maths: how good a trained coder is, as the paper measures it. The command line only parses
//! `sparsecoder eval`'s flags and calls [`evaluate`], then [`report`] and [`plots`].
//!
//! - [`activations`]: on the held-out shards of the cache, FVU over all held-out rows (Σ error² / Σ (y − mean
//!   y)², the mean taken over those rows), variance explained = 1 − FVU, L0, firing counts per latent (dead:
//!   never fired on the held-out rows; dense: fired on more than 10 % of them) and their log10 histogram;
//! - [`patched`]: on held-out sequences, the model's next-token cross-entropy clean, with layer L's MLP output
//!   replaced by the coder's prediction, and with it replaced by zeros; KL(clean ‖ patched);
//! - the linear baseline (with `linear_baseline`): the ridge map mlp_in → mlp_out of `trainer::regression`,
//!   fit on the training shards, on the same held-out rows and sequences as the coders;
//! - [`report`]: the per-coder table, eval.json and eval.csv;
//! - [`logistic`]: the L2 logistic-regression probe of sparse probing and absorption (scikit-learn's objective);
//! - [`probing`] (with `probing`): SAEBench's sparse probing on the tasks of [`probing_tasks`], every coder
//!   and the raw activations of both sides;
//! - [`plots`]: density histograms, FVU against CE increase and line charts, as PNG;
//! - [`paper_report`]: several layers' sweeps in the layout of the paper's Tables 1 and 3, with its orderings
//!   checked, time to quality and the held-out FVU curves (`sparsecoder report`).
//!
//! - [`absorption`] (with `absorption`): SAEBench's feature absorption on the first-letter task of
//!   [`first_letter`], its probes trained as SAEBench trains them ([`multi_probe`]).

pub mod absorption;
pub mod activations;
pub mod first_letter;
pub mod logistic;
pub mod multi_probe;
pub mod paper_report;
pub mod patched;
pub mod plots;
pub mod probing;
pub mod probing_tasks;
pub mod report;

use anyhow::{bail, Result};
use cache_format::Cache;
use cache_format::Side;
use extractor::source::ModelSource;
use report::{AbsorptionSummary, CoderEval, LinearEval, ProbingSummary, Report};
use std::path::PathBuf;
use trainer::checkpoint::{find_coders, load_for_cache};
use trainer::regression;

/// Writes `value` as compact JSON to `out`/`name` atomically, and says where.
fn save_json<T: serde::Serialize>(out: &std::path::Path, name: &str, value: &T) -> Result<()> {
    let path = out.join(name);
    cache_format::fsutil::write_atomic(&path, |w| {
        w.write_all(serde_json::to_string(value)?.as_bytes())
    })?;
    println!("wrote {}", path.display());
    Ok(())
}

/// What to evaluate and on how much data.
#[derive(Clone, Debug)]
pub struct EvalConfig {
    /// The model the cache was extracted from.
    pub model: PathBuf,
    pub cache: PathBuf,
    /// Coder folders, or folders holding coder folders.
    pub checkpoints: Vec<PathBuf>,
    /// Tokens of held-out sequences for the cross-entropy runs.
    pub ce_tokens: u64,
    /// The last N shards are held out (as in `train`).
    pub holdout_shards: usize,
    /// Sequences per forward pass.
    pub batch_seqs: usize,
    /// Also fit and evaluate the linear baseline (ridge regression mlp_in → mlp_out on the training shards).
    pub linear_baseline: bool,
    /// Also sparse probing on these tasks.
    pub probing: Option<probing::ProbingConfig>,
    /// Also feature absorption (SAEBench's first-letter method).
    pub absorption: Option<absorption::AbsorptionConfig>,
}

/// A finished evaluation: the report, and each coder's firing counts and mean activations (for the density
/// plot).
pub struct Evaluation {
    pub report: Report,
    pub fired: Vec<Vec<u64>>,
    pub mean_activation: Vec<Vec<f64>>,
    /// Sparse probing's examples and scores in full (probing.json), when it ran.
    pub probing: Option<probing::ProbingResult>,
    /// Absorption's words, probes and per-word results (absorption.json), when it ran.
    pub absorption: Option<absorption::AbsorptionResult>,
}

/// Evaluates every coder under `cfg.checkpoints` on the cache's held-out shards and sequences.
pub fn evaluate(cfg: &EvalConfig) -> Result<Evaluation> {
    let mut counts = vec![
        ("--tokens", cfg.ce_tokens as usize),
        ("--batch-seqs", cfg.batch_seqs),
        ("--holdout-shards", cfg.holdout_shards),
    ];
    if let Some(p) = &cfg.probing {
        counts.extend([
            ("--probing-train", p.train_per_class),
            ("--probing-test", p.test_per_class),
            ("--probing-ctx", p.ctx_len),
        ]);
    }
    if let Some(a) = &cfg.absorption {
        counts.push(("--absorption-min-letters", a.min_letters));
        if let Some(n) = a.max_words {
            counts.push(("--absorption-words", n));
        }
        if !(0.0..1.0).contains(&a.min_probe_f1) {
            bail!(
                "--absorption-min-f1 must be in [0, 1), found {}",
                a.min_probe_f1
            );
        }
    }
    for (flag, v) in counts {
        if v == 0 {
            bail!("{flag} must be at least 1, found 0");
        }
    }
    // Bad probing tasks fail here, before the model is loaded.
    if let Some(p) = &cfg.probing {
        for task in &p.tasks {
            probing::check_task(task, p)?;
        }
    }
    let cache = Cache::open(&cfg.cache)?;
    let spec = cache.manifest().spec.clone();
    let source = ModelSource::open_matching(&cfg.model, &spec.model)?;
    let (_, held) = cache.split(cfg.holdout_shards)?;
    let coders = find_coders(&cfg.checkpoints)?
        .iter()
        .map(|dir| load_for_cache(dir, &spec))
        .collect::<Result<Vec<_>>>()?;
    let ctx = spec.ctx_len as usize;
    let seqs = patched::held_out_sequences(&cache, &held, (cfg.ce_tokens as usize / ctx).max(1))?;
    if seqs.is_empty() {
        bail!(
            "{}: the held-out shards hold no complete sequence of {ctx} tokens",
            cfg.cache.display()
        );
    }
    let model = source.load(None, true)?;
    // Each coder made ready to encode once (W_enc rounded for the screened encoder), not once per batch.
    let encoders: Vec<_> = coders.iter().map(|c| c.coder.encoder()).collect();
    let linear = if cfg.linear_baseline {
        let (train, _) = cache.split(cfg.holdout_shards)?;
        Some(regression::fit(&cache, &train, Side::MlpIn, Side::MlpOut)?)
    } else {
        None
    };
    let with = patched::Replacements {
        coders: &coders,
        encoders: &encoders,
        linear: linear.as_ref().map(|f| &f.map),
    };
    let losses = patched::losses(
        model.as_ref(),
        &seqs,
        ctx,
        spec.layer as usize,
        &with,
        cfg.batch_seqs,
    )?;
    let linear_baseline = match &linear {
        Some(fit) => Some(LinearEval::new(
            fit,
            activations::linear_fvu(&cache, &held, &fit.map)?,
            &losses,
        )),
        None => None,
    };
    let probed = match &cfg.probing {
        Some(p) => Some(probing::run(
            model.as_ref(),
            &source.tokenizer()?,
            spec.layer as usize,
            &coders,
            &encoders,
            p,
            cfg.batch_seqs,
        )?),
        None => None,
    };
    let absorbed = match &cfg.absorption {
        Some(a) => Some(absorption::run(
            model.as_ref(),
            &source.tokenizer()?,
            spec.layer as usize,
            &coders,
            &encoders,
            a,
        )?),
        None => None,
    };
    let mut rows = Vec::new();
    let (mut fired, mut mean_activation) = (Vec::new(), Vec::new());
    for (j, c) in coders.iter().enumerate() {
        let a = activations::stats(&cache, &held, &c.coder, &encoders[j], &c.meta)?;
        let mut row = CoderEval::new(c, &a, &losses, j);
        row.sparse_probing = probed.as_ref().map(|p| p.coders[j].summary());
        row.absorption = absorbed.as_ref().map(|a| a.coders[j].summary());
        rows.push(row);
        mean_activation.push(a.mean_activation());
        fired.push(a.fired);
    }
    let report = Report {
        cache: cfg.cache.display().to_string(),
        layer: spec.layer,
        held_out_rows: held.iter().map(|&i| cache.manifest().shards[i].rows).sum(),
        ce_tokens: losses.count,
        ce_clean: losses.ce_clean(),
        ce_zero_ablated: losses.ce_zero / losses.count as f64,
        coders: rows,
        linear_baseline,
        probing: probed.as_ref().map(ProbingSummary::new),
        absorption: absorbed.as_ref().map(AbsorptionSummary::new),
    };
    Ok(Evaluation {
        report,
        fired,
        mean_activation,
        probing: probed,
        absorption: absorbed,
    })
}
