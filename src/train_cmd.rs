//! `sparsecoder train`: flags and sweeps → `trainer::train::run`, then a summary table.

use crate::flags::{self, one_of, PartFlags};
use anyhow::{anyhow, bail, Result};
use cache_format::Side;
use clap::Args;
use compute::gpu::{resolve, DeviceChoice, Resolved};
use std::path::PathBuf;
use std::process::ExitCode;
use trainer::backend::Device;
use trainer::coder::{Kind, Losses};
use trainer::cuda::engine::MAX_K;
use trainer::cuda::gpu_ops::GemmPrecision;
use trainer::train::{run, CoderSpec, SkipInit, TrainArgs};

#[derive(Args)]
// A negative number is a (refused) value, not an unknown flag: the error then names the flag.
#[command(allow_negative_numbers = true)]
pub struct TrainCli {
    /// Activation cache made by `extract`.
    #[arg(long)]
    cache: PathBuf,
    /// sae, transcoder (st) or skip-transcoder (sst).
    #[arg(long, default_value = "skip-transcoder", value_parser = one_of::<Kind>("--kind"))]
    kind: Kind,
    /// Side an SAE reconstructs: mlp_out (the paper's comparison) or mlp_in.
    #[arg(long, default_value = "mlp_out", value_parser = one_of::<Side>("--sae-on"))]
    sae_on: Side,
    /// Active latents per token.
    #[arg(long, default_value_t = 32)]
    k: usize,
    /// Number of latents (default: --expansion × width).
    #[arg(long)]
    latents: Option<usize>,
    /// Latents per input dimension, when --latents is not given.
    #[arg(long, default_value_t = 32)]
    expansion: usize,
    /// Tokens per optimizer step (an epoch's short last batch is dropped).
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    /// Passes over the training shards.
    #[arg(long, default_value_t = 1)]
    epochs: u64,
    /// Train for this many tokens instead (may span epochs).
    #[arg(long)]
    tokens: Option<u64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Adam learning rate (default: 2e-4 / sqrt(latents / 2^14), as sparsify).
    #[arg(long)]
    lr: Option<f32>,
    /// Linear warm-up steps, then linear decay to zero.
    #[arg(long, default_value_t = 1000)]
    warmup: u64,
    /// A latent is dead when it has not fired for this many tokens.
    #[arg(long, default_value_t = 10_000_000)]
    dead_tokens: u64,
    /// Weight of the AuxK loss (dead latents predict the residual; k_aux = width/2). 0 = off, as sparsify.
    #[arg(long, default_value_t = 0.0)]
    auxk_alpha: f32,
    /// Add the FVU of a 4k-latent decode at weight 1/8 (Multi-TopK). Off by default, as sparsify.
    #[arg(long)]
    multi_topk: bool,
    /// How skip transcoders' W_skip and b_dec start: zero (W_skip = 0, b_dec = mean output; the paper's) or
    /// regression (the ridge map mlp_in → mlp_out of eval's --linear-baseline, fit on the training shards).
    #[arg(long, default_value = "zero", value_parser = one_of::<SkipInit>("--skip-init"))]
    skip_init: SkipInit,
    /// The last N shards of the cache are held out for evaluation and never read here.
    #[arg(long, default_value_t = 1)]
    holdout_shards: usize,
    /// Output folder: one subfolder per coder (sparsify's checkpoint layout), metrics.jsonl, summary.json.
    #[arg(long)]
    out: PathBuf,
    /// Save checkpoints and training state every N steps (and at the end).
    #[arg(long, default_value_t = 1000)]
    save_every: u64,
    /// Continue the run in --out from its last saved state.
    #[arg(long)]
    resume: bool,
    /// cpu, cuda or auto (auto = cuda when an NVIDIA GPU is usable and the run needs nothing the GPU trainer
    /// lacks). cpu-twins runs the GPU trainer's step sequence on the kernels' CPU twins (slow; for testing).
    #[arg(long, default_value = "auto", value_parser = one_of::<DeviceChoice>("--device"))]
    device: DeviceChoice,
    /// How cuBLAS multiplies f32 matrices on the GPU: tf32 (tensor cores, as sparsify's
    /// `float32_matmul_precision("high")`) or f32.
    #[arg(long, default_value = "tf32", value_parser = one_of::<GemmPrecision>("--gpu-gemm"))]
    gpu_gemm: GemmPrecision,
    /// Train every combination on the same batches: KEY=V1,V2,… with KEY one of kind, k, latents, expansion,
    /// sae_on, skip_init (skip transcoders only; their regression start is named `…-reginit`). Repeat for
    /// several keys, e.g. `--sweep kind=sae,transcoder,skip-transcoder --sweep k=32,64`.
    #[arg(long)]
    sweep: Vec<String>,
    /// Batch conversion threads of the loader.
    #[arg(long, default_value_t = 2)]
    loader_threads: usize,
    /// Score every coder on held-out rows after every N steps and at the end, as `heldout_fvu` in
    /// metrics.jsonl and summary.json (the FVU-vs-tokens curve). 0 = never.
    #[arg(long, default_value_t = 0)]
    eval_every: u64,
    /// Rows of the held-out shards that --eval-every scores on (the first ones).
    #[arg(long, default_value_t = 8192)]
    eval_rows: usize,
    #[arg(long)]
    quiet: bool,
    /// Train one share of the sweep split over N tasks: every N-th coder from the I-th. The coders land in
    /// --out beside the other parts'; this part's metrics.jsonl, summary.json and training state in
    /// --out/part-I-of-N. `eval --checkpoints --out` takes the whole sweep.
    #[command(flatten)]
    part: PartFlags,
}

fn width_of(cache: &std::path::Path) -> Result<usize> {
    Ok(cache_format::Manifest::load(cache)?.spec.d_in as usize)
}

/// Every combination of the swept values; unswept keys take the plain flags' values.
fn specs(cli: &TrainCli) -> Result<Vec<CoderSpec>> {
    let mut axes: Vec<(String, Vec<String>)> = Vec::new();
    for s in &cli.sweep {
        let (key, values) = s
            .split_once('=')
            .ok_or_else(|| anyhow!("--sweep {s:?}: expected KEY=V1,V2,…"))?;
        if !["kind", "k", "latents", "expansion", "sae_on", "skip_init"].contains(&key) {
            bail!(
                "--sweep {s:?}: key must be kind, k, latents, expansion, sae_on or skip_init, found {key:?}"
            );
        }
        axes.push((
            key.to_string(),
            values.split(',').map(str::to_string).collect(),
        ));
    }
    let mut combos: Vec<Vec<(String, String)>> = vec![vec![]];
    for (key, values) in &axes {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values
                    .iter()
                    .map(move |v| [c.clone(), vec![(key.clone(), v.clone())]].concat())
            })
            .collect();
    }
    let width = width_of(&cli.cache)?;
    let mut out = Vec::new();
    for combo in combos {
        let swept = |key: &str| combo.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        let kind = match swept("kind") {
            Some(v) => flags::parse::<Kind>("kind", v).map_err(|e| anyhow!(e))?,
            None => cli.kind,
        };
        let num = |key: &str, default: Option<usize>| -> Result<Option<usize>> {
            match combo.iter().find(|(k, _)| k == key) {
                Some((_, v)) => {
                    Ok(Some(v.parse().map_err(|_| {
                        anyhow!("{key} must be a number, found {v:?}")
                    })?))
                }
                None => Ok(default),
            }
        };
        let expansion = num("expansion", Some(cli.expansion))?.unwrap();
        let latents = match num("latents", cli.latents)? {
            Some(l) => l,
            None => expansion.checked_mul(width).ok_or_else(|| {
                anyhow!(
                    "--expansion {expansion} × width {width} latents overflows; lower --expansion"
                )
            })?,
        };
        let side = match swept("sae_on") {
            Some(v) => flags::parse::<Side>("sae_on", v).map_err(|e| anyhow!(e))?,
            None => cli.sae_on,
        };
        let skip_init = match swept("skip_init") {
            Some(v) => flags::parse::<SkipInit>("skip_init", v).map_err(|e| anyhow!(e))?,
            None => cli.skip_init,
        };
        let spec = CoderSpec {
            kind,
            k: num("k", Some(cli.k))?.unwrap(),
            num_latents: latents,
            sae_on: side,
            // Only skip transcoders have a skip to start; the other kinds of a sweep over it train once.
            skip_init: match kind {
                Kind::SkipTranscoder => skip_init,
                _ => SkipInit::Zero,
            },
        };
        if !out.contains(&spec) {
            out.push(spec);
        }
    }
    if cli.skip_init == SkipInit::Regression && !out.iter().any(|c| c.kind == Kind::SkipTranscoder)
    {
        bail!("--skip-init regression sets skip transcoders' W_skip and b_dec; no skip transcoder is trained");
    }
    Ok(out)
}

/// `--device` → where the steps run, with a one-line message saying which and, for auto, why.
fn choose_device(cli: &TrainCli, coders: &[CoderSpec]) -> Result<Device> {
    let max_k = coders.iter().map(|c| c.k).max().unwrap_or(0);
    let gpu_lacks = if cli.auxk_alpha > 0.0 || cli.multi_topk {
        Some("AuxK and Multi-TopK are in the CPU trainer only".to_string())
    } else if max_k > MAX_K {
        Some(format!(
            "k = {max_k} is above {MAX_K}, the largest the GPU TopK kernel takes"
        ))
    } else {
        None
    };
    Ok(match resolve(cli.device, gpu_lacks)? {
        Resolved::Cpu { fallback } => {
            if let Some(why) = fallback {
                eprintln!("device: cpu ({why})");
            }
            Device::Cpu
        }
        Resolved::Twins => {
            eprintln!("device: cpu-twins (the GPU step on CPU loops; slow)");
            Device::Twins
        }
        Resolved::Cuda { name, capability } => {
            eprintln!(
                "device: cuda, {name} (sm_{}{}), {} GEMMs",
                capability.0,
                capability.1,
                cli.gpu_gemm.name()
            );
            Device::Cuda(cli.gpu_gemm)
        }
    })
}

pub fn train(cli: TrainCli) -> Result<ExitCode> {
    let coders = specs(&cli)?;
    let device = choose_device(&cli, &coders)?;
    let args = TrainArgs {
        device,
        coders,
        cache: cli.cache,
        batch_rows: cli.batch,
        epochs: cli.epochs,
        tokens: cli.tokens,
        seed: cli.seed,
        lr: cli.lr,
        warmup_steps: cli.warmup,
        dead_tokens: cli.dead_tokens,
        losses: Losses {
            auxk_alpha: cli.auxk_alpha,
            multi_topk: cli.multi_topk,
        },
        holdout_shards: cli.holdout_shards,
        out: cli.out,
        save_every: cli.save_every,
        resume: cli.resume,
        progress: !cli.quiet,
        loader_threads: cli.loader_threads,
        eval_every: cli.eval_every,
        eval_rows: cli.eval_rows,
        part: cli.part.resolve()?,
    };
    let s = run(&args)?;
    println!(
        "trained {} coder(s) for {} steps, {} tokens, in {:.1} s ({:.0} tokens/s per sweep); held out shards {:?}",
        s.coders.len(),
        s.steps,
        s.tokens,
        s.seconds,
        s.tokens_per_s,
        s.held_out_shards
    );
    println!(
        "{:<28} {:>10} {:>12} {:>8} {:>8}  checkpoint",
        "coder", "FVU", "held-out FVU", "L0", "dead %"
    );
    for c in &s.coders {
        let held = c.heldout_fvu.map_or("-".to_string(), |f| format!("{f:.5}"));
        println!(
            "{:<28} {:>10.5} {:>12} {:>8.2} {:>8.2}  {}",
            c.name,
            c.final_fvu,
            held,
            c.final_l0,
            c.dead_pct,
            c.path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
