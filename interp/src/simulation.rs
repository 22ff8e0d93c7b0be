//! Simulation scoring (Bills et al. 2023): the scorer reads an explanation and one window's tokens and predicts
//! the latent's activation on every token, on a 0–9 scale. Where the model gives probabilities (the local
//! model; a server returning `logprobs`) a token's prediction is the expected digit Σ d · p(d), otherwise the
//! digit it wrote. The score is the correlation of predicted with true activations over all tokens of all the
//! latent's simulated windows together, activating and silent ("all at once", as in Bills et al. and delphi's
//! simulator): 1 is a perfect simulator, 0 one that knows nothing. Beside it, the same windows simulated from
//! another latent's explanation (the shuffled-explanation control).

use crate::chat::{Answer, CachedChat, ChatMessage, Completion};
use crate::prompts::{parse_digit_list, simulation_prompt};
use crate::records::{ExampleSets, Window};
use crate::run::{LatentResult, TokenText};
use serde::{Deserialize, Serialize};

/// A window's predicted activations and whether they are expected values (None: the answer did not parse).
pub type Prediction = Option<(Vec<f64>, bool)>;
/// A simulated window: its true activations and the prediction.
pub type SimulatedWindow = (Vec<f32>, Prediction);

/// One latent's simulation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SimulationScore {
    /// Pearson correlation of predicted with true activations over every token of the parsed windows (NaN
    /// when either is constant).
    pub correlation: f64,
    /// Windows whose answer parsed, and their tokens.
    pub windows: usize,
    pub tokens: usize,
    pub unparsed: usize,
    /// Whether the predictions were expected values (from the model's probabilities) rather than digits.
    pub expected_values: bool,
}

/// Pearson correlation of `a` and `b` (f64 sums); NaN when either is constant or there are fewer than two.
pub fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    if a.len() < 2 || a.len() != b.len() {
        return f64::NAN;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        return f64::NAN;
    }
    sab / (saa * sbb).sqrt()
}

/// A window's predicted activations from the scorer's answer: the expected digits where the model gave them
/// (and its written list parsed), else the written digits; None when the answer does not parse.
pub fn predictions(answer: &Completion, n: usize) -> Prediction {
    let written = parse_digit_list(&answer.text, n)?;
    Some(match &answer.expected_digits {
        Some(e) if e.len() == n => (e.clone(), true),
        _ => (written.into_iter().map(f64::from).collect(), false),
    })
}

/// The score of a latent's windows: (true activations, predictions if the answer parsed) per window.
pub fn score(windows: &[SimulatedWindow]) -> SimulationScore {
    let (mut truth, mut predicted) = (Vec::new(), Vec::new());
    let (mut parsed, mut expected) = (0, true);
    for (acts, p) in windows {
        if let Some((p, from_probabilities)) = p {
            truth.extend(acts.iter().map(|&a| a as f64));
            predicted.extend_from_slice(p);
            parsed += 1;
            expected &= *from_probabilities;
        }
    }
    SimulationScore {
        correlation: correlation(&predicted, &truth),
        windows: parsed,
        tokens: truth.len(),
        unparsed: windows.len() - parsed,
        expected_values: expected && parsed > 0,
    }
}

/// The windows a latent is simulated on: `n` activating ones spread over the scoring examples' quantiles
/// (every len/n-th) and `n` silent ones.
pub fn windows(sets: &ExampleSets, n: usize) -> Vec<&Window> {
    let step = (sets.score.len() / n.max(1)).max(1);
    let activating = sets.score.iter().step_by(step).take(n).map(|e| &e.window);
    activating
        .chain(sets.non_activating.iter().take(n))
        .collect()
}

/// Simulates every explained latent's windows with its explanation and, as the control, with the next
/// explained latent's; fills `simulation` and `control_simulation` of `results`.
pub fn simulate(
    sets: &[ExampleSets],
    results: &mut [LatentResult],
    explained: &[usize],
    per_kind: usize,
    text: &TokenText,
    chat: &CachedChat,
    tick: &(dyn Fn(&str, usize) + Sync),
) {
    // (latent, is the control, window's true activations) per prompt.
    let mut asked: Vec<(usize, bool, Vec<f32>)> = Vec::new();
    let mut prompts: Vec<(Vec<ChatMessage>, Answer)> = Vec::new();
    for (pos, &i) in explained.iter().enumerate() {
        let own = results[i].explanation.clone().unwrap_or_default();
        let other = (explained.len() > 1)
            .then(|| {
                results[explained[(pos + 1) % explained.len()]]
                    .explanation
                    .clone()
            })
            .flatten();
        for w in windows(&sets[i], per_kind) {
            let tokens = text(&w.tokens);
            let n = tokens.len();
            for (control, explanation) in [(false, Some(&own)), (true, other.as_ref())] {
                if let Some(e) = explanation {
                    prompts.push((simulation_prompt(e, &tokens), Answer::DigitList { n }));
                    asked.push((i, control, w.acts.clone()));
                }
            }
        }
    }
    let answers = chat.complete_all(&prompts, &|| tick("simulate", prompts.len()));
    let mut by_latent: Vec<[Vec<SimulatedWindow>; 2]> = vec![Default::default(); results.len()];
    for ((i, control, acts), answer) in asked.into_iter().zip(answers) {
        let p = answer.ok().and_then(|a| predictions(&a, acts.len()));
        by_latent[i][control as usize].push((acts, p));
    }
    for &i in explained {
        let [own, control] = std::mem::take(&mut by_latent[i]);
        results[i].simulation = (!own.is_empty()).then(|| score(&own));
        results[i].control_simulation = (!control.is_empty()).then(|| score(&control));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    /// Windows of a sparse latent: mostly silent, a few tokens active.
    fn sparse_windows() -> Vec<Vec<f32>> {
        (0..20)
            .map(|w| {
                (0..32)
                    .map(|t| {
                        if w % 2 == 0 && t % 7 == w % 5 {
                            1.0 + (t % 3) as f32
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_perfect_simulator_scores_one_and_a_shuffled_one_about_zero() {
        let truth = sparse_windows();
        let perfect: Vec<_> = truth
            .iter()
            .map(|a| {
                (
                    a.clone(),
                    Some((a.iter().map(|&v| 3.0 * v as f64).collect(), true)),
                )
            })
            .collect();
        let s = score(&perfect);
        assert!((s.correlation - 1.0).abs() < 1e-12, "{s:?}");
        assert_eq!((s.windows, s.tokens, s.unparsed), (20, 640, 0));
        // The same predictions, shuffled over all tokens: no relation left.
        let mut all: Vec<f64> = truth.iter().flatten().map(|&v| v as f64).collect();
        all.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let shuffled: Vec<_> = truth
            .iter()
            .zip(all.chunks(32))
            .map(|(a, p)| (a.clone(), Some((p.to_vec(), true))))
            .collect();
        let r = score(&shuffled).correlation;
        assert!(r.abs() < 0.1, "shuffled predictions correlate {r}");
    }

    #[test]
    fn unparsed_windows_are_counted_and_left_out() {
        let truth = sparse_windows();
        let mut w: Vec<_> = truth
            .iter()
            .map(|a| {
                (
                    a.clone(),
                    Some((a.iter().map(|&v| v as f64).collect(), false)),
                )
            })
            .collect();
        w[3].1 = None;
        let s = score(&w);
        assert_eq!((s.windows, s.unparsed, s.expected_values), (19, 1, false));
        assert!(
            correlation(&[1.0, 1.0], &[0.0, 1.0]).is_nan(),
            "a constant side"
        );
    }

    #[test]
    fn expected_digits_come_from_the_answer_when_given() {
        let a = Completion {
            text: "[0, 3, 9]".into(),
            expected_digits: Some(vec![0.5, 2.75, 8.0]),
            ..Default::default()
        };
        assert_eq!(predictions(&a, 3), Some((vec![0.5, 2.75, 8.0], true)));
        let written = Completion::text("[0, 3, 9]".into());
        assert_eq!(predictions(&written, 3), Some((vec![0.0, 3.0, 9.0], false)));
        assert_eq!(predictions(&written, 4), None);
    }
}
