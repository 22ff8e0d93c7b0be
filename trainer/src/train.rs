//! The training loop: every coder of a sweep steps on the same shuffled batches, so the cache is read once.

use crate::adam::{default_lr, lr_multiplier};
use crate::backend::{Backend, Device, DeviceBatch};
use crate::checkpoint::{io_sides, load_state, save_coder, save_state, CoderMeta, CoderState};
use crate::coder::{CoderConfig, Kind, Losses, SparseCoder};
use crate::step::StepInput;
use anyhow::{bail, Context, Result};
use cache_format::fsutil::write_atomic;
use cache_format::loader::batches_per_epoch;
use cache_format::{Cache, LoaderConfig, Side};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One coder of a run: what is swept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoderSpec {
    pub kind: Kind,
    pub k: usize,
    pub num_latents: usize,
    pub sae_on: Side,
}

impl CoderSpec {
    /// The coder's folder name, from its settings.
    pub fn name(&self) -> String {
        match self.kind {
            Kind::Sae => format!(
                "sae-{}-k{}-l{}",
                self.sae_on.name(),
                self.k,
                self.num_latents
            ),
            k => format!("{}-k{}-l{}", k.short(), self.k, self.num_latents),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainArgs {
    pub cache: PathBuf,
    pub coders: Vec<CoderSpec>,
    pub batch_rows: usize,
    pub epochs: u64,
    /// Train for this many tokens instead of whole epochs.
    pub tokens: Option<u64>,
    pub seed: u64,
    pub lr: Option<f32>,
    pub warmup_steps: u64,
    pub dead_tokens: u64,
    /// Optional AuxK and Multi-TopK terms.
    pub losses: Losses,
    pub holdout_shards: usize,
    pub out: PathBuf,
    pub save_every: u64,
    #[serde(skip)]
    pub resume: bool,
    #[serde(skip)]
    pub progress: bool,
    #[serde(skip)]
    pub loader_threads: usize,
    /// Where the steps run; not part of a run's identity (a run may resume on another device).
    #[serde(skip)]
    pub device: Device,
}

/// The run's position, written last at every save.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RunState {
    args: TrainArgs,
    generation: u32,
    /// Optimizer steps done.
    step: u64,
    epoch: u64,
    batch_in_epoch: u64,
    tokens: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CoderResult {
    pub name: String,
    pub kind: Kind,
    pub k: usize,
    pub num_latents: usize,
    /// Mean FVU over the last 10 % of steps.
    pub final_fvu: f64,
    pub final_l0: f64,
    pub dead_pct: f64,
    pub path: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainSummary {
    pub steps: u64,
    pub tokens: u64,
    pub seconds: f64,
    pub tokens_per_s: f64,
    pub held_out_shards: Vec<usize>,
    pub coders: Vec<CoderResult>,
}

struct Live {
    spec: CoderSpec,
    dir: PathBuf,
    state: CoderState,
    backend: Backend,
    recent: Vec<(f64, f64)>,
}

const STATE_FILE: &str = "train_state.json";

impl CoderSpec {
    /// The cache sides the coder reads: (input, target).
    fn sides(&self) -> (Side, Side) {
        io_sides(self.kind, self.sae_on)
    }
}

fn widths(cache: &Cache, spec: &CoderSpec) -> (usize, usize) {
    let (i, o) = spec.sides();
    (cache.width(i), cache.width(o))
}

pub fn run(args: &TrainArgs) -> Result<TrainSummary> {
    let cache = Cache::open(&args.cache)?;
    if cache.manifest().total_rows == 0 {
        bail!("{}: the cache holds no rows", args.cache.display());
    }
    let (train_shards, held_out) = cache.split(args.holdout_shards)?;
    let train_rows: u64 = train_shards
        .iter()
        .map(|&i| cache.manifest().shards[i].rows)
        .sum();
    let loader = LoaderConfig {
        batch_rows: args.batch_rows,
        seed: args.seed,
        threads: args.loader_threads,
        drop_last: true,
        ..Default::default()
    };
    let per_epoch = batches_per_epoch(train_rows, &loader);
    if per_epoch == 0 {
        bail!(
            "{}: {train_rows} training rows make no batch of {} rows; lower --batch",
            args.cache.display(),
            args.batch_rows
        );
    }
    let total_steps = match args.tokens {
        Some(t) => t.div_ceil(args.batch_rows as u64),
        None => args.epochs * per_epoch,
    };
    if args.coders.is_empty() {
        bail!("no coder to train");
    }
    for spec in &args.coders {
        if spec.k == 0 || spec.k > spec.num_latents {
            bail!(
                "k = {} must be between 1 and the number of latents ({})",
                spec.k,
                spec.num_latents
            );
        }
    }
    if args.device != Device::Cpu && (args.losses.auxk_alpha > 0.0 || args.losses.multi_topk) {
        bail!("AuxK and Multi-TopK are implemented in the CPU trainer only; use --device cpu for them");
    }
    cache_format::fsutil::prepare_output_dir(&args.out)?;
    let gpu = match args.device {
        Device::Cuda(precision) => Some(crate::cuda::gpu_ops::open(precision)?),
        _ => None,
    };

    let state_path = args.out.join(STATE_FILE);
    let resumed: Option<RunState> = if state_path.exists() {
        if !args.resume {
            bail!("{}: a training run is already there; add --resume to continue it, or choose another --out", args.out.display());
        }
        let s: RunState = serde_json::from_slice(&std::fs::read(&state_path)?)
            .with_context(|| format!("{}: not a training state", state_path.display()))?;
        let (mut a, mut b) = (serde_json::to_value(&s.args)?, serde_json::to_value(args)?);
        a["out"] = serde_json::Value::Null;
        b["out"] = serde_json::Value::Null;
        if a != b {
            bail!(
                "{}: was started with other arguments ({a}); resume with the same ones",
                state_path.display()
            );
        }
        if s.step >= total_steps {
            bail!(
                "{}: this run is complete ({} steps); its results are in summary.json",
                args.out.display(),
                s.step
            );
        }
        Some(s)
    } else {
        None
    };

    let mut live = Vec::new();
    for spec in &args.coders {
        let (d_in, d_out) = widths(&cache, spec);
        let cfg = CoderConfig {
            kind: spec.kind,
            d_in,
            d_out,
            num_latents: spec.num_latents,
            k: spec.k,
        };
        let dir = args.out.join(spec.name());
        let state = match &resumed {
            Some(r) => load_state(
                &dir.join(format!("state-{}.safetensors", r.generation)),
                &cfg,
            )?,
            None => CoderState::fresh(SparseCoder::new(cfg.clone(), args.seed)),
        };
        let backend = Backend::new(args.device, gpu.as_ref(), &state, args.batch_rows)?;
        live.push(Live {
            spec: spec.clone(),
            dir,
            state,
            backend,
            recent: Vec::new(),
        });
    }
    let (mut step, mut epoch, mut batch_in_epoch, mut tokens, mut generation) = match &resumed {
        Some(r) => (r.step, r.epoch, r.batch_in_epoch, r.tokens, r.generation),
        None => (0, 0, 0, 0, 1),
    };
    let metrics_path = args.out.join("metrics.jsonl");
    let mut metrics = open_metrics(&metrics_path, step)?;

    let bar = ProgressBar::with_draw_target(
        Some(total_steps),
        if args.progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:25}] step {pos}/{len} ETA {eta} {msg}",
        )
        .unwrap()
        .progress_chars("=> "),
    );
    bar.set_position(step);
    let started = Instant::now();
    let tokens_at_start = tokens;

    let save = |live: &[Live],
                generation: u32,
                step,
                epoch,
                batch_in_epoch,
                tokens,
                metrics: &mut std::io::BufWriter<std::fs::File>|
     -> Result<()> {
        metrics.flush()?;
        for l in live {
            save_state(
                &l.dir.join(format!("state-{generation}.safetensors")),
                &l.state,
            )?;
            let meta = CoderMeta {
                config: l.state.coder.cfg.clone(),
                sae_on: (l.spec.kind == Kind::Sae).then_some(l.spec.sae_on),
                cache: args.cache.display().to_string(),
                layer: cache.manifest().spec.layer,
                step,
                tokens,
            };
            save_coder(&l.dir, &l.state.coder, &meta, args.losses.multi_topk)?;
        }
        let state = RunState {
            args: args.clone(),
            generation,
            step,
            epoch,
            batch_in_epoch,
            tokens,
        };
        write_atomic(&args.out.join(STATE_FILE), |w| {
            w.write_all(serde_json::to_string_pretty(&state)?.as_bytes())
        })?;
        Ok(())
    };

    // On the GPU a batch is uploaded once for every coder, into one of two device buffers, so that the next
    // batch's copy overlaps the steps on this one.
    let mut device_batches = match &gpu {
        Some(g) => {
            let (d_in, d_out) = (cache.d_in(), cache.d_out());
            vec![
                DeviceBatch::new(g, args.batch_rows, d_in, d_out)?,
                DeviceBatch::new(g, args.batch_rows, d_in, d_out)?,
            ]
        }
        None => Vec::new(),
    };
    let mut current = 0;
    while step < total_steps {
        let cfg = LoaderConfig {
            skip_batches: batch_in_epoch,
            ..loader.clone()
        };
        let mut stream = cache.batches(&train_shards, epoch, &cfg);
        let mut next = stream.next().transpose()?;
        if let (Some(g), Some(b)) = (&gpu, &next) {
            device_batches[current].upload(g, &b.mlp_in, &b.mlp_out)?;
        }
        while let Some(batch) = next.take() {
            let rows = batch.rows;
            for l in live.iter_mut() {
                let (input, target) = l.spec.sides();
                let (x, y) = (batch.side(input), batch.side(target));
                let device = device_batches
                    .get(current)
                    .map(|b| (b.side(input), b.side(target)));
                let input = StepInput {
                    x,
                    y,
                    device,
                    rows,
                    lr: step_lr(args, l.spec.num_latents, step, total_steps),
                    t: step + 1,
                    dead_tokens: args.dead_tokens,
                    losses: args.losses,
                };
                l.backend.step(&mut l.state, gpu.as_ref(), &input)?;
            }
            // While the GPU works: the next batch from the loader, and its copy to the other device buffer.
            if step + 1 < total_steps {
                next = stream.next().transpose()?;
                if let (Some(g), Some(b)) = (&gpu, &next) {
                    device_batches[1 - current].upload(g, &b.mlp_in, &b.mlp_out)?;
                }
            }
            let elapsed = started.elapsed().as_secs_f64();
            for l in live.iter_mut() {
                let r = l.backend.result(gpu.as_ref())?;
                l.recent.push((r.fvu, r.l0));
                let lr = step_lr(args, l.spec.num_latents, step, total_steps);
                writeln!(
                    metrics,
                    "{}",
                    serde_json::json!({
                        "step": step, "coder": l.spec.name(), "fvu": r.fvu, "l0": r.l0,
                        "auxk": r.auxk, "multi_topk_fvu": r.multi_topk_fvu,
                        "dead_pct": 100.0 * r.dead_fraction, "lr": lr, "tokens": tokens + rows as u64,
                        "tokens_per_s": (tokens + rows as u64 - tokens_at_start) as f64 / elapsed.max(1e-9),
                    })
                )?;
            }
            step += 1;
            batch_in_epoch += 1;
            tokens += rows as u64;
            current = 1 - current;
            stream.recycle(batch);
            bar.set_position(step);
            let msg: Vec<String> = live
                .iter()
                .map(|l| format!("{} fvu {:.4}", l.spec.name(), l.recent.last().unwrap().0))
                .collect();
            bar.set_message(msg.join(", "));
            if step % args.save_every == 0 || step == total_steps {
                for l in live.iter_mut() {
                    l.backend.sync_to_host(&mut l.state, gpu.as_ref())?;
                }
                generation = 1 - generation;
                save(
                    &live,
                    generation,
                    step,
                    epoch,
                    batch_in_epoch,
                    tokens,
                    &mut metrics,
                )?;
            }
            if step == total_steps {
                break;
            }
        }
        if step < total_steps {
            epoch += 1;
            batch_in_epoch = 0;
        }
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let coders = live
        .iter()
        .map(|l| {
            let tail = &l.recent[l.recent.len() - (l.recent.len() / 10).max(1)..];
            let n = tail.len().max(1) as f64;
            let dead = l
                .state
                .tokens_since_fired
                .iter()
                .filter(|&&f| f > args.dead_tokens)
                .count();
            CoderResult {
                name: l.spec.name(),
                kind: l.spec.kind,
                k: l.spec.k,
                num_latents: l.spec.num_latents,
                final_fvu: tail.iter().map(|t| t.0).sum::<f64>() / n,
                final_l0: tail.iter().map(|t| t.1).sum::<f64>() / n,
                dead_pct: 100.0 * dead as f64 / l.spec.num_latents as f64,
                path: l.dir.clone(),
            }
        })
        .collect();
    let summary = TrainSummary {
        steps: step,
        tokens,
        seconds,
        tokens_per_s: (tokens - tokens_at_start) as f64 / seconds.max(1e-9),
        held_out_shards: held_out,
        coders,
    };
    write_atomic(&args.out.join("summary.json"), |w| {
        w.write_all(serde_json::to_string_pretty(&summary)?.as_bytes())
    })?;
    Ok(summary)
}

/// The learning rate of 0-based step `step`: `--lr` or sparsify's default, times warm-up and decay.
fn step_lr(args: &TrainArgs, num_latents: usize, step: u64, total_steps: u64) -> f32 {
    args.lr.unwrap_or_else(|| default_lr(num_latents))
        * lr_multiplier(step, args.warmup_steps, total_steps)
}

/// Opens the metrics log for appending, dropping lines past `step` (written after the last save of a run that
/// is now being resumed).
fn open_metrics(path: &Path, step: u64) -> Result<std::io::BufWriter<std::fs::File>> {
    if path.exists() {
        let text = std::fs::read_to_string(path)?;
        let kept: String = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v["step"].as_u64())
                    .is_some_and(|s| s < step)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        write_atomic(path, |w| w.write_all(kept.as_bytes()))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    Ok(std::io::BufWriter::new(f))
}
