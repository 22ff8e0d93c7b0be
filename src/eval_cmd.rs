//! `sparsecoder eval`: flags → `evals::evaluate`, then the table, eval.json/eval.csv and the plots; and
//! `sparsecoder report`, several layers' evaluations in one report.

use anyhow::Result;
use clap::Args;
use evals::paper_report::{self, LayerResults};
use evals::plots::{density_histograms, fvu_vs_ce, Density};
use evals::{evaluate, EvalConfig};
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
    /// Where eval.json and eval.csv go (default: the first checkpoints folder).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn eval(cli: EvalCli) -> Result<ExitCode> {
    let out = cli
        .out
        .clone()
        .unwrap_or_else(|| cli.checkpoints[0].clone());
    let done = evaluate(&EvalConfig {
        model: cli.model,
        cache: cli.cache,
        checkpoints: cli.checkpoints,
        ce_tokens: cli.tokens,
        holdout_shards: cli.holdout_shards,
        batch_seqs: cli.batch_seqs,
        linear_baseline: cli.linear_baseline,
    })?;
    let report = &done.report;
    report.print();
    report.save(&out)?;
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
