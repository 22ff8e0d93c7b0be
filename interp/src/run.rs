//! The method for one coder's sampled latents: explain each from 40 activating examples (4 per activation
//! quantile), then score the explanation by detection (50 activating + 50 silent windows, unmarked: which
//! activate?) and fuzzing (50 activating windows, half with the truly active tokens marked and half with as
//! many other tokens marked: does the marking fit?), and, as a sanity floor, detection with another latent's
//! explanation; with [`Scorer::Simulation`], simulation ([`crate::simulation`]). With `calibrate`, every detection and fuzzing prompt is asked once more with a content-free
//! explanation, so that the scorer's leaning on each example alone can be taken out of its yes probability.
//! All prompts of a phase go to the model together, so an HTTP server sees them concurrently.

use crate::chat::{Answer, CachedChat, ChatMessage};
use crate::prompts::{
    detection_prompt, explain_prompt, fuzzing_prompt, parse_binary_list, parse_explanation,
    render_window, top_tokens_explanation, ExplainerExample,
};
use crate::records::{shuffle, split_examples, Example, ExampleSets, LatentRecord, Window};
use crate::score::{score, Judgement, Scores};
use crate::simulation::{simulate, SimulationScore};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InterpConfig {
    pub quantiles: u32,
    pub explain_per_quantile: usize,
    pub score_per_quantile: usize,
    pub non_activating: usize,
    /// Examples per scoring prompt.
    pub batch: usize,
    pub seed: u64,
    /// The explainer's answer length.
    pub explain_max_tokens: usize,
    /// Also ask every scoring prompt with the content-free explanation [`BASELINE_EXPLANATION`], for the
    /// calibrated AUROC (only useful with models that give yes probabilities: the local one).
    pub calibrate: bool,
    pub explainer: Explainer,
    /// The scorers that run (detection also runs its shuffled-explanation control; simulation its own).
    #[serde(default = "default_scorers")]
    pub scorers: Vec<Scorer>,
    /// Simulation: activating windows simulated per latent, and as many silent ones.
    #[serde(default = "default_simulation_windows")]
    pub simulation_windows: usize,
}

/// A way of scoring an explanation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Scorer {
    /// Which windows activate (50 activating, 50 silent, unmarked).
    Detection,
    /// Whether the marked tokens are the active ones.
    Fuzzing,
    /// The activation of every token predicted from the explanation (Bills et al. 2023), correlated with the
    /// true one.
    Simulation,
}

fn default_scorers() -> Vec<Scorer> {
    vec![Scorer::Detection, Scorer::Fuzzing]
}

fn default_simulation_windows() -> usize {
    5
}

/// Who writes the explanations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Explainer {
    /// The chat model, from the 40 marked examples.
    Llm,
    /// No model: the tokens the latent fires on most often among the same examples (a baseline for the
    /// model's explanations, and a test of whether the scorer can use an explanation at all).
    TopTokens,
}

/// The content-free explanation of the calibration prompts.
pub const BASELINE_EXPLANATION: &str = "N/A";

impl Default for InterpConfig {
    fn default() -> InterpConfig {
        InterpConfig {
            quantiles: 10,
            explain_per_quantile: 4,
            score_per_quantile: 5,
            non_activating: 50,
            batch: 5,
            seed: 0,
            explain_max_tokens: 120,
            calibrate: false,
            explainer: Explainer::Llm,
            scorers: default_scorers(),
            simulation_windows: default_simulation_windows(),
        }
    }
}

/// A window as shown in results and reports: its tokens' text and the latent's activation on each.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShownWindow {
    pub quantile: Option<u32>,
    pub tokens: Vec<String>,
    pub acts: Vec<f32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LatentResult {
    pub latent: u32,
    /// Fraction of the token set's tokens it fired on.
    pub frequency: f64,
    pub firings: u64,
    /// None when it never fired, or the explainer's answer did not parse.
    pub explanation: Option<String>,
    pub explainer_answer: Option<String>,
    pub detection: Option<Scores>,
    pub fuzzing: Option<Scores>,
    /// Detection scored with another latent's explanation (the sanity floor).
    pub control_detection: Option<Scores>,
    pub detection_judgements: Vec<Judgement>,
    pub fuzzing_judgements: Vec<Judgement>,
    /// Simulation with the latent's explanation, and with another latent's (the control).
    #[serde(default)]
    pub simulation: Option<SimulationScore>,
    #[serde(default)]
    pub control_simulation: Option<SimulationScore>,
    pub explain_examples: Vec<ShownWindow>,
    pub non_activating_examples: Vec<ShownWindow>,
    /// Why nothing was scored, when nothing was.
    pub note: Option<String>,
}

/// One scoring prompt's items, to map the parsed answer back.
struct Batch {
    latent: usize,
    kind: Task,
    items: Vec<Judgement>,
    prompt: Vec<ChatMessage>,
}

#[derive(Clone, Copy, PartialEq)]
enum Task {
    Detection,
    Fuzzing,
    Control,
    /// Detection and fuzzing prompts again, with the content-free explanation.
    DetectionBaseline,
    FuzzingBaseline,
}

/// Turns token ids into their text (one string per token).
pub type TokenText<'a> = dyn Fn(&[u32]) -> Vec<String> + Sync + 'a;

fn shown(w: &Window, quantile: Option<u32>, text: &TokenText) -> ShownWindow {
    ShownWindow {
        quantile,
        tokens: text(&w.tokens),
        acts: w.acts.clone(),
    }
}

/// Explains and scores every record's latent. `tokens` is the size of the token set (for frequencies).
pub fn interpret(
    records: &[LatentRecord],
    tokens: u64,
    text: &TokenText,
    chat: &CachedChat,
    cfg: &InterpConfig,
    progress: &(dyn Fn(&str, usize, usize) + Sync),
) -> Vec<LatentResult> {
    let sets: Vec<ExampleSets> = records
        .iter()
        .map(|r| {
            let mut rng =
                ChaCha8Rng::seed_from_u64(cfg.seed ^ (r.latent as u64).wrapping_mul(0x9e37_79b9));
            split_examples(
                r,
                cfg.quantiles,
                cfg.explain_per_quantile,
                cfg.score_per_quantile,
                cfg.non_activating,
                &mut rng,
            )
        })
        .collect();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let tick = |phase: &str, total: usize| {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        progress(phase, n, total);
    };
    let mut results = explain(records, tokens, &sets, text, chat, cfg, &tick);

    // Phase 2: detection, fuzzing, and detection with a shuffled explanation, all in one go.
    let explained: Vec<usize> = (0..records.len())
        .filter(|&i| results[i].explanation.is_some())
        .collect();
    let batches = scoring_batches(records, &sets, &results, &explained, text, cfg);
    let prompts: Vec<(Vec<ChatMessage>, Answer)> = batches
        .iter()
        .map(|b| (b.prompt.clone(), Answer::BinaryList { n: b.items.len() }))
        .collect();
    done.store(0, std::sync::atomic::Ordering::Relaxed);
    let answers = chat.complete_all(&prompts, &|| tick("score", prompts.len()));
    let mut judged: Vec<[Vec<Judgement>; 5]> = vec![Default::default(); records.len()];
    for (b, answer) in batches.into_iter().zip(answers) {
        let n = b.items.len();
        let answer = answer.ok();
        let verdicts = answer.as_ref().and_then(|a| parse_binary_list(&a.text, n));
        let p_yes = answer
            .and_then(|a| a.yes_probability)
            .filter(|p| p.len() == n && verdicts.is_some());
        let slot = &mut judged[b.latent][b.kind as usize];
        for (k, mut j) in b.items.into_iter().enumerate() {
            j.predicted = verdicts.as_ref().map(|v| v[k]);
            j.p_yes = p_yes.as_ref().map(|p| p[k]);
            slot.push(j);
        }
    }
    for &i in &explained {
        record_scores(&mut results[i], std::mem::take(&mut judged[i]));
    }
    if cfg.scorers.contains(&Scorer::Simulation) {
        done.store(0, std::sync::atomic::Ordering::Relaxed);
        let windows = cfg.simulation_windows;
        simulate(&sets, &mut results, &explained, windows, text, chat, &tick);
    }
    results
}

/// Phase 1: each latent's result with its examples and explanation (the chat model's, or the top tokens').
fn explain(
    records: &[LatentRecord],
    tokens: u64,
    sets: &[ExampleSets],
    text: &TokenText,
    chat: &CachedChat,
    cfg: &InterpConfig,
    tick: &(dyn Fn(&str, usize) + Sync),
) -> Vec<LatentResult> {
    let explainable: Vec<usize> = (0..records.len())
        .filter(|&i| !sets[i].explain.is_empty())
        .collect();
    let explain = Answer::Text {
        max_tokens: cfg.explain_max_tokens,
    };
    let asked: &[usize] = match cfg.explainer {
        Explainer::Llm => &explainable,
        Explainer::TopTokens => &[],
    };
    let prompts: Vec<(Vec<ChatMessage>, Answer)> = asked
        .iter()
        .map(|&i| {
            (
                explain_prompt(&explainer_examples(&sets[i].explain, text)),
                explain,
            )
        })
        .collect();
    let answers = chat.complete_all(&prompts, &|| tick("explain", prompts.len()));
    let mut results: Vec<LatentResult> = records
        .iter()
        .zip(sets)
        .map(|(r, s)| LatentResult {
            latent: r.latent,
            frequency: r.firings as f64 / tokens.max(1) as f64,
            firings: r.firings,
            explanation: None,
            explainer_answer: None,
            detection: None,
            fuzzing: None,
            control_detection: None,
            detection_judgements: Vec::new(),
            fuzzing_judgements: Vec::new(),
            simulation: None,
            control_simulation: None,
            explain_examples: s
                .explain
                .iter()
                .map(|e| shown(&e.window, Some(e.quantile), text))
                .collect(),
            non_activating_examples: s
                .non_activating
                .iter()
                .map(|w| shown(w, None, text))
                .collect(),
            note: (r.firings == 0).then(|| "never fired on the token set".to_string()),
        })
        .collect();
    if cfg.explainer == Explainer::TopTokens {
        for &i in &explainable {
            let active: Vec<(String, f32)> = sets[i]
                .explain
                .iter()
                .flat_map(|e| {
                    text(&e.window.tokens)
                        .into_iter()
                        .zip(e.window.acts.clone())
                })
                .filter(|(_, act)| *act > 0.0)
                .collect();
            results[i].explanation = top_tokens_explanation(&active, 5);
        }
    }
    for (&i, answer) in asked.iter().zip(answers) {
        match answer {
            Ok(a) => {
                results[i].explanation = parse_explanation(&a.text);
                if results[i].explanation.is_none() {
                    results[i].note = Some("the explainer's answer did not parse".into());
                }
                results[i].explainer_answer = Some(a.text);
            }
            Err(e) => results[i].note = Some(format!("explainer failed: {e:#}")),
        }
    }
    results
}

/// Every scoring prompt of the `explained` latents: detection, fuzzing, detection with the next latent's
/// explanation (the control), and with calibration the same prompts with the content-free explanation.
fn scoring_batches(
    records: &[LatentRecord],
    sets: &[ExampleSets],
    results: &[LatentResult],
    explained: &[usize],
    text: &TokenText,
    cfg: &InterpConfig,
) -> Vec<Batch> {
    let mut batches = Vec::new();
    for (pos, &i) in explained.iter().enumerate() {
        let explanation = results[i].explanation.clone().unwrap();
        let sets_i = &sets[i];
        let rng = &mut ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xdec0de ^ records[i].latent as u64);
        let detection_items = detection_items(&sets_i.score, &sets_i.non_activating, rng);
        let chunks = |items: &[(Judgement, String)], kind: Task, explanation: &str| -> Vec<Batch> {
            items
                .chunks(cfg.batch.max(1))
                .map(|c| {
                    let texts: Vec<String> = c.iter().map(|(_, t)| t.clone()).collect();
                    Batch {
                        latent: i,
                        kind,
                        items: c.iter().map(|(j, _)| j.clone()).collect(),
                        prompt: match kind {
                            Task::Fuzzing | Task::FuzzingBaseline => {
                                fuzzing_prompt(explanation, &texts)
                            }
                            _ => detection_prompt(explanation, &texts),
                        },
                    }
                })
                .collect()
        };
        let render = |items: Vec<(Judgement, Window, Vec<bool>)>| -> Vec<(Judgement, String)> {
            items
                .into_iter()
                .map(|(j, w, m)| (j, render_window(&text(&w.tokens), &m)))
                .collect()
        };
        let detection = render(detection_items);
        let fuzz = render(fuzzing_items(&sets_i.score, rng));
        if cfg.scorers.contains(&Scorer::Detection) {
            batches.extend(chunks(&detection, Task::Detection, &explanation));
            if explained.len() > 1 {
                let other = explained[(pos + 1) % explained.len()];
                let theirs = results[other].explanation.clone().unwrap();
                batches.extend(chunks(&detection, Task::Control, &theirs));
            }
            if cfg.calibrate {
                batches.extend(chunks(
                    &detection,
                    Task::DetectionBaseline,
                    BASELINE_EXPLANATION,
                ));
            }
        }
        if cfg.scorers.contains(&Scorer::Fuzzing) {
            batches.extend(chunks(&fuzz, Task::Fuzzing, &explanation));
            if cfg.calibrate {
                batches.extend(chunks(&fuzz, Task::FuzzingBaseline, BASELINE_EXPLANATION));
            }
        }
    }
    batches
}

/// One latent's scores from its judgements, by task (in `Task` order); the calibration prompts' P(yes)
/// become the `p_base` of the prompts they calibrate.
fn record_scores(result: &mut LatentResult, judged: [Vec<Judgement>; 5]) {
    let [mut det, mut fuzz, mut control, det_base, fuzz_base] = judged;
    // Baseline prompts hold the same examples in the same order as the prompts they calibrate.
    let with_base = |js: &mut Vec<Judgement>, base: &[Judgement]| {
        if base.len() == js.len() {
            for (j, b) in js.iter_mut().zip(base) {
                j.p_base = b.p_yes;
            }
        }
    };
    with_base(&mut det, &det_base);
    with_base(&mut control, &det_base);
    with_base(&mut fuzz, &fuzz_base);
    result.detection = (!det.is_empty()).then(|| score(&det));
    result.fuzzing = (!fuzz.is_empty()).then(|| score(&fuzz));
    result.control_detection = (!control.is_empty()).then(|| score(&control));
    result.detection_judgements = det;
    result.fuzzing_judgements = fuzz;
}

/// The explainer's view of its examples: active tokens marked, activations on a 1–10 scale of the strongest.
fn explainer_examples(examples: &[Example], text: &TokenText) -> Vec<ExplainerExample> {
    let max = examples
        .iter()
        .map(|e| e.window.max_act())
        .fold(0.0, f32::max)
        .max(f32::MIN_POSITIVE);
    examples
        .iter()
        .map(|e| {
            let strings = text(&e.window.tokens);
            let marked: Vec<bool> = e.window.acts.iter().map(|&a| a > 0.0).collect();
            let active = strings
                .iter()
                .zip(&e.window.acts)
                .filter(|(_, &a)| a > 0.0)
                .map(|(t, &a)| (t.clone(), ((10.0 * a / max).round() as u32).clamp(1, 10)))
                .collect();
            ExplainerExample {
                text: render_window(&strings, &marked),
                active,
            }
        })
        .collect()
}

/// Detection: activating and silent windows, unmarked, shuffled.
fn detection_items(
    activating: &[Example],
    silent: &[Window],
    rng: &mut ChaCha8Rng,
) -> Vec<(Judgement, Window, Vec<bool>)> {
    let none = |w: &Window| vec![false; w.tokens.len()];
    let mut items: Vec<_> = activating
        .iter()
        .map(|e| {
            (
                Judgement {
                    truth: true,
                    quantile: Some(e.quantile),
                    ..Default::default()
                },
                e.window.clone(),
                none(&e.window),
            )
        })
        .chain(
            silent
                .iter()
                .map(|w| (Judgement::default(), w.clone(), none(w))),
        )
        .collect();
    shuffle(&mut items, rng);
    items
}

/// Fuzzing: activating windows, every other one (after a shuffle) marked at as many random silent tokens as
/// it has active ones instead of at its active tokens.
fn fuzzing_items(
    activating: &[Example],
    rng: &mut ChaCha8Rng,
) -> Vec<(Judgement, Window, Vec<bool>)> {
    let mut order: Vec<&Example> = activating.iter().collect();
    shuffle(&mut order, rng);
    order
        .into_iter()
        .enumerate()
        .map(|(n, e)| {
            let active: Vec<bool> = e.window.acts.iter().map(|&a| a > 0.0).collect();
            let mut silent: Vec<usize> = (0..active.len()).filter(|&t| !active[t]).collect();
            let wanted = active.iter().filter(|&&a| a).count();
            let correct = n % 2 == 0 || silent.is_empty();
            let marks = if correct {
                active
            } else {
                shuffle(&mut silent, rng);
                let mut m = vec![false; active.len()];
                silent.iter().take(wanted.max(1)).for_each(|&t| m[t] = true);
                m
            };
            let j = Judgement {
                truth: correct,
                quantile: Some(e.quantile),
                ..Default::default()
            };
            (j, e.window.clone(), marks)
        })
        .collect()
}

/// A random sample of `n` latents among those with at least `min_firings` firings (all of them if fewer).
pub fn sample_latents(fired: &[u64], n: usize, min_firings: u64, seed: u64) -> Vec<u32> {
    let mut eligible: Vec<u32> = (0..fired.len() as u32)
        .filter(|&l| fired[l as usize] >= min_firings)
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    shuffle(&mut eligible, &mut rng);
    eligible.truncate(n);
    eligible.sort();
    eligible
}
