//! Feature absorption, SAEBench's method (Chanin et al. 2024; `evals/absorption`), for any coder kind.
//!
//! 1. **Letter probes** ([`crate::first_letter`] gives the prompts): on the hook a coder reads (MLP input for a
//!    transcoder, the SAE's side for an SAE), 26 one-vs-rest probes trained as SAEBench trains them
//!    ([`crate::multi_probe`]: batch 64, 50 epochs, lr 1e-2 → 1e-5, weight decay 1e-4). A letter counts when
//!    its probe's test F1 (logit > 0) exceeds `min_probe_f1` (0.6); absorption needs `min_letters` (20) such.
//! 2. **k-sparse probes** per coder: one L1 probe on the training prompts' latents (batch 4096, 50 epochs,
//!    lr 1e-2, L1 0.01, weight decay 1e-6); per letter and k = 1…10 its k largest weights (signed) pick the
//!    latents, and a balanced L2 logistic regression on them ([`crate::logistic`], C = 1) is scored by test
//!    F1. **Feature splitting**: from k = 1, k's latents are kept while F1 rises by more than 0.03 over the
//!    last kept k; the kept set is the letter's *main latents*.
//! 3. **Absorption** per letter over the test words its probe gets right, each in a fresh prompt whose
//!    examples come from the whole vocabulary: with a = the activation, p̂ = the probe's unit direction, and
//!    each latent's projection = its activation × cos(p̂, the latent's direction),
//!    - *absorption fraction*: 0 if the main latents' projection ≥ a·p̂ or the ≤ 3 largest positive
//!      projections of other latents with cos ≥ 0.1 sum to < 40 % of a·p̂; 1 if the main latents project ≤ 0;
//!      else absorbed / (absorbed + main), absorbed = min(that sum, a·p̂ − main);
//!    - *full absorption*: no main latent fires, the top-projecting latent has cos ≥ 0.025, a·p̂ ≥ 0 and the top
//!      latent gives ≥ 40 % of it.
//!
//!    A letter's rates are sums over its words / its probe's true positives; the coder's, means over the
//!    letters that count.
//!
//! **The latent's direction.** SAEBench compares the probe with the decoder row: an SAE's decoder writes the
//! space its encoder reads. A transcoder's decoder writes the MLP output while the probe reads the MLP input,
//! so their cosine compares vectors of different spaces; for transcoders the direction is the encoder row
//! (what the latent detects in the probe's space). `LatentDirection` overrides the choice for every coder.

use crate::first_letter::{self, Dataset, Prompt, LETTERS};
use crate::logistic;
use crate::multi_probe::{self, f1, MultiProbe, TrainConfig};
use crate::probing::Features;
use anyhow::Result;
use cache_format::Side;
use extractor::model::LanguageModel;
use extractor::tokenizer::TextTokenizer;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use trainer::checkpoint::LoadedCoder;
use trainer::coder::Encoder;

/// The largest k of the k-sparse probes.
pub const MAX_K: usize = 10;
const F1_JUMP: f64 = 0.03;
const FULL_ABSORPTION_COS: f64 = 0.025;
const ABSORBER_COS: f64 = 0.1;
const PROJECTION_SHARE: f64 = 0.4;
const MAX_ABSORBERS: usize = 3;
/// A main latent below this activation did not fire.
const SILENT: f32 = 1e-8;
/// Prompts per forward pass (they are ~90 tokens).
const PROMPT_BATCH: usize = 32;

const LETTER_PROBE: TrainConfig = TrainConfig {
    batch: 64,
    epochs: 50,
    lr: 1e-2,
    end_lr: 1e-5,
    weight_decay: 1e-4,
    l1: 0.0,
    seed: 0,
};
const SPARSE_PROBE: TrainConfig = TrainConfig {
    batch: 4096,
    epochs: 50,
    lr: 1e-2,
    end_lr: 1e-5,
    weight_decay: 1e-6,
    l1: 0.01,
    seed: 0,
};

/// Which vector stands for a latent when it is compared with the probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatentDirection {
    /// Decoder row for an SAE, encoder row for a transcoder (see the module doc).
    Auto,
    Encoder,
    Decoder,
}

#[derive(Clone, Debug)]
pub struct AbsorptionConfig {
    /// Draw this many of the tokenizer's words (None: all, as SAEBench).
    pub max_words: Option<usize>,
    pub min_probe_f1: f64,
    pub min_letters: usize,
    pub direction: LatentDirection,
    pub seed: u64,
}

/// One side's letter probes and the prompts absorption is measured on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LetterProbes {
    pub side: Side,
    /// Test F1 of each letter's probe.
    pub f1: Vec<f64>,
    /// Each letter's weights (`d`) and bias.
    pub weights: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
    /// Per letter: the fresh prompts of the test words its probe gets right.
    pub true_positives: Vec<Vec<Prompt>>,
}

/// One word's absorption by one coder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WordAbsorption {
    pub word: String,
    /// a·p̂ and the main latents' projection.
    pub probe_projection: f64,
    pub main_projection: f64,
    pub absorption_fraction: f64,
    pub full_absorption: bool,
    /// The latent with the largest positive projection, if any, its projection and cosine.
    pub top_latent: Option<u32>,
    pub top_projection: f64,
    pub top_cos: f64,
}

/// One letter's results for one coder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LetterAbsorption {
    pub letter: char,
    pub probe_f1: f64,
    /// Whether the letter counts (its probe's F1 above the minimum, and a true positive).
    pub counted: bool,
    /// Test F1 and latents of the k-sparse probe, k = 1…[`MAX_K`].
    pub k_sparse_f1: Vec<f64>,
    pub k_sparse_latents: Vec<Vec<u32>>,
    pub main_latents: Vec<u32>,
    pub probe_true_positives: usize,
    pub absorption_fraction: f64,
    pub full_absorption_rate: f64,
    pub full_absorptions: usize,
    /// Per word (absorption.json only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub words: Vec<WordAbsorption>,
}

/// A coder's absorption.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AbsorptionScores {
    pub name: String,
    pub side: Side,
    pub direction: LatentDirection,
    pub letters_counted: usize,
    /// Means over the counted letters; None when fewer than the minimum count.
    pub mean_absorption_fraction: Option<f64>,
    pub mean_full_absorption: Option<f64>,
    pub mean_main_latents: Option<f64>,
    pub std_absorption_fraction: Option<f64>,
    pub std_full_absorption: Option<f64>,
    /// Mean test F1 of the k-sparse probes over the counted letters, k = 1…[`MAX_K`].
    pub mean_k_sparse_f1: Vec<f64>,
    pub letters: Vec<LetterAbsorption>,
}

impl AbsorptionScores {
    /// Without the per-word detail (eval.json).
    pub fn summary(&self) -> AbsorptionScores {
        let mut s = self.clone();
        s.letters.iter_mut().for_each(|l| l.words.clear());
        s
    }
}

/// Everything absorption measured (absorption.json).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AbsorptionResult {
    pub layer: usize,
    pub seed: u64,
    pub min_probe_f1: f64,
    pub min_letters: usize,
    /// The tokenizer's alphabetic words, sorted (the prompts' examples for absorption come from all of them).
    pub words: Vec<String>,
    pub dataset: Dataset,
    pub probes: Vec<LetterProbes>,
    pub coders: Vec<AbsorptionScores>,
}

impl AbsorptionResult {
    /// Writes `out`/absorption.json atomically.
    pub fn save(&self, out: &std::path::Path) -> Result<()> {
        crate::save_json(out, "absorption.json", self)
    }
}

/// Rows of a `rows × d` matrix as probe features.
struct Dense<'a>(&'a [f32], usize);

impl Features for Dense<'_> {
    fn width(&self) -> usize {
        self.1
    }
    fn row(&self, i: usize) -> Vec<(u32, f32)> {
        let r = &self.0[i * self.1..(i + 1) * self.1];
        r.iter().enumerate().map(|(j, &v)| (j as u32, v)).collect()
    }
}

/// Each row's firing latents.
fn latents(encoder: &Encoder, x: &[f32], rows: usize) -> Vec<Vec<(u32, f32)>> {
    let mut out = Vec::with_capacity(rows);
    if rows == 0 {
        return out;
    }
    let d = x.len() / rows;
    for chunk in x.chunks(4096 * d) {
        let n = chunk.len() / d;
        let enc = encoder.encode(chunk, n);
        for r in 0..n {
            let span = r * enc.per_row..(r + 1) * enc.per_row;
            let mut row: Vec<(u32, f32)> = enc.idx[span.clone()]
                .iter()
                .zip(&enc.acts[span])
                .filter(|(_, &a)| a != 0.0)
                .map(|(&l, &a)| (l, a))
                .collect();
            row.sort_by_key(|&(l, _)| l);
            out.push(row);
        }
    }
    out
}

/// Trains a side's letter probes and draws the prompts of its true positives.
fn letter_probes(
    side: Side,
    data: &Dataset,
    train: &[f32],
    test: &[f32],
    words: &[String],
    tokenizer: &TextTokenizer,
    rng: &mut ChaCha8Rng,
) -> Result<LetterProbes> {
    let d = train.len() / data.train.len().max(1);
    let y: Vec<usize> = data.train.iter().map(|p| p.letter).collect();
    let probe = multi_probe::train(&Dense(train, d), &y, 26, &LETTER_PROBE);
    let test_x = Dense(test, d);
    let scores: Vec<Vec<f32>> = (0..data.test.len())
        .map(|i| probe.logits(&test_x.row(i)))
        .collect();
    let mut f1s = Vec::new();
    let mut true_positives = Vec::new();
    for l in 0..26 {
        let truth: Vec<bool> = data.test.iter().map(|p| p.letter == l).collect();
        let pred: Vec<bool> = scores.iter().map(|s| s[l] > 0.0).collect();
        f1s.push(f1(&pred, &truth));
        let tp = data
            .test
            .iter()
            .zip(&pred)
            .filter(|(p, &hit)| hit && p.letter == l)
            .map(|(p, _)| first_letter::make_prompt(&p.word, words, tokenizer, rng))
            .collect::<Result<Vec<_>>>()?;
        true_positives.push(tp);
    }
    Ok(LetterProbes {
        side,
        f1: f1s,
        weights: (0..26).map(|l| probe.class_weights(l)).collect(),
        bias: probe.b.clone(),
        true_positives,
    })
}

/// The `rows × cols` matrix of the chosen latents.
fn columns(rows: &[Vec<(u32, f32)>], cols: &[u32]) -> Vec<f32> {
    let mut x = vec![0f32; rows.len() * cols.len()];
    for (r, row) in rows.iter().enumerate() {
        for (c, &j) in cols.iter().enumerate() {
            if let Ok(at) = row.binary_search_by_key(&j, |&(l, _)| l) {
                x[r * cols.len() + c] = row[at].1;
            }
        }
    }
    x
}

/// The rows of `x` (`rows × k`) with a nonzero entry, then one row of zeros per label carrying the summed
/// weights of that label's all-zero rows: the same logistic objective on far fewer rows, as most words fire
/// none of the k latents.
fn merge_silent_rows(
    x: &[f32],
    k: usize,
    y: &[bool],
    s: &[f64],
) -> (Vec<f32>, Vec<bool>, Vec<f64>) {
    let (mut xs, mut ys, mut ss) = (Vec::new(), Vec::new(), Vec::new());
    let mut silent = [0f64; 2];
    for ((row, &t), &w) in x.chunks(k).zip(y).zip(s) {
        if row.iter().all(|&v| v == 0.0) {
            silent[t as usize] += w;
        } else {
            xs.extend_from_slice(row);
            ys.push(t);
            ss.push(w);
        }
    }
    for (t, w) in [(false, silent[0]), (true, silent[1])] {
        if w > 0.0 {
            xs.extend(std::iter::repeat_n(0.0, k));
            ys.push(t);
            ss.push(w);
        }
    }
    (xs, ys, ss)
}

/// One letter's k-sparse probes: F1 and latents for k = 1…MAX_K.
fn k_sparse(
    l1_probe: &MultiProbe,
    letter: usize,
    train: &[Vec<(u32, f32)>],
    train_y: &[usize],
    test: &[Vec<(u32, f32)>],
    test_y: &[usize],
) -> (Vec<f64>, Vec<Vec<u32>>) {
    let w = l1_probe.class_weights(letter);
    let mut order: Vec<u32> = (0..w.len() as u32).collect();
    order.sort_by(|&a, &b| w[b as usize].total_cmp(&w[a as usize]).then(a.cmp(&b)));
    let yt: Vec<bool> = train_y.iter().map(|&c| c == letter).collect();
    let ye: Vec<bool> = test_y.iter().map(|&c| c == letter).collect();
    let weights = logistic::sample_weights(&yt, true);
    (1..=MAX_K.min(order.len()))
        .map(|k| {
            let cols = order[..k].to_vec();
            let (x, y, s) = merge_silent_rows(&columns(train, &cols), k, &yt, &weights);
            let probe = logistic::fit_weighted(&x, k, &y, &s, 1.0);
            let xe = columns(test, &cols);
            let pred: Vec<bool> = xe.chunks(k).map(|r| probe.score(r) > 0.0).collect();
            (f1(&pred, &ye), cols)
        })
        .unzip()
}

/// The main latents: k's latents kept while F1 rises by more than [`F1_JUMP`].
fn main_latents(f1s: &[f64], latents: &[Vec<u32>]) -> Vec<u32> {
    let (mut best, mut kept) = (f64::NEG_INFINITY, Vec::new());
    for (f, l) in f1s.iter().zip(latents) {
        if *f <= best + F1_JUMP {
            break;
        }
        best = *f;
        kept = l.clone();
    }
    kept
}

/// Cosine of the unit probe direction with each latent's direction (`latents × d`).
fn cosines(unit_probe: &[f32], directions: &[f32]) -> Vec<f64> {
    directions
        .chunks(unit_probe.len())
        .map(|row| {
            let dot: f64 = row
                .iter()
                .zip(unit_probe)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum();
            let norm = row.iter().map(|&a| a as f64 * a as f64).sum::<f64>().sqrt();
            dot / norm.max(1e-8)
        })
        .collect()
}

/// One word's absorption: its activation's probe projection `a_p`, its firing latents, the cosines.
fn word_absorption(
    word: &str,
    a_p: f64,
    fired: &[(u32, f32)],
    cos: &[f64],
    main: &[u32],
) -> WordAbsorption {
    let proj = |&(l, a): &(u32, f32)| a as f64 * cos[l as usize];
    let is_main = |l: u32| main.contains(&l);
    let main_projection: f64 = fired.iter().filter(|f| is_main(f.0)).map(proj).sum();
    let mut absorbers: Vec<f64> = fired
        .iter()
        .filter(|f| !is_main(f.0) && cos[f.0 as usize] >= ABSORBER_COS)
        .map(proj)
        .filter(|&p| p > 0.0)
        .collect();
    absorbers.sort_by(|a, b| b.total_cmp(a));
    let absorbed: f64 = absorbers.iter().take(MAX_ABSORBERS).sum();
    let absorption_fraction =
        if a_p <= 0.0 || main_projection >= a_p || absorbed / a_p < PROJECTION_SHARE {
            0.0
        } else if main_projection <= 0.0 {
            1.0
        } else {
            let a = absorbed.min(a_p - main_projection);
            (a / (a + main_projection)).clamp(0.0, 1.0)
        };
    let top = fired
        .iter()
        .map(|f| (f.0, proj(f)))
        .filter(|&(_, p)| p > 0.0)
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
    let (top_latent, top_projection) = top.map_or((None, 0.0), |(l, p)| (Some(l), p));
    let top_cos = top_latent.map_or(0.0, |l| cos[l as usize]);
    let main_silent = main
        .iter()
        .all(|&m| fired.iter().find(|f| f.0 == m).is_none_or(|f| f.1 < SILENT));
    let full_absorption = main_silent
        && top_latent.is_some()
        && top_cos >= FULL_ABSORPTION_COS
        && a_p >= 0.0
        && top_projection / a_p >= PROJECTION_SHARE;
    WordAbsorption {
        word: word.to_string(),
        probe_projection: a_p,
        main_projection,
        absorption_fraction,
        full_absorption,
        top_latent,
        top_projection,
        top_cos,
    }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

/// What one coder needs of its side: activations and letter probes.
struct SideData<'a> {
    train: &'a [f32],
    test: &'a [f32],
    probes: &'a LetterProbes,
    /// Per letter, the true positives' activations (`words × d`).
    positives: &'a [Vec<f32>],
}

/// One coder's k-sparse probes, main latents and absorption.
fn score_coder(
    c: &LoadedCoder,
    encoder: &Encoder,
    data: &Dataset,
    side: &SideData,
    cfg: &AbsorptionConfig,
) -> AbsorptionScores {
    let d = c.coder.cfg.d_in;
    let train = latents(encoder, side.train, data.train.len());
    let test = latents(encoder, side.test, data.test.len());
    let (train_y, test_y): (Vec<usize>, Vec<usize>) = (
        data.train.iter().map(|p| p.letter).collect(),
        data.test.iter().map(|p| p.letter).collect(),
    );
    let l1_probe = multi_probe::train(
        &(train.as_slice(), c.coder.cfg.num_latents),
        &train_y,
        26,
        &SPARSE_PROBE,
    );
    let direction = match (cfg.direction, c.coder.cfg.kind.transcodes()) {
        (LatentDirection::Auto, true) => LatentDirection::Encoder,
        (LatentDirection::Auto, false) => LatentDirection::Decoder,
        (chosen, _) => chosen,
    };
    let directions = match direction {
        LatentDirection::Encoder => &c.coder.w_enc,
        _ => &c.coder.w_dec,
    };
    let letters: Vec<LetterAbsorption> = (0..26)
        .into_par_iter()
        .map(|l| {
            let (k_sparse_f1, k_sparse_latents) =
                k_sparse(&l1_probe, l, &train, &train_y, &test, &test_y);
            let main = main_latents(&k_sparse_f1, &k_sparse_latents);
            let w = &side.probes.weights[l];
            let norm = w.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
            let unit: Vec<f32> = w.iter().map(|&x| (x as f64 / norm) as f32).collect();
            let cos = cosines(&unit, directions);
            let prompts = &side.probes.true_positives[l];
            let fired = latents(encoder, &side.positives[l], prompts.len());
            let words: Vec<WordAbsorption> = prompts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let a = &side.positives[l][i * d..(i + 1) * d];
                    let a_p: f64 = a
                        .iter()
                        .zip(&unit)
                        .map(|(&x, &u)| x as f64 * u as f64)
                        .sum();
                    word_absorption(&p.word, a_p, &fired[i], &cos, &main)
                })
                .collect();
            let n = words.len();
            let full = words.iter().filter(|w| w.full_absorption).count();
            let fraction: f64 = words.iter().map(|w| w.absorption_fraction).sum();
            LetterAbsorption {
                letter: LETTERS.as_bytes()[l] as char,
                probe_f1: side.probes.f1[l],
                counted: side.probes.f1[l] > cfg.min_probe_f1 && n > 0,
                k_sparse_f1,
                k_sparse_latents,
                main_latents: main,
                probe_true_positives: n,
                absorption_fraction: fraction / n.max(1) as f64,
                full_absorption_rate: full as f64 / n.max(1) as f64,
                full_absorptions: full,
                words,
            }
        })
        .collect();
    summarize(c, direction, letters, cfg)
}

/// The coder's means over its counted letters.
fn summarize(
    c: &LoadedCoder,
    direction: LatentDirection,
    letters: Vec<LetterAbsorption>,
    cfg: &AbsorptionConfig,
) -> AbsorptionScores {
    let counted: Vec<&LetterAbsorption> = letters.iter().filter(|l| l.counted).collect();
    let enough = counted.len() >= cfg.min_letters && counted.len() >= 2;
    let stats = |f: &dyn Fn(&LetterAbsorption) -> f64| {
        let v: Vec<f64> = counted.iter().map(|l| f(l)).collect();
        enough.then(|| mean_std(&v))
    };
    let fraction = stats(&|l| l.absorption_fraction);
    let full = stats(&|l| l.full_absorption_rate);
    let main = stats(&|l| l.main_latents.len() as f64);
    let mean_k_sparse_f1 = match counted.is_empty() {
        true => Vec::new(),
        false => (0..counted[0].k_sparse_f1.len())
            .map(|k| counted.iter().map(|l| l.k_sparse_f1[k]).sum::<f64>() / counted.len() as f64)
            .collect(),
    };
    AbsorptionScores {
        name: c.name.clone(),
        side: c.meta.sides().0,
        direction,
        letters_counted: counted.len(),
        mean_absorption_fraction: fraction.map(|s| s.0),
        mean_full_absorption: full.map(|s| s.0),
        mean_main_latents: main.map(|s| s.0),
        std_absorption_fraction: fraction.map(|s| s.1),
        std_full_absorption: full.map(|s| s.1),
        mean_k_sparse_f1,
        letters,
    }
}

/// Absorption of every coder at `layer`.
pub fn run(
    model: &dyn LanguageModel,
    tokenizer: &TextTokenizer,
    layer: usize,
    coders: &[LoadedCoder],
    encoders: &[Encoder],
    cfg: &AbsorptionConfig,
) -> Result<AbsorptionResult> {
    let words = first_letter::alpha_words(tokenizer)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let data = first_letter::dataset(&words, cfg.max_words, tokenizer, &mut rng)?;
    let mut sides: Vec<Side> = coders.iter().map(|c| c.meta.sides().0).collect();
    sides.sort();
    sides.dedup();
    let train = first_letter::word_activations(model, layer, &data.train, &sides, PROMPT_BATCH)?;
    let test = first_letter::word_activations(model, layer, &data.test, &sides, PROMPT_BATCH)?;
    let mut probes = Vec::new();
    let mut positives: BTreeMap<Side, Vec<Vec<f32>>> = BTreeMap::new();
    for &side in &sides {
        let p = letter_probes(
            side,
            &data,
            &train[&side],
            &test[&side],
            &words,
            tokenizer,
            &mut rng,
        )?;
        let mut per_letter = Vec::new();
        for prompts in &p.true_positives {
            let acts =
                first_letter::word_activations(model, layer, prompts, &[side], PROMPT_BATCH)?;
            per_letter.push(acts.into_values().next().unwrap_or_default());
        }
        positives.insert(side, per_letter);
        probes.push(p);
    }
    let scores = coders
        .iter()
        .zip(encoders)
        .map(|(c, e)| {
            let side = c.meta.sides().0;
            let at = sides.iter().position(|&s| s == side).expect("side listed");
            let view = SideData {
                train: &train[&side],
                test: &test[&side],
                probes: &probes[at],
                positives: &positives[&side],
            };
            score_coder(c, e, &data, &view, cfg)
        })
        .collect();
    Ok(AbsorptionResult {
        layer,
        seed: cfg.seed,
        min_probe_f1: cfg.min_probe_f1,
        min_letters: cfg.min_letters,
        words,
        dataset: data,
        probes,
        coders: scores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_silent_rows_keeps_the_fit() {
        // 40 rows of 2 features, most all zero, labels mixed.
        let x: Vec<f32> = (0..80)
            .map(|i| {
                if i % 7 == 0 {
                    (i % 5) as f32 * 0.3
                } else {
                    0.0
                }
            })
            .collect();
        let y: Vec<bool> = (0..40).map(|i| i % 3 == 0).collect();
        let s = logistic::sample_weights(&y, true);
        let full = logistic::fit(&x, 2, &y, 1.0, true);
        let (xm, ym, sm) = merge_silent_rows(&x, 2, &y, &s);
        assert!(ym.len() < 20, "{} rows left", ym.len());
        let merged = logistic::fit_weighted(&xm, 2, &ym, &sm, 1.0);
        for (a, b) in full
            .w
            .iter()
            .chain([&full.b])
            .zip(merged.w.iter().chain([&merged.b]))
        {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }

    #[test]
    fn main_latents_stop_when_f1_stops_rising() {
        let l: Vec<Vec<u32>> = (1..=4).map(|k| (0..k).collect()).collect();
        assert_eq!(main_latents(&[0.5, 0.52, 0.9, 0.95], &l), vec![0]);
        assert_eq!(main_latents(&[0.5, 0.6, 0.7, 0.71], &l), vec![0, 1, 2]);
    }

    #[test]
    fn absorption_fraction_cases() {
        let cos = vec![0.9, 0.5, 0.2, 0.05];
        // Main latent 0 silent, latent 1 projects 0.5 of a_p = 1.0: fully absorbed.
        let w = word_absorption("x", 1.0, &[(1, 1.0)], &cos, &[0]);
        assert_eq!(w.absorption_fraction, 1.0);
        assert!(w.full_absorption);
        // Main projects 0.45, absorbers 0.5 (cos 0.5) + 0.2 → min(0.7, 0.55) / (0.55 + 0.45).
        let w = word_absorption("x", 1.0, &[(0, 0.5), (1, 1.0), (2, 1.0)], &cos, &[0]);
        assert!(
            (w.absorption_fraction - 0.55).abs() < 1e-9,
            "{}",
            w.absorption_fraction
        );
        assert!(!w.full_absorption);
        // An absorber below cos 0.1 does not count; 0.3 < 40 %: none absorbed.
        let w = word_absorption("x", 1.0, &[(3, 6.0)], &cos, &[0]);
        assert_eq!(w.absorption_fraction, 0.0);
        assert!(!w.full_absorption, "6 · 0.05 = 0.3 < 40 % of a·p̂");
        // Full absorption needs only cos ≥ 0.025: 10 · 0.05 = 0.5 ≥ 40 %, but the fraction's cos ≥ 0.1 is not met.
        let w = word_absorption("x", 1.0, &[(3, 10.0)], &cos, &[0]);
        assert_eq!(w.absorption_fraction, 0.0);
        assert!(w.full_absorption);
        // A firing main latent rules full absorption out.
        let w = word_absorption("x", 1.0, &[(0, 0.01), (1, 2.0)], &cos, &[0]);
        assert!(!w.full_absorption);
    }
}
