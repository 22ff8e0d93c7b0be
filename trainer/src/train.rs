//! The training loop: every coder of a sweep steps on the same shuffled batches, so the cache is read once.

use crate::adam::{default_lr, lr_multiplier};
use crate::backend::{Backend, Device, DeviceBatch};
use crate::checkpoint::{io_sides, load_state, save_coder, save_state, CoderMeta, CoderState};
use crate::coder::{CoderConfig, Kind, Losses, SparseCoder};
use crate::cuda::gpu_ops::GpuOps;
use crate::heldout::HeldOutRows;
use crate::regression::{self, AffineMap};
use crate::step::StepInput;
use anyhow::{bail, Context, Result};
use cache_format::fsutil::write_atomic;
use cache_format::loader::batches_per_epoch;
use cache_format::parts::Part;
use cache_format::{Batch, Cache, LoaderConfig, Side};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How a skip transcoder's W_skip and b_dec start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum SkipInit {
    /// W_skip = 0 and b_dec = the first batch's mean target (the paper's).
    #[default]
    Zero,
    /// The linear baseline's ridge map (`crate::regression`), fit on the training shards: the latents start
    /// on the map's residual.
    Regression,
}

/// One coder of a run: what is swept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoderSpec {
    pub kind: Kind,
    pub k: usize,
    pub num_latents: usize,
    pub sae_on: Side,
    /// How a skip transcoder's W_skip and b_dec start (zero for other kinds).
    #[serde(default)]
    pub skip_init: SkipInit,
}

impl CoderSpec {
    /// The coder's folder name, from its settings (`-reginit` marks a skip transcoder started from the
    /// regression, so that both starts can share a sweep).
    pub fn name(&self) -> String {
        match (self.kind, self.skip_init) {
            (Kind::Sae, _) => format!(
                "sae-{}-k{}-l{}",
                self.sae_on.name(),
                self.k,
                self.num_latents
            ),
            (k, SkipInit::Zero) => format!("{}-k{}-l{}", k.short(), self.k, self.num_latents),
            (k, SkipInit::Regression) => {
                format!("{}-k{}-l{}-reginit", k.short(), self.k, self.num_latents)
            }
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
    /// Score every coder on held-out rows after every this many steps (0 = never). Observation only, like
    /// the fields below: not part of a run's identity.
    #[serde(skip)]
    pub eval_every: u64,
    /// Held-out rows those scores use (the first rows of the held-out shards).
    #[serde(skip)]
    pub eval_rows: usize,
    /// Where the steps run; not part of a run's identity (a run may resume on another device).
    #[serde(skip)]
    pub device: Device,
    /// This task's share of a sweep split over a job array: every N-th coder from the I-th (`coders` is then
    /// the whole sweep's list until [`run`] takes the share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
}

impl TrainArgs {
    /// The folder of the run's own files (train_state.json, metrics.jsonl, summary.json, its lock): `out`, or
    /// `out/part-I-of-N` for one part of a sweep, so that the parts' coders share `out` and nothing else.
    pub fn run_dir(&self) -> PathBuf {
        match self.part {
            Some(p) => self.out.join(p.dir_name()),
            None => self.out.clone(),
        }
    }

    /// These arguments with `coders` cut to this part's share of the sweep.
    fn own_share(&self) -> Result<TrainArgs> {
        let mut args = self.clone();
        if let Some(p) = self.part {
            let n = self.coders.len();
            args.coders = (p.index as usize..n)
                .step_by(p.count as usize)
                .map(|i| self.coders[i].clone())
                .collect();
            if args.coders.is_empty() {
                bail!(
                    "--part {}/{}: the sweep has {n} coder(s), none for this part; use at most {n} parts",
                    p.index,
                    p.count
                );
            }
        }
        Ok(args)
    }
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Position {
    /// The training-state generation (0 or 1) the last save wrote.
    generation: u32,
    /// Optimizer steps done.
    step: u64,
    epoch: u64,
    batch_in_epoch: u64,
    tokens: u64,
}

/// The run's arguments and position, written last at every save.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RunState {
    args: TrainArgs,
    /// The cache's `Manifest::content_id` (absent in states written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cache_id: Option<String>,
    #[serde(flatten)]
    at: Position,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CoderResult {
    pub name: String,
    pub kind: Kind,
    pub k: usize,
    pub num_latents: usize,
    /// Mean FVU over the last 10 % of steps.
    pub final_fvu: f64,
    /// FVU on the held-out rows after the last step (with `--eval-every`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heldout_fvu: Option<f64>,
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
    heldout_fvu: Option<f64>,
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

/// Trains every coder of `args` to the end (or resumes the run in `args.out` and finishes it).
pub fn run(args: &TrainArgs) -> Result<TrainSummary> {
    // Every coder of the sweep may sit in `out`, this part's or another's.
    let sweep: Vec<String> = args.coders.iter().map(CoderSpec::name).collect();
    let args = &args.own_share()?;
    let plan = plan(args)?;
    refuse_out_in_cache(args)?;
    if let Some(p) = args.part {
        cache_format::parts::refuse_other_split(&args.out, p)?;
    }
    refuse_unrelated_out(args, &sweep)?;
    // Held to the end: a second run into this folder is refused rather than interleaved. The parts of a
    // sweep lock their own run folders and write disjoint coders, so they run at once.
    let _lock = cache_format::fsutil::lock_dir(&args.run_dir())?;
    let gpu = match args.device {
        Device::Cuda(precision) => Some(crate::cuda::gpu_ops::open(precision)?),
        _ => None,
    };
    let resumed = resumed_position(args, &plan)?;
    let wants_map = args
        .coders
        .iter()
        .any(|c| c.skip_init == SkipInit::Regression);
    let skip_map = match (wants_map, &resumed) {
        (true, None) => Some(skip_init_map(&plan)?),
        _ => None,
    };
    let live = start_coders(
        args,
        &plan,
        resumed.as_ref(),
        skip_map.as_ref(),
        gpu.as_ref(),
    )?;
    let at = resumed.unwrap_or(Position {
        generation: 1,
        step: 0,
        epoch: 0,
        batch_in_epoch: 0,
        tokens: 0,
    });
    let heldout = match args.eval_every {
        0 => None,
        _ => Some(HeldOutRows::read(
            &plan.cache,
            &plan.held_out,
            args.eval_rows,
        )?),
    };
    let mut run = Run {
        heldout,
        metrics: open_metrics(&args.run_dir().join("metrics.jsonl"), at.step)?,
        bar: progress_bar(args.progress, plan.total_steps, at.step),
        started: Instant::now(),
        tokens_at_start: at.tokens,
        args,
        plan,
        gpu,
        live,
        at,
    };
    run.epochs()?;
    run.bar.finish_and_clear();
    let summary = run.summary();
    write_atomic(&args.run_dir().join("summary.json"), |w| {
        w.write_all(serde_json::to_string_pretty(&summary)?.as_bytes())
    })?;
    Ok(summary)
}

/// What the arguments and the cache make of a run, checked before anything is written.
struct Plan {
    cache: Cache,
    train_shards: Vec<usize>,
    held_out: Vec<usize>,
    loader: LoaderConfig,
    total_steps: u64,
}

fn plan(args: &TrainArgs) -> Result<Plan> {
    check_numbers(args)?;
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
        None => args.epochs.saturating_mul(per_epoch),
    };
    if total_steps == 0 {
        bail!("--epochs 0 / --tokens 0 trains no step; give at least one epoch or one token");
    }
    if args.coders.is_empty() {
        bail!("no coder to train");
    }
    check_memory(args, &cache)?;
    if args.eval_every > 0 && held_out.is_empty() {
        bail!("--eval-every scores on held-out shards; --holdout-shards 0 holds none out");
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
    if let Some(c) = args
        .coders
        .iter()
        .find(|c| c.skip_init == SkipInit::Regression && c.kind != Kind::SkipTranscoder)
    {
        bail!(
            "--skip-init regression sets skip transcoders' W_skip and b_dec; {} is not one",
            c.name()
        );
    }
    if args.device != Device::Cpu && (args.losses.auxk_alpha > 0.0 || args.losses.multi_topk) {
        bail!("AuxK and Multi-TopK are implemented in the CPU trainer only; use --device cpu for them");
    }
    Ok(Plan {
        cache,
        train_shards,
        held_out,
        loader,
        total_steps,
    })
}

/// `--out` must not be the cache or a folder inside it: checkpoints written there would sit among (or
/// replace) the cache's own files.
fn refuse_out_in_cache(args: &TrainArgs) -> Result<()> {
    let cache = std::fs::canonicalize(&args.cache)
        .with_context(|| format!("{}: cannot resolve", args.cache.display()))?;
    // The output folder need not exist yet: resolve its nearest existing ancestor.
    let mut out = args.out.clone();
    let mut rest = Vec::new();
    while !out.exists() {
        match (out.file_name(), out.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                out = if parent.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    parent.to_path_buf()
                };
            }
            _ => return Ok(()),
        }
    }
    let mut resolved = std::fs::canonicalize(&out).unwrap_or(out);
    resolved.extend(rest.iter().rev());
    if resolved.starts_with(&cache) {
        bail!(
            "--out {}: is inside the cache {}; choose a folder outside it",
            args.out.display(),
            args.cache.display()
        );
    }
    Ok(())
}

/// An existing `--out` without a training state must hold nothing but what a run of `coders` (every coder of
/// the sweep, and for a part the other parts' folders) writes before its first save (or what a killed one
/// left), so that a typo never mixes a run into another folder.
fn refuse_unrelated_out(args: &TrainArgs, coders: &[String]) -> Result<()> {
    if !args.out.is_dir() || args.run_dir().join(STATE_FILE).exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(&args.out)
        .with_context(|| format!("--out {}: cannot read", args.out.display()))?
    {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let ours = [
            "metrics.jsonl",
            "summary.json",
            cache_format::fsutil::LOCK_FILE,
        ]
        .contains(&name.as_str())
            || name.starts_with(".write-test-")
            || name.ends_with(cache_format::fsutil::TEMP_SUFFIX)
            || coders.contains(&name)
            || (args.part.is_some() && Part::from_dir_name(&name).is_some());
        if !ours {
            bail!(
                "--out {}: holds {name:?}, which no training run of these coders writes; choose an empty or new folder",
                args.out.display()
            );
        }
    }
    Ok(())
}

/// Numeric arguments outside what they mean, refused before anything is read or written.
fn check_numbers(args: &TrainArgs) -> Result<()> {
    if args.batch_rows == 0 {
        bail!("--batch must be at least 1 row, found 0");
    }
    if args.save_every == 0 {
        bail!("--save-every must be at least 1 step, found 0");
    }
    if args.loader_threads == 0 {
        bail!("--loader-threads must be at least 1, found 0");
    }
    if args.eval_every > 0 && args.eval_rows == 0 {
        bail!("--eval-rows must be at least 1 row when --eval-every is on, found 0");
    }
    let a = args.losses.auxk_alpha;
    if !a.is_finite() || a < 0.0 {
        bail!("--auxk-alpha must be a finite number ≥ 0, found {a}");
    }
    if let Some(lr) = args.lr {
        if !lr.is_finite() || lr <= 0.0 {
            bail!("--lr must be a finite number > 0, found {lr}");
        }
    }
    // Past these a run is a typo, not a plan: it would run for years or start a thread per loader slot.
    for (flag, value, most) in [
        ("--epochs", args.epochs, MAX_EPOCHS),
        ("--tokens", args.tokens.unwrap_or(0), MAX_TOKENS),
        (
            "--loader-threads",
            args.loader_threads as u64,
            MAX_LOADER_THREADS,
        ),
    ] {
        if value > most {
            bail!("{flag} must be at most {most}, found {value}");
        }
    }
    Ok(())
}

const MAX_EPOCHS: u64 = 1_000_000;
/// 10¹³ tokens: 1,250 times the paper's 8 B per coder.
const MAX_TOKENS: u64 = 10_000_000_000_000;
const MAX_LOADER_THREADS: u64 = 1024;

/// The coders' parameters and Adam moments (four copies of each tensor, f32) must fit in the memory the
/// system has available, or the run would be killed by the allocator part-way.
fn check_memory(args: &TrainArgs, cache: &Cache) -> Result<()> {
    let mut bytes = 0u128;
    for spec in &args.coders {
        let (d_in, d_out) = widths(cache, spec);
        let skip = if spec.kind == Kind::SkipTranscoder {
            d_in * d_out
        } else {
            0
        };
        let params = spec.num_latents as u128 * (d_in + d_out) as u128 + skip as u128;
        bytes += 4 * 4 * params;
    }
    let Some(available) = available_memory() else {
        return Ok(());
    };
    if bytes > available as u128 {
        bail!(
            "the {} coder(s) need {:.1} GiB for parameters and Adam moments, more than the {:.1} GiB of memory available; lower --latents or train fewer coders at once",
            args.coders.len(),
            bytes as f64 / (1u64 << 30) as f64,
            available as f64 / (1u64 << 30) as f64
        );
    }
    Ok(())
}

/// MemAvailable from /proc/meminfo, in bytes (None where there is no such file).
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The position of the run already in `args.out`, if any: refused without `--resume`, with other
/// arguments, or when it is complete.
fn resumed_position(args: &TrainArgs, plan: &Plan) -> Result<Option<Position>> {
    let total_steps = plan.total_steps;
    let state_path = args.run_dir().join(STATE_FILE);
    if !state_path.exists() {
        return Ok(None);
    }
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
    let cache_id = plan.cache.manifest().content_id();
    if let Some(was) = s.cache_id.as_ref().filter(|was| **was != cache_id) {
        bail!(
            "{}: the run was trained on another cache (content id {was}); {} now holds {cache_id}; resume on the cache it started with",
            state_path.display(),
            args.cache.display()
        );
    }
    if s.at.step >= total_steps {
        bail!(
            "{}: this run is complete ({} steps); its results are in summary.json",
            args.out.display(),
            s.at.step
        );
    }
    Ok(Some(s.at))
}

/// The ridge map mlp_in → mlp_out on the training shards, for `--skip-init regression`.
fn skip_init_map(plan: &Plan) -> Result<AffineMap> {
    let fit = regression::fit(&plan.cache, &plan.train_shards, Side::MlpIn, Side::MlpOut)?;
    eprintln!(
        "skip init: ridge regression mlp_in → mlp_out on {} training rows, λ {:e}, validation FVU {:.4}",
        fit.rows, fit.lambda, fit.validation_fvu
    );
    Ok(fit.map)
}

/// Each coder of the run, fresh (skip transcoders starting from `skip_map` when given) or from the training
/// state of `resumed`, with its backend.
fn start_coders(
    args: &TrainArgs,
    plan: &Plan,
    resumed: Option<&Position>,
    skip_map: Option<&AffineMap>,
    gpu: Option<&GpuOps>,
) -> Result<Vec<Live>> {
    let cache = &plan.cache;
    let mut live = Vec::new();
    for spec in &args.coders {
        let (d_in, d_out) = widths(cache, spec);
        let cfg = CoderConfig {
            kind: spec.kind,
            d_in,
            d_out,
            num_latents: spec.num_latents,
            k: spec.k,
        };
        let dir = args.out.join(spec.name());
        let state = match resumed {
            Some(r) => load_state(
                &dir.join(format!("state-{}.safetensors", r.generation)),
                &cfg,
            )?,
            None => CoderState {
                skip_init: skip_map
                    .filter(|_| spec.skip_init == SkipInit::Regression)
                    .cloned(),
                ..CoderState::fresh(SparseCoder::new(cfg.clone(), args.seed))
            },
        };
        let backend = Backend::new(args.device, gpu, &state, args.batch_rows)?;
        live.push(Live {
            spec: spec.clone(),
            dir,
            state,
            backend,
            recent: Vec::new(),
            heldout_fvu: None,
        });
    }
    Ok(live)
}

fn progress_bar(visible: bool, total_steps: u64, step: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(total_steps),
        if visible {
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
    bar
}

/// A run under way: its plan, coders and position, and what it writes as it goes.
struct Run<'a> {
    args: &'a TrainArgs,
    plan: Plan,
    gpu: Option<GpuOps>,
    live: Vec<Live>,
    at: Position,
    /// The rows `--eval-every` scores on.
    heldout: Option<HeldOutRows>,
    metrics: BufWriter<File>,
    bar: ProgressBar,
    started: Instant,
    tokens_at_start: u64,
}

impl Run<'_> {
    /// Epochs of shuffled batches until the run's last step; every coder steps on each batch.
    fn epochs(&mut self) -> Result<()> {
        // On the GPU a batch is uploaded once for every coder, into one of two device buffers, so that the
        // next batch's copy overlaps the steps on this one.
        let mut device_batches = match &self.gpu {
            Some(g) => {
                let (d_in, d_out) = (self.plan.cache.d_in(), self.plan.cache.d_out());
                let rows = self.args.batch_rows;
                vec![
                    DeviceBatch::new(g, rows, d_in, d_out)?,
                    DeviceBatch::new(g, rows, d_in, d_out)?,
                ]
            }
            None => Vec::new(),
        };
        let mut current = 0;
        let total_steps = self.plan.total_steps;
        while self.at.step < total_steps {
            let cfg = LoaderConfig {
                skip_batches: self.at.batch_in_epoch,
                ..self.plan.loader.clone()
            };
            let mut stream = self
                .plan
                .cache
                .batches(&self.plan.train_shards, self.at.epoch, &cfg);
            let mut next = stream.next().transpose()?;
            if let (Some(g), Some(b)) = (&self.gpu, &next) {
                device_batches[current].upload(g, &b.mlp_in, &b.mlp_out)?;
            }
            while let Some(batch) = next.take() {
                self.step_coders(&batch, device_batches.get(current))?;
                // While the GPU works: the next batch from the loader, and its copy to the other device buffer.
                if self.at.step + 1 < total_steps {
                    next = stream.next().transpose()?;
                    if let (Some(g), Some(b)) = (&self.gpu, &next) {
                        device_batches[1 - current].upload(g, &b.mlp_in, &b.mlp_out)?;
                    }
                }
                self.score_held_out(self.at.step + 1)?;
                self.log_step(batch.rows)?;
                self.at.step += 1;
                self.at.batch_in_epoch += 1;
                self.at.tokens += batch.rows as u64;
                current = 1 - current;
                stream.recycle(batch);
                self.show_progress();
                let step = self.at.step;
                if step.is_multiple_of(self.args.save_every) || step == total_steps {
                    self.save()?;
                }
                if step == total_steps {
                    break;
                }
            }
            if self.at.step < total_steps {
                self.at.epoch += 1;
                self.at.batch_in_epoch = 0;
            }
        }
        Ok(())
    }

    /// Queues (GPU) or runs (CPU) every coder's step on `batch`.
    fn step_coders(&mut self, batch: &Batch, device: Option<&DeviceBatch>) -> Result<()> {
        let (args, step) = (self.args, self.at.step);
        for l in self.live.iter_mut() {
            let (input, target) = l.spec.sides();
            let input = StepInput {
                x: batch.side(input),
                y: batch.side(target),
                device: device.map(|b| (b.side(input), b.side(target))),
                rows: batch.rows,
                lr: step_lr(args, l.spec.num_latents, step, self.plan.total_steps),
                t: step + 1,
                dead_tokens: args.dead_tokens,
                losses: args.losses,
            };
            l.backend.step(&mut l.state, self.gpu.as_ref(), &input)?;
        }
        Ok(())
    }

    /// After step `done` (1-based) of every `--eval-every` and the last: each coder's FVU on the held-out
    /// rows, kept for the step's metrics line. Otherwise clears the last score.
    fn score_held_out(&mut self, done: u64) -> Result<()> {
        let Some(rows) = &self.heldout else {
            return Ok(());
        };
        let due = done.is_multiple_of(self.args.eval_every) || done == self.plan.total_steps;
        for l in self.live.iter_mut() {
            l.heldout_fvu = None;
            if due {
                l.backend.sync_to_host(&mut l.state, self.gpu.as_ref())?;
                l.heldout_fvu = Some(rows.fvu(&l.state.coder, l.spec.sides()));
            }
        }
        Ok(())
    }

    /// Each coder's results of the step just run (waiting for the GPU), as a metrics line.
    fn log_step(&mut self, rows: usize) -> Result<()> {
        let elapsed = self.started.elapsed().as_secs_f64();
        let (step, tokens) = (self.at.step, self.at.tokens + rows as u64);
        for l in self.live.iter_mut() {
            let r = l.backend.result(self.gpu.as_ref())?;
            l.recent.push((r.fvu, r.l0));
            let lr = step_lr(self.args, l.spec.num_latents, step, self.plan.total_steps);
            let mut line = serde_json::json!({
                "step": step, "coder": l.spec.name(), "fvu": r.fvu, "l0": r.l0,
                "auxk": r.auxk, "multi_topk_fvu": r.multi_topk_fvu,
                "dead_pct": 100.0 * r.dead_fraction, "lr": lr, "tokens": tokens,
                "tokens_per_s": (tokens - self.tokens_at_start) as f64 / elapsed.max(1e-9),
            });
            if let Some(f) = l.heldout_fvu {
                line["heldout_fvu"] = f.into();
            }
            writeln!(self.metrics, "{line}")?;
        }
        Ok(())
    }

    fn show_progress(&self) {
        self.bar.set_position(self.at.step);
        let msg: Vec<String> = self
            .live
            .iter()
            .map(|l| format!("{} fvu {:.4}", l.spec.name(), l.recent.last().unwrap().0))
            .collect();
        self.bar.set_message(msg.join(", "));
    }

    /// Brings every coder's state to the host and saves the other generation: training states, then
    /// checkpoints, then the run state that points at them.
    fn save(&mut self) -> Result<()> {
        for l in self.live.iter_mut() {
            l.backend.sync_to_host(&mut l.state, self.gpu.as_ref())?;
        }
        self.at.generation = 1 - self.at.generation;
        let (args, at) = (self.args, self.at);
        self.metrics.flush()?;
        for l in &self.live {
            save_state(
                &l.dir.join(format!("state-{}.safetensors", at.generation)),
                &l.state,
            )?;
            let meta = CoderMeta {
                config: l.state.coder.cfg.clone(),
                sae_on: (l.spec.kind == Kind::Sae).then_some(l.spec.sae_on),
                cache: args.cache.display().to_string(),
                layer: self.plan.cache.manifest().spec.layer,
                step: at.step,
                tokens: at.tokens,
                imported: None,
                activation: Default::default(),
            };
            save_coder(&l.dir, &l.state.coder, &meta, args.losses.multi_topk)?;
        }
        let state = RunState {
            args: args.clone(),
            cache_id: Some(self.plan.cache.manifest().content_id()),
            at,
        };
        write_atomic(&args.run_dir().join(STATE_FILE), |w| {
            w.write_all(serde_json::to_string_pretty(&state)?.as_bytes())
        })?;
        Ok(())
    }

    /// The run's results: per coder, the mean FVU and L0 over the last 10 % of steps, and dead latents.
    fn summary(&self) -> TrainSummary {
        let seconds = self.started.elapsed().as_secs_f64();
        let coders = self
            .live
            .iter()
            .map(|l| {
                let tail = &l.recent[l.recent.len() - (l.recent.len() / 10).max(1)..];
                let n = tail.len().max(1) as f64;
                let dead = l
                    .state
                    .tokens_since_fired
                    .iter()
                    .filter(|&&f| f > self.args.dead_tokens)
                    .count();
                CoderResult {
                    name: l.spec.name(),
                    kind: l.spec.kind,
                    k: l.spec.k,
                    num_latents: l.spec.num_latents,
                    final_fvu: tail.iter().map(|t| t.0).sum::<f64>() / n,
                    heldout_fvu: l.heldout_fvu,
                    final_l0: tail.iter().map(|t| t.1).sum::<f64>() / n,
                    dead_pct: 100.0 * dead as f64 / l.spec.num_latents as f64,
                    path: l.dir.clone(),
                }
            })
            .collect();
        TrainSummary {
            steps: self.at.step,
            tokens: self.at.tokens,
            seconds,
            tokens_per_s: (self.at.tokens - self.tokens_at_start) as f64 / seconds.max(1e-9),
            held_out_shards: self.plan.held_out.clone(),
            coders,
        }
    }
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
