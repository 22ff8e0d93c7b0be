//! The whole method (`interpret`) with a scorer that does read: a rule that names the word most often marked
//! in the explainer's examples, and judges an example by whether it holds the explanation's word. Each
//! synthetic latent fires on its own word, so with that scorer detection and fuzzing must be perfect, the
//! shuffled control must fall well below, and the calibration prompts must line up with the examples they
//! calibrate — whatever the batching. It checks the wiring between examples, explanations, prompts, answers and
//! scores, which the 135M model's chance-level answers cannot show.

use anyhow::Result;
use interp::chat::{Answer, CachedChat, ChatMessage, ChatModel, Completion};
use interp::records::{LatentRecord, Window};
use interp::run::{interpret, InterpConfig, BASELINE_EXPLANATION};
use interp::summary::summarize;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const WORDS: [&str; 4] = ["apple", "river", "piano", "cloud"];
const FILLER: u32 = 50;

fn token_text(ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&id| match id {
            id if id >= 100 => format!(" {}", WORDS[(id - 100) as usize]),
            id => format!(" w{id}"),
        })
        .collect()
}

/// Latent `l` fires on token 100 + l, once per activating window; its silent windows hold the next latent's
/// word, so that latent's explanation, shown in the control, is wrong on every example.
fn records(rng: &mut ChaCha8Rng) -> Vec<LatentRecord> {
    let mut seq = 0u64;
    let mut window = |rng: &mut ChaCha8Rng, word: Option<(usize, u32, f32)>| {
        seq += 1;
        let mut tokens: Vec<u32> = (0..32).map(|_| rng.random_range(0..FILLER)).collect();
        let mut acts = vec![0.0f32; 32];
        let mut act = 0.0;
        if let Some((at, token, a)) = word {
            tokens[at] = token;
            if a > 0.0 {
                acts[at] = a;
                act = a;
            }
        }
        Window {
            seq,
            start: 0,
            tokens,
            acts,
            act,
        }
    };
    (0..WORDS.len() as u32)
        .map(|l| {
            let next = 100 + (l + 1) % WORDS.len() as u32;
            let activating = (0..100)
                .map(|_| {
                    let (at, a) = (rng.random_range(0..32), rng.random_range(0.5f32..10.0));
                    window(rng, Some((at, 100 + l, a)))
                })
                .collect();
            let non_activating = (0..60)
                .map(|_| {
                    let at = rng.random_range(0..32);
                    window(rng, Some((at, next, 0.0)))
                })
                .collect();
            LatentRecord {
                latent: l,
                firings: 100,
                activating,
                non_activating,
            }
        })
        .collect()
}

/// Explains by the most often marked word; judges by the explanation's last word.
struct Reader;

fn marked(text: &str) -> Vec<&str> {
    text.split("<<")
        .skip(1)
        .filter_map(|s| s.split(">>").next())
        .collect()
}

/// The last word of the prompt's explanation (its first line).
fn explanation_word(user: &str) -> String {
    let first = user.lines().next().unwrap();
    first
        .rsplit(' ')
        .next()
        .unwrap()
        .trim_end_matches('.')
        .to_string()
}

impl ChatModel for Reader {
    fn identity(&self) -> String {
        "reader".into()
    }

    fn complete(&self, messages: &[ChatMessage], answer: Answer) -> Result<Completion> {
        let user = &messages.last().unwrap().content;
        match answer {
            Answer::Text { .. } => {
                let mut counts = std::collections::BTreeMap::<&str, usize>::new();
                for m in marked(user) {
                    *counts.entry(m).or_default() += 1;
                }
                let top = counts.iter().max_by_key(|(_, &c)| c).unwrap().0;
                Ok(Completion::text(format!(
                    "Looking at the marks.\n[EXPLANATION]: The feature is active on the word {top}."
                )))
            }
            Answer::BinaryList { n } => {
                let explanation = user
                    .lines()
                    .next()
                    .unwrap()
                    .trim_start_matches("Explanation: ");
                let examples: Vec<&str> = user
                    .lines()
                    .filter_map(|l| {
                        l.split_once(": ")
                            .filter(|(h, _)| h.starts_with("Example "))
                    })
                    .map(|(_, text)| text)
                    .collect();
                assert_eq!(examples.len(), n, "{user}");
                let (bits, p): (Vec<&str>, Vec<f64>) = examples
                    .iter()
                    .map(|text| {
                        if explanation == BASELINE_EXPLANATION {
                            // Leaning on the example alone, different for the two sides of a latent's
                            // examples, so that a misaligned baseline shows.
                            let even = text
                                .split(' ')
                                .any(|t| WORDS.iter().step_by(2).any(|w| *w == t));
                            return if even { ("0", 0.3) } else { ("1", 0.7) };
                        }
                        let word = explanation
                            .rsplit(' ')
                            .next()
                            .unwrap()
                            .trim_end_matches('.');
                        let marks = marked(text);
                        let yes = if marks.is_empty() {
                            text.split(' ').any(|t| t == word)
                        } else {
                            marks.iter().all(|m| *m == word)
                        };
                        if yes {
                            ("1", 0.9)
                        } else {
                            ("0", 0.1)
                        }
                    })
                    .unzip();
                Ok(Completion {
                    text: format!("[{}]", bits.join(", ")),
                    yes_probability: Some(p),
                    ..Default::default()
                })
            }
            Answer::DigitList { n } => {
                // Simulation: 9 on each token that is the explanation's word, 0 elsewhere.
                let word = explanation_word(user);
                let tokens: Vec<String> = user
                    .lines()
                    .filter_map(|l| {
                        l.split_once(". ")
                            .filter(|(h, _)| h.parse::<usize>().is_ok())
                    })
                    .map(|(_, t)| t.trim_matches('"').trim().to_string())
                    .collect();
                assert_eq!(tokens.len(), n, "{user}");
                let digits: Vec<f64> = tokens
                    .iter()
                    .map(|t| if *t == word { 9.0 } else { 0.0 })
                    .collect();
                let text: Vec<String> = digits.iter().map(|d| d.to_string()).collect();
                Ok(Completion {
                    text: format!("[{}]", text.join(", ")),
                    expected_digits: Some(digits),
                    ..Default::default()
                })
            }
        }
    }
}

#[test]
fn a_reading_scorer_scores_right_explanations_perfectly_and_shuffled_ones_low() {
    for batch in [1, 5, 7] {
        let records = records(&mut ChaCha8Rng::seed_from_u64(3));
        let tmp = tempfile::tempdir().unwrap();
        let chat = CachedChat::new(&Reader, tmp.path().to_path_buf());
        let cfg = InterpConfig {
            batch,
            calibrate: true,
            ..Default::default()
        };
        let results = interpret(&records, 10_000, &token_text, &chat, &cfg, &|_, _, _| {});
        for (r, word) in results.iter().zip(WORDS) {
            assert_eq!(
                r.explanation.as_deref(),
                Some(format!("The feature is active on the word {word}.").as_str())
            );
            let (det, fuzz, control) = (
                r.detection.as_ref().unwrap(),
                r.fuzzing.as_ref().unwrap(),
                r.control_detection.as_ref().unwrap(),
            );
            assert_eq!((det.n, fuzz.n, control.n), (100, 50, 100), "batch {batch}");
            assert_eq!(
                (det.balanced_accuracy, det.auroc, det.calibrated_auroc),
                (1.0, 1.0, 1.0),
                "batch {batch}"
            );
            assert_eq!(det.per_quantile.len(), 10);
            assert!(det
                .per_quantile
                .iter()
                .all(|&(_, acc, n)| acc == 1.0 && n == 5));
            assert_eq!(
                (fuzz.balanced_accuracy, fuzz.auroc, fuzz.calibrated_auroc),
                (1.0, 1.0, 1.0)
            );
            // The next latent's word: never in this latent's activating windows, in all its silent ones.
            assert_eq!(
                (control.true_positive_rate, control.false_positive_rate),
                (0.0, 1.0)
            );
            assert_eq!((control.balanced_accuracy, control.auroc), (0.0, 0.0));
            let l = r.latent as usize;
            for j in &r.detection_judgements {
                let own_word_even =
                    (j.truth && l.is_multiple_of(2)) || (!j.truth && (l + 1).is_multiple_of(2));
                assert_eq!(j.p_base, Some(if own_word_even { 0.3 } else { 0.7 }));
            }
        }
        let summary = summarize("reader", &results);
        assert_eq!(summary.detection_balanced, 1.0);
        assert_eq!(summary.control_detection_balanced, 0.0);
        assert_eq!(summary.control_detection_calibrated_auroc, 0.0);
    }
}

/// Simulation through the whole method: the reading simulator predicts the latent's word, so its predictions
/// follow the true activations, and the control's (the next latent's word, found only in the silent windows)
/// run against them; with simulation alone, detection and fuzzing are not asked.
#[test]
fn simulation_follows_the_explanation_and_the_control_does_not() {
    let records = records(&mut ChaCha8Rng::seed_from_u64(3));
    let tmp = tempfile::tempdir().unwrap();
    let chat = CachedChat::new(&Reader, tmp.path().to_path_buf());
    let cfg = InterpConfig {
        scorers: vec![interp::run::Scorer::Simulation],
        simulation_windows: 6,
        ..Default::default()
    };
    let results = interpret(&records, 10_000, &token_text, &chat, &cfg, &|_, _, _| {});
    for r in &results {
        let (own, control) = (
            r.simulation.as_ref().unwrap(),
            r.control_simulation.as_ref().unwrap(),
        );
        assert_eq!(
            (own.windows, own.tokens, own.unparsed),
            (12, 12 * 32, 0),
            "{own:?}"
        );
        assert!(own.expected_values);
        // Predictions 9 exactly where the latent fires (activations 0.5–10), 0 elsewhere.
        assert!(own.correlation > 0.8, "{own:?}");
        assert!(control.correlation < 0.0, "{control:?}");
        assert!(r.detection.is_none() && r.fuzzing.is_none(), "not asked");
    }
    let summary = summarize("reader", &results);
    assert!(summary.simulation_correlation > 0.8 && summary.control_simulation_correlation < 0.0);
    assert!(summary.detection_balanced.is_nan());
}
