//! `sparsecoder eval`: flags → `evals::evaluate`, then the table, eval.json/eval.csv and the plots; and
//! `sparsecoder report`, several layers' evaluations in one report.

use anyhow::Result;
use clap::Args;
use evals::absorption::{AbsorptionConfig, LatentDirection};
use evals::paper_report::{self, LayerResults};
use evals::plots::{absorption_by_letter, density_histograms, fvu_vs_ce, Density};
use evals::probing::ProbingConfig;
use evals::{evaluate, probing_tasks, EvalConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
// A negative number is a (refused) value, not an unknown flag: the error then names the flag.
#[command(allow_negative_numbers = true)]
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
    /// Also the linear baseline: ridge regression mlp_in → mlp_out fit on the training shards (the ridge
    /// term chosen on the last of them), its held-out FVU and the CE/KL with it patched in.
    #[arg(long)]
    linear_baseline: bool,
    /// Also sparse probing (SAEBench's method) on these tasks: `builtin` (all built-in tasks), `docs-section`,
    /// `code-vs-prose`, or a .jsonl/.parquet file with a text and a label column. Writes probing.json too.
    #[arg(long, num_args = 1..)]
    probing: Vec<String>,
    /// The Python docs' sources the built-in probing tasks are made from.
    #[arg(long, default_value = "data/python-3.11-docs")]
    probing_corpus: PathBuf,
    /// Training examples drawn per class of a probing task.
    #[arg(long, default_value_t = 200)]
    probing_train: usize,
    /// Test examples drawn per class of a probing task.
    #[arg(long, default_value_t = 50)]
    probing_test: usize,
    /// Tokens each probing example is cut to (SAEBench: 128).
    #[arg(long, default_value_t = 128)]
    probing_ctx: usize,
    /// The text column of a probing file.
    #[arg(long, default_value = "text")]
    probing_text_field: String,
    /// The label column of a probing file (string, integer or boolean).
    #[arg(long, default_value = "label")]
    probing_label_field: String,
    /// Seed of the probing examples' draw.
    #[arg(long, default_value_t = 42)]
    probing_seed: u64,
    /// Also feature absorption (SAEBench's first-letter method): letter probes on the hook each coder reads,
    /// k-sparse probes on its latents, absorption fraction and full-absorption rate. Writes absorption.json
    /// and absorption.png too.
    #[arg(long)]
    absorption: bool,
    /// Use this many of the tokenizer's alphabetic words (a seeded draw; default: all, as SAEBench).
    #[arg(long)]
    absorption_words: Option<usize>,
    /// A letter counts when its probe's test F1 exceeds this (SAEBench: 0.6).
    #[arg(long, default_value_t = 0.6)]
    absorption_min_f1: f64,
    /// Absorption needs at least this many letters that count (SAEBench: 20).
    #[arg(long, default_value_t = 20)]
    absorption_min_letters: usize,
    /// The latent vector compared with the probe: `auto` (decoder row for an SAE, as SAEBench; encoder row
    /// for a transcoder, whose decoder writes the MLP output, not the input the probe reads), `encoder`,
    /// `decoder`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "encoder", "decoder"])]
    absorption_direction: String,
    /// Seed of the words' draw, the prompts' examples and the probes' training.
    #[arg(long, default_value_t = 42)]
    absorption_seed: u64,
    /// Where eval.json and eval.csv go (default: the first checkpoints folder).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn eval(cli: EvalCli) -> Result<ExitCode> {
    let out = cli
        .out
        .clone()
        .unwrap_or_else(|| cli.checkpoints[0].clone());
    let probing = probing_config(&cli)?;
    let absorption = cli.absorption.then_some(AbsorptionConfig {
        max_words: cli.absorption_words,
        min_probe_f1: cli.absorption_min_f1,
        min_letters: cli.absorption_min_letters,
        direction: match cli.absorption_direction.as_str() {
            "encoder" => LatentDirection::Encoder,
            "decoder" => LatentDirection::Decoder,
            _ => LatentDirection::Auto,
        },
        seed: cli.absorption_seed,
    });
    let done = evaluate(&EvalConfig {
        model: cli.model,
        cache: cli.cache,
        checkpoints: cli.checkpoints,
        ce_tokens: cli.tokens,
        holdout_shards: cli.holdout_shards,
        batch_seqs: cli.batch_seqs,
        linear_baseline: cli.linear_baseline,
        probing,
        absorption,
    })?;
    let report = &done.report;
    report.print();
    report.save(&out)?;
    if let Some(p) = &done.probing {
        p.save(&out)?;
    }
    if let Some(a) = &done.absorption {
        a.save(&out)?;
        let png = out.join("absorption.png");
        match absorption_by_letter(&png, a) {
            Ok(()) => println!("wrote {}", png.display()),
            Err(e) => eprintln!("warning: no absorption plot: {e:#}"),
        }
    }
    let densities: Vec<Density> = report
        .coders
        .iter()
        .zip(done.fired.iter().zip(&done.mean_activation))
        .map(|(c, (fired, mean_activation))| Density {
            name: &c.name,
            fired,
            mean_activation,
            rows: report.held_out_rows,
        })
        .collect();
    let points: Vec<(String, f64, f64)> = report
        .coders
        .iter()
        .map(|c| (c.name.clone(), c.fvu, c.ce_increase_pct))
        .collect();
    let (density, fvu_ce) = (out.join("density.png"), out.join("fvu_vs_ce.png"));
    match density_histograms(&density, &densities).and_then(|_| fvu_vs_ce(&fvu_ce, &points)) {
        Ok(()) => println!("wrote {} and {}", density.display(), fvu_ce.display()),
        Err(e) => eprintln!("warning: no plots: {e:#}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The probing tasks `--probing` names, loaded (`evaluate` checks them before the model runs).
fn probing_config(cli: &EvalCli) -> Result<Option<ProbingConfig>> {
    if cli.probing.is_empty() {
        return Ok(None);
    }
    let mut specs: Vec<&str> = Vec::new();
    for spec in &cli.probing {
        match spec.as_str() {
            "builtin" => specs.extend(probing_tasks::BUILTIN),
            s => specs.push(s),
        }
    }
    let tasks = specs
        .into_iter()
        .map(|s| {
            probing_tasks::load_task(
                s,
                &cli.probing_corpus,
                &cli.probing_text_field,
                &cli.probing_label_field,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(ProbingConfig {
        tasks,
        train_per_class: cli.probing_train,
        test_per_class: cli.probing_test,
        ctx_len: cli.probing_ctx,
        seed: cli.probing_seed,
    }))
}

/// `sparsecoder report`: several layers' evaluated sweeps in one report.
pub fn paper_report(sweeps: &[PathBuf], out: &Path) -> Result<ExitCode> {
    let layers = sweeps
        .iter()
        .map(|d| LayerResults::load(d))
        .collect::<Result<Vec<_>>>()?;
    paper_report::write(&layers, out)?;
    println!("{}", out.join("report.md").display());
    Ok(ExitCode::SUCCESS)
}
