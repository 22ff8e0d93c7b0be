//! Sparse probing, SAEBench's method (`evals/sparse_probing`), for any coder kind.
//!
//! For each task ([`crate::probing_tasks`]): `train_per_class + test_per_class` examples of each class are
//! drawn (seeded); each example is tokenized (BOS as the model's tokenizer adds it), cut to `ctx_len` tokens and
//! run through the model up to the coder's layer. At the coder's input (MLP input for a transcoder, the SAE's
//! side for an SAE) the hook's activations and the coder's latents are **mean-pooled over the example's tokens,
//! BOS and EOS masked** (SAEBench's `create_meaned_model_activations` / `get_sae_meaned_activations`).
//!
//! Each class c is one binary subtask (a two-class task has one, for its second class): its train (test)
//! examples against as many drawn from the other classes' train (test) examples, ⌈n/(C−1)⌉ from each, then
//! cut to n — SAEBench's `prepare_probe_data`. For k ∈ {1, 2, 5}: the k features with the largest
//! |mean₁ − mean₀| on the train examples, an L2 logistic regression on them (C = 1, [`crate::logistic`]),
//! accuracy on the test examples. The same on the hook's raw activations is the baseline, and a probe on all
//! of them (SAEBench trains that one with AdamW on the GPU; here the same objective as the others).
//! A task's score is the mean over its subtasks; the coder's, the mean over tasks.

use crate::logistic;
use crate::probing_tasks::ProbingTask;
use anyhow::{anyhow, bail, Result};
use cache_format::Side;
use extractor::model::{LanguageModel, Stop};
use extractor::tokenizer::TextTokenizer;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use trainer::checkpoint::LoadedCoder;
use trainer::coder::Encoder;

/// The k of the k-sparse probes (SAEBench's default).
pub const KS: [usize; 3] = [1, 2, 5];
/// The logistic regression's C (scikit-learn's default, as SAEBench uses it).
const PROBE_C: f64 = 1.0;

#[derive(Clone, Debug)]
pub struct ProbingConfig {
    pub tasks: Vec<ProbingTask>,
    pub train_per_class: usize,
    pub test_per_class: usize,
    /// Tokens each example is cut to (SAEBench: 128).
    pub ctx_len: usize,
    pub seed: u64,
}

/// One binary problem: examples (indices into the task's `token_ids`) and whether each is positive.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Subtask {
    pub positive: String,
    pub train: Vec<usize>,
    pub train_labels: Vec<bool>,
    pub test: Vec<usize>,
    pub test_labels: Vec<bool>,
}

/// The examples a task used, as the model saw them, and its subtasks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskExamples {
    pub name: String,
    pub classes: Vec<String>,
    /// Examples of each class the task had (before drawing).
    pub available: Vec<usize>,
    pub train_per_class: usize,
    pub test_per_class: usize,
    pub texts: Vec<String>,
    pub labels: Vec<usize>,
    pub token_ids: Vec<Vec<u32>>,
    pub subtasks: Vec<Subtask>,
}

/// One subtask's probes on one feature set.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubtaskScore {
    /// Test accuracy for each k of [`KS`].
    pub accuracy: Vec<f64>,
    /// The features ranked by |mean₁ − mean₀| (the first max k): the k-sparse probe uses the first k.
    pub top: Vec<u32>,
    /// The probe on every feature (raw activations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_features: Option<f64>,
}

/// A feature set's scores: a coder's latents, or a hook's raw activations.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbingScores {
    pub name: String,
    pub side: Side,
    pub k: Vec<usize>,
    /// Mean test accuracy over tasks, for each k.
    pub accuracy: Vec<f64>,
    /// Per task: mean over its subtasks, for each k.
    pub tasks: BTreeMap<String, Vec<f64>>,
    /// The probe on all features: mean over tasks, and per task (raw activations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_features: Option<f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub all_features_tasks: BTreeMap<String, f64>,
    /// Per task, per subtask (probing.json only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subtasks: BTreeMap<String, Vec<SubtaskScore>>,
}

/// Everything sparse probing measured (probing.json).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbingResult {
    pub layer: usize,
    pub ctx_len: usize,
    pub seed: u64,
    /// Token ids not pooled over (BOS, EOS).
    pub masked_token_ids: Vec<u32>,
    pub tasks: Vec<TaskExamples>,
    /// The raw hook activations, one per side a coder reads.
    pub baselines: Vec<ProbingScores>,
    /// One per coder, in the evaluation's order.
    pub coders: Vec<ProbingScores>,
}

impl ProbingResult {
    /// Writes `out`/probing.json atomically.
    pub fn save(&self, out: &std::path::Path) -> Result<()> {
        crate::save_json(out, "probing.json", self)
    }
}

/// Refuses a task that cannot give `cfg`'s examples: one class only, or too few examples of a class.
pub fn check_task(task: &ProbingTask, cfg: &ProbingConfig) -> Result<()> {
    if task.classes.len() < 2 {
        bail!(
            "probing task {}: one class only ({:?}); a task needs at least two",
            task.name,
            task.classes.first().map_or("", |c| c.as_str())
        );
    }
    let need = cfg.train_per_class + cfg.test_per_class;
    for (c, &n) in task.classes.iter().zip(&task.class_counts()) {
        if n < need {
            bail!(
                "probing task {}: class {c:?} has {n} examples; expected at least {need} (--probing-train {} + \
                 --probing-test {})",
                task.name,
                cfg.train_per_class,
                cfg.test_per_class
            );
        }
    }
    Ok(())
}

/// Draws each class's examples and builds the subtasks.
pub fn draw_examples(
    task: &ProbingTask,
    cfg: &ProbingConfig,
    tokenizer: &TextTokenizer,
) -> Result<TaskExamples> {
    check_task(task, cfg)?;
    let counts = task.class_counts();
    let need = cfg.train_per_class + cfg.test_per_class;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let (mut texts, mut labels) = (Vec::new(), Vec::new());
    // Per class: the indices (into `texts`) of its train and test examples.
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for c in 0..task.classes.len() {
        let mut of_class: Vec<usize> = (0..task.labels.len())
            .filter(|&i| task.labels[i] == c)
            .collect();
        of_class.shuffle(&mut rng);
        let first = texts.len();
        for &i in &of_class[..need] {
            texts.push(task.texts[i].clone());
            labels.push(c);
        }
        train.push((first..first + cfg.train_per_class).collect::<Vec<_>>());
        test.push((first + cfg.train_per_class..first + need).collect::<Vec<_>>());
    }
    let positives: Vec<usize> = if task.classes.len() == 2 {
        vec![1]
    } else {
        (0..task.classes.len()).collect()
    };
    let subtasks = positives
        .into_iter()
        .map(|c| {
            let (tr, trl) = one_against_rest(&train, c, &mut rng);
            let (te, tel) = one_against_rest(&test, c, &mut rng);
            Subtask {
                positive: task.classes[c].clone(),
                train: tr,
                train_labels: trl,
                test: te,
                test_labels: tel,
            }
        })
        .collect();
    let token_ids = texts
        .iter()
        .map(|t| example_tokens(tokenizer, t, cfg.ctx_len))
        .collect::<Result<Vec<_>>>()?;
    Ok(TaskExamples {
        name: task.name.clone(),
        classes: task.classes.clone(),
        available: counts,
        train_per_class: cfg.train_per_class,
        test_per_class: cfg.test_per_class,
        texts,
        labels,
        token_ids,
        subtasks,
    })
}

/// Class `c`'s examples against as many from the other classes (⌈n/(C−1)⌉ drawn from each, shuffled, cut to
/// n), shuffled together.
fn one_against_rest(
    by_class: &[Vec<usize>],
    c: usize,
    rng: &mut ChaCha8Rng,
) -> (Vec<usize>, Vec<bool>) {
    let n = by_class[c].len();
    let per_class = n.div_ceil(by_class.len() - 1);
    let mut negatives = Vec::new();
    for (_, examples) in by_class.iter().enumerate().filter(|(o, _)| *o != c) {
        let mut e = examples.clone();
        e.shuffle(rng);
        negatives.extend_from_slice(&e[..per_class.min(e.len())]);
    }
    negatives.shuffle(rng);
    negatives.truncate(n);
    let mut all: Vec<(usize, bool)> = by_class[c]
        .iter()
        .map(|&i| (i, true))
        .chain(negatives.into_iter().map(|i| (i, false)))
        .collect();
    all.shuffle(rng);
    all.into_iter().unzip()
}

/// The example's token ids: BOS when the tokenizer adds one, then the text's, cut to `ctx_len`.
fn example_tokens(tokenizer: &TextTokenizer, text: &str, ctx_len: usize) -> Result<Vec<u32>> {
    let mut ids: Vec<u32> = match (tokenizer.add_bos, tokenizer.bos_id) {
        (true, Some(b)) => vec![b],
        _ => Vec::new(),
    };
    ids.extend(tokenizer.encode(text)?);
    ids.truncate(ctx_len);
    Ok(ids)
}

/// The mean-pooled features of one task's examples: per side, the raw activations (`[example][d]`); per
/// coder, its latents (`[example]` → sorted (latent, mean activation)).
pub struct Pooled {
    pub raw: BTreeMap<Side, Vec<Vec<f32>>>,
    pub latents: Vec<Vec<Vec<(u32, f32)>>>,
}

/// Runs every example through the model up to `layer` (`batch` at a time, right-padded, the padding
/// masked) and pools the hook's activations and each coder's latents.
pub fn pool(
    model: &dyn LanguageModel,
    layer: usize,
    examples: &TaskExamples,
    masked: &[u32],
    coders: &[LoadedCoder],
    encoders: &[Encoder],
    batch: usize,
) -> Result<Pooled> {
    let d = model.info().d_model;
    let n = examples.token_ids.len();
    let sides: Vec<Side> = coders.iter().map(|c| c.meta.sides().0).collect();
    // Both sides' raw activations are baselines, whichever side the coders read.
    let mut raw: BTreeMap<Side, Vec<Vec<f32>>> = [Side::MlpIn, Side::MlpOut]
        .into_iter()
        .map(|s| (s, vec![Vec::new(); n]))
        .collect();
    let mut latents = vec![vec![Vec::new(); n]; coders.len()];
    // Sorted by length so that a batch pads little.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| examples.token_ids[i].len());
    let pad = masked.first().copied().unwrap_or(0);
    for chunk in order.chunks(batch.max(1)) {
        let t = chunk
            .iter()
            .map(|&i| examples.token_ids[i].len())
            .max()
            .unwrap_or(0);
        let mut tokens = vec![pad; chunk.len() * t];
        for (b, &i) in chunk.iter().enumerate() {
            tokens[b * t..b * t + examples.token_ids[i].len()]
                .copy_from_slice(&examples.token_ids[i]);
        }
        let (mut mlp_in, mut mlp_out) = (Vec::new(), Vec::new());
        model.forward(&tokens, t, Stop::AfterLayer(layer), &mut |l, x, y| {
            if l == layer {
                mlp_in = x.to_vec();
                mlp_out = y.to_vec();
            }
        });
        if mlp_in.is_empty() {
            return Err(anyhow!("the model ran no layer {layer}"));
        }
        // Rows (into the batch) each example pools over: its own, unmasked positions.
        let rows: Vec<Vec<usize>> = chunk
            .iter()
            .enumerate()
            .map(|(b, &i)| {
                let ids = &examples.token_ids[i];
                (0..ids.len())
                    .filter(|&p| !masked.contains(&ids[p]))
                    .map(|p| b * t + p)
                    .collect()
            })
            .collect();
        if let Some(b) = rows.iter().position(|r| r.is_empty()) {
            bail!(
                "probing task {}: example {} has no token left once BOS/EOS are masked",
                examples.name,
                chunk[b]
            );
        }
        let of_side = |side: Side| {
            if side == Side::MlpIn {
                &mlp_in
            } else {
                &mlp_out
            }
        };
        for (&side, pooled) in raw.iter_mut() {
            for (b, &i) in chunk.iter().enumerate() {
                pooled[i] = mean_rows(of_side(side), d, &rows[b]);
            }
        }
        // Each side's unmasked rows, gathered once for every coder that reads it.
        let all: Vec<usize> = rows.iter().flatten().copied().collect();
        let mut gathered: BTreeMap<Side, Vec<f32>> = BTreeMap::new();
        for (j, encoder) in encoders.iter().enumerate() {
            let x = gathered.entry(sides[j]).or_insert_with(|| {
                let acts = of_side(sides[j]);
                all.iter()
                    .flat_map(|&r| acts[r * d..(r + 1) * d].iter().copied())
                    .collect()
            });
            let enc = encoder.encode(x, all.len());
            let mut at = 0;
            for (b, &i) in chunk.iter().enumerate() {
                let m = rows[b].len();
                let span = at * enc.per_row..(at + m) * enc.per_row;
                latents[j][i] = mean_latents(&enc.idx[span.clone()], &enc.acts[span], m);
                at += m;
            }
        }
    }
    Ok(Pooled { raw, latents })
}

/// The mean over `rows` of the `[rows × d]` matrix `acts` (f64 sums).
fn mean_rows(acts: &[f32], d: usize, rows: &[usize]) -> Vec<f32> {
    let mut sum = vec![0f64; d];
    for &r in rows {
        for (s, &a) in sum.iter_mut().zip(&acts[r * d..(r + 1) * d]) {
            *s += a as f64;
        }
    }
    sum.iter().map(|s| (s / rows.len() as f64) as f32).collect()
}

/// Each latent's activations summed over `rows` rows and divided by `rows` (silent rows count as 0), sorted
/// by latent.
fn mean_latents(idx: &[u32], acts: &[f32], rows: usize) -> Vec<(u32, f32)> {
    let mut sum: BTreeMap<u32, f64> = BTreeMap::new();
    for (&l, &a) in idx.iter().zip(acts).filter(|(_, &a)| a != 0.0) {
        *sum.entry(l).or_insert(0.0) += a as f64;
    }
    sum.into_iter()
        .map(|(l, s)| (l, (s / rows as f64) as f32))
        .collect()
}

/// Features of examples, dense or sparse, as the probes read them.
pub trait Features {
    fn width(&self) -> usize;
    /// Example `i`'s nonzero features (index, value).
    fn row(&self, i: usize) -> Vec<(u32, f32)>;
}

impl Features for (&[Vec<f32>], usize) {
    fn width(&self) -> usize {
        self.1
    }
    fn row(&self, i: usize) -> Vec<(u32, f32)> {
        self.0[i]
            .iter()
            .enumerate()
            .map(|(j, &v)| (j as u32, v))
            .collect()
    }
}

impl Features for (&[Vec<(u32, f32)>], usize) {
    fn width(&self) -> usize {
        self.1
    }
    fn row(&self, i: usize) -> Vec<(u32, f32)> {
        self.0[i].clone()
    }
}

/// Features ranked by |mean over positives − mean over negatives| (descending; ties by index), the first `k`.
fn top_by_mean_difference(
    f: &dyn Features,
    examples: &[usize],
    labels: &[bool],
    k: usize,
) -> Vec<u32> {
    let mut diff = vec![0f64; f.width()];
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    let neg = labels.len() as f64 - pos;
    for (&i, &l) in examples.iter().zip(labels) {
        let w = if l { 1.0 / pos } else { -1.0 / neg };
        for (j, v) in f.row(i) {
            diff[j as usize] += w * v as f64;
        }
    }
    let mut order: Vec<u32> = (0..f.width() as u32).collect();
    order.sort_by(|&a, &b| {
        diff[b as usize]
            .abs()
            .total_cmp(&diff[a as usize].abs())
            .then(a.cmp(&b))
    });
    order.truncate(k);
    order
}

/// The `[examples × cols]` matrix of the chosen features.
fn select(f: &dyn Features, examples: &[usize], cols: &[u32]) -> Vec<f32> {
    let mut column = vec![usize::MAX; f.width()];
    for (c, &j) in cols.iter().enumerate() {
        column[j as usize] = c;
    }
    let mut x = vec![0f32; examples.len() * cols.len()];
    for (r, &i) in examples.iter().enumerate() {
        for (j, v) in f.row(i) {
            if column[j as usize] != usize::MAX {
                x[r * cols.len() + column[j as usize]] = v;
            }
        }
    }
    x
}

/// Test accuracy of the probe fit on the train examples' `cols` features.
fn probe_accuracy(f: &dyn Features, s: &Subtask, cols: &[u32]) -> f64 {
    let probe = logistic::fit(
        &select(f, &s.train, cols),
        cols.len(),
        &s.train_labels,
        PROBE_C,
        false,
    );
    probe.accuracy(&select(f, &s.test, cols), &s.test_labels)
}

/// One subtask's k-sparse probes (and, with `all_features`, the probe on every feature).
pub fn score_subtask(f: &dyn Features, s: &Subtask, all_features: bool) -> SubtaskScore {
    let top = top_by_mean_difference(f, &s.train, &s.train_labels, *KS.iter().max().unwrap());
    let accuracy = KS
        .iter()
        .map(|&k| probe_accuracy(f, s, &top[..k]))
        .collect();
    let all: Vec<u32> = (0..f.width() as u32).collect();
    SubtaskScore {
        accuracy,
        top,
        all_features: all_features.then(|| probe_accuracy(f, s, &all)),
    }
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    s / n.max(1) as f64
}

impl ProbingScores {
    /// Summary over subtasks and tasks.
    pub fn new(
        name: String,
        side: Side,
        subtasks: BTreeMap<String, Vec<SubtaskScore>>,
    ) -> ProbingScores {
        let tasks: BTreeMap<String, Vec<f64>> = subtasks
            .iter()
            .map(|(t, ss)| {
                let per_k = (0..KS.len())
                    .map(|i| mean(ss.iter().map(|s| s.accuracy[i])))
                    .collect();
                (t.clone(), per_k)
            })
            .collect();
        let accuracy = (0..KS.len())
            .map(|i| mean(tasks.values().map(|a| a[i])))
            .collect();
        let all_features_tasks: BTreeMap<String, f64> = subtasks
            .iter()
            .filter_map(|(t, ss)| {
                let all: Option<Vec<f64>> = ss.iter().map(|s| s.all_features).collect();
                Some((t.clone(), mean(all?.into_iter())))
            })
            .collect();
        ProbingScores {
            name,
            side,
            k: KS.to_vec(),
            accuracy,
            tasks,
            all_features: (!all_features_tasks.is_empty())
                .then(|| mean(all_features_tasks.values().copied())),
            all_features_tasks,
            subtasks,
        }
    }

    /// The summary without the per-subtask detail (eval.json).
    pub fn summary(&self) -> ProbingScores {
        ProbingScores {
            subtasks: BTreeMap::new(),
            ..self.clone()
        }
    }
}

/// Sparse probing of every coder (and the raw-activation baselines) on every task.
pub fn run(
    model: &dyn LanguageModel,
    tokenizer: &TextTokenizer,
    layer: usize,
    coders: &[LoadedCoder],
    encoders: &[Encoder],
    cfg: &ProbingConfig,
    batch: usize,
) -> Result<ProbingResult> {
    let masked: Vec<u32> = [Some(tokenizer.eos_id), tokenizer.bos_id]
        .into_iter()
        .flatten()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let d = model.info().d_model;
    let mut tasks = Vec::new();
    let mut raw_scores: BTreeMap<Side, BTreeMap<String, Vec<SubtaskScore>>> = BTreeMap::new();
    let mut coder_scores: Vec<BTreeMap<String, Vec<SubtaskScore>>> =
        vec![BTreeMap::new(); coders.len()];
    for task in &cfg.tasks {
        let examples = draw_examples(task, cfg, tokenizer)?;
        let pooled = pool(model, layer, &examples, &masked, coders, encoders, batch)?;
        for (side, rows) in &pooled.raw {
            let f = (rows.as_slice(), d);
            let scores = examples
                .subtasks
                .iter()
                .map(|s| score_subtask(&f, s, true))
                .collect();
            raw_scores
                .entry(*side)
                .or_default()
                .insert(task.name.clone(), scores);
        }
        for (j, c) in coders.iter().enumerate() {
            let f = (pooled.latents[j].as_slice(), c.coder.cfg.num_latents);
            let scores = examples
                .subtasks
                .iter()
                .map(|s| score_subtask(&f, s, false))
                .collect();
            coder_scores[j].insert(task.name.clone(), scores);
        }
        tasks.push(examples);
    }
    Ok(ProbingResult {
        layer,
        ctx_len: cfg.ctx_len,
        seed: cfg.seed,
        masked_token_ids: masked,
        tasks,
        baselines: raw_scores
            .into_iter()
            .map(|(side, s)| ProbingScores::new(format!("raw {}", side.name()), side, s))
            .collect(),
        coders: coders
            .iter()
            .zip(coder_scores)
            .map(|(c, s)| ProbingScores::new(c.name.clone(), c.meta.sides().0, s))
            .collect(),
    })
}
