//! A coder's line of the summary tables: each score's mean over the latents that have it, its spread, and the
//! sanity floor (each latent's own explanation against a shuffled one, paired by latent); and the score
//! columns every table (CSV, HTML, terminal) shows, each reading one latent's score from its result.

use crate::run::LatentResult;
use crate::score::{mean, nan, score, sd, Judgement, Scores};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The coder's line of the summary table: means over latents with scores.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CoderSummary {
    pub coder: String,
    pub latents: usize,
    pub explained: usize,
    pub detection_accuracy: f64,
    pub detection_balanced: f64,
    pub detection_fpr: f64,
    pub fuzzing_accuracy: f64,
    pub fuzzing_balanced: f64,
    pub control_detection_balanced: f64,
    /// Threshold-free: AUROC of the yes probabilities (NaN for models that give none).
    pub detection_auroc: f64,
    pub fuzzing_auroc: f64,
    pub control_detection_auroc: f64,
    /// The same, calibrated against the content-free explanation (NaN without `calibrate`).
    pub detection_calibrated_auroc: f64,
    pub fuzzing_calibrated_auroc: f64,
    pub control_detection_calibrated_auroc: f64,
    pub unparsed_explanations: usize,
    pub unparsed_judgements: usize,
    /// (quantile, detection accuracy on its activating examples, examples), pooled over latents.
    pub detection_per_quantile: Vec<(u32, f64, usize)>,
    /// Simulation: mean over latents of the correlation of predicted with true activations, with the
    /// latent's explanation and with another's (NaN when simulation did not run).
    #[serde(default = "nan")]
    pub simulation_correlation: f64,
    #[serde(default = "nan")]
    pub control_simulation_correlation: f64,
    /// The standard deviation over latents of each score column (by its name; scores with at least two
    /// latents).
    #[serde(default)]
    pub sd: BTreeMap<String, f64>,
    /// The sanity floor per score that has a control ([`FLOOR_PAIRS`]).
    #[serde(default)]
    pub floor: Vec<FloorCheck>,
}

/// The sanity floor on one score: each latent's own explanation against another latent's (the shuffled
/// control), scored on the same examples, so the comparison is paired by latent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FloorCheck {
    /// The score column (its control is the same score with the shuffled explanation).
    pub score: String,
    /// Latents with both scores.
    pub latents: usize,
    /// Latents whose own explanation scores higher, and equal.
    pub wins: usize,
    pub ties: usize,
    /// The mean over latents of own − shuffled, and its standard error (sd / √latents).
    pub mean_gap: f64,
    pub gap_se: f64,
}

impl CoderSummary {
    /// A score's standard deviation over the coder's latents (NaN when under two latents have it).
    pub fn sd_of(&self, name: &str) -> f64 {
        self.sd.get(name).copied().unwrap_or(f64::NAN)
    }
}

impl FloorCheck {
    /// One line for tables' readers, e.g. "sst: detection_auroc with the latent's own explanation minus a
    /// shuffled one: +0.038 (SE 0.030), higher on 12 of 20 latents (0 equal)".
    pub fn describe(&self, coder: &str) -> String {
        format!(
            "{coder}: {} with the latent's own explanation minus a shuffled one: {:+.3} (SE {:.3}), higher on {} \
             of {} latents ({} equal)",
            self.score, self.mean_gap, self.gap_se, self.wins, self.latents, self.ties
        )
    }
}

/// A score column of the summary table: its name in summary.csv (the field's), its short label for the
/// terminal, its header in the HTML report, where a coder's mean is, and where one latent's score is (the
/// mean, its spread and the floor checks are taken over these).
pub struct ScoreColumn {
    pub name: &'static str,
    pub short: &'static str,
    pub header: &'static str,
    pub value: fn(&CoderSummary) -> f64,
    pub per_latent: fn(&LatentResult) -> Option<f64>,
}

/// The score columns, in the order every table (CSV, HTML, terminal) shows them.
pub const SCORE_COLUMNS: [ScoreColumn; 14] = [
    ScoreColumn {
        name: "detection_accuracy",
        short: "det.acc",
        header: "detection acc.",
        value: |s| s.detection_accuracy,
        per_latent: |r| r.detection.as_ref().map(|s| s.accuracy),
    },
    ScoreColumn {
        name: "detection_balanced",
        short: "det.bal",
        header: "detection bal. acc.",
        value: |s| s.detection_balanced,
        per_latent: |r| r.detection.as_ref().map(|s| s.balanced_accuracy),
    },
    ScoreColumn {
        name: "detection_fpr",
        short: "det.FPR",
        header: "detection FPR",
        value: |s| s.detection_fpr,
        per_latent: |r| r.detection.as_ref().map(|s| s.false_positive_rate),
    },
    ScoreColumn {
        name: "fuzzing_accuracy",
        short: "fuzz.acc",
        header: "fuzzing acc.",
        value: |s| s.fuzzing_accuracy,
        per_latent: |r| r.fuzzing.as_ref().map(|s| s.accuracy),
    },
    ScoreColumn {
        name: "fuzzing_balanced",
        short: "fuzz.bal",
        header: "fuzzing bal. acc.",
        value: |s| s.fuzzing_balanced,
        per_latent: |r| r.fuzzing.as_ref().map(|s| s.balanced_accuracy),
    },
    ScoreColumn {
        name: "control_detection_balanced",
        short: "shuf.bal",
        header: "detection bal. acc., shuffled explanations",
        value: |s| s.control_detection_balanced,
        per_latent: |r| r.control_detection.as_ref().map(|s| s.balanced_accuracy),
    },
    ScoreColumn {
        name: "detection_auroc",
        short: "det.AUC",
        header: "detection AUROC",
        value: |s| s.detection_auroc,
        per_latent: |r| r.detection.as_ref().map(|s| s.auroc),
    },
    ScoreColumn {
        name: "fuzzing_auroc",
        short: "fuzz.AUC",
        header: "fuzzing AUROC",
        value: |s| s.fuzzing_auroc,
        per_latent: |r| r.fuzzing.as_ref().map(|s| s.auroc),
    },
    ScoreColumn {
        name: "control_detection_auroc",
        short: "shuf.AUC",
        header: "detection AUROC, shuffled explanations",
        value: |s| s.control_detection_auroc,
        per_latent: |r| r.control_detection.as_ref().map(|s| s.auroc),
    },
    ScoreColumn {
        name: "detection_calibrated_auroc",
        short: "det.cAUC",
        header: "calibrated detection AUROC",
        value: |s| s.detection_calibrated_auroc,
        per_latent: |r| r.detection.as_ref().map(|s| s.calibrated_auroc),
    },
    ScoreColumn {
        name: "fuzzing_calibrated_auroc",
        short: "fuzz.cAUC",
        header: "calibrated fuzzing AUROC",
        value: |s| s.fuzzing_calibrated_auroc,
        per_latent: |r| r.fuzzing.as_ref().map(|s| s.calibrated_auroc),
    },
    ScoreColumn {
        name: "control_detection_calibrated_auroc",
        short: "shuf.cAUC",
        header: "calibrated detection AUROC, shuffled explanations",
        value: |s| s.control_detection_calibrated_auroc,
        per_latent: |r| r.control_detection.as_ref().map(|s| s.calibrated_auroc),
    },
    ScoreColumn {
        name: "simulation_correlation",
        short: "sim.r",
        header: "simulation correlation",
        value: |s| s.simulation_correlation,
        per_latent: |r| r.simulation.as_ref().map(|s| s.correlation),
    },
    ScoreColumn {
        name: "control_simulation_correlation",
        short: "shuf.sim.r",
        header: "simulation correlation, shuffled explanations",
        value: |s| s.control_simulation_correlation,
        per_latent: |r| r.control_simulation.as_ref().map(|s| s.correlation),
    },
];

pub fn summarize(coder: &str, results: &[LatentResult]) -> CoderSummary {
    let scored: Vec<&LatentResult> = results
        .iter()
        .filter(|r| r.detection.is_some() || r.fuzzing.is_some() || r.simulation.is_some())
        .collect();
    let values = |name: &str| -> Vec<f64> {
        let per_latent = column(name).per_latent;
        scored.iter().filter_map(|r| per_latent(r)).collect()
    };
    let m = |name: &str| mean(values(name).into_iter());
    let pooled: Vec<Judgement> = scored
        .iter()
        .flat_map(|r| r.detection_judgements.iter().cloned())
        .collect();
    let unparsed = scored
        .iter()
        .map(|r| {
            let u = |s: &Option<Scores>| s.as_ref().map_or(0, |s| s.unparsed);
            u(&r.detection) + u(&r.fuzzing) + u(&r.control_detection)
        })
        .sum();
    CoderSummary {
        coder: coder.to_string(),
        latents: results.len(),
        explained: scored.len(),
        detection_accuracy: m("detection_accuracy"),
        detection_balanced: m("detection_balanced"),
        detection_fpr: m("detection_fpr"),
        fuzzing_accuracy: m("fuzzing_accuracy"),
        fuzzing_balanced: m("fuzzing_balanced"),
        detection_auroc: m("detection_auroc"),
        fuzzing_auroc: m("fuzzing_auroc"),
        control_detection_auroc: m("control_detection_auroc"),
        detection_calibrated_auroc: m("detection_calibrated_auroc"),
        fuzzing_calibrated_auroc: m("fuzzing_calibrated_auroc"),
        control_detection_calibrated_auroc: m("control_detection_calibrated_auroc"),
        control_detection_balanced: m("control_detection_balanced"),
        unparsed_explanations: results
            .iter()
            .filter(|r| r.explainer_answer.is_some() && r.explanation.is_none())
            .count(),
        unparsed_judgements: unparsed,
        detection_per_quantile: score(&pooled).per_quantile,
        simulation_correlation: m("simulation_correlation"),
        control_simulation_correlation: m("control_simulation_correlation"),
        sd: SCORE_COLUMNS
            .iter()
            .map(|c| (c.name.to_string(), sd(values(c.name).into_iter())))
            .filter(|(_, v)| v.is_finite())
            .collect(),
        floor: FLOOR_PAIRS
            .iter()
            .filter_map(|&(own, shuffled)| floor_check(&scored, own, shuffled))
            .collect(),
    }
}

/// The score column named `name` (a name in [`SCORE_COLUMNS`]).
pub fn column(name: &str) -> &'static ScoreColumn {
    SCORE_COLUMNS
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no score column {name}"))
}

/// The scores with a shuffled-explanation control: (own, control) column names.
pub const FLOOR_PAIRS: [(&str, &str); 4] = [
    ("detection_auroc", "control_detection_auroc"),
    (
        "detection_calibrated_auroc",
        "control_detection_calibrated_auroc",
    ),
    ("detection_balanced", "control_detection_balanced"),
    ("simulation_correlation", "control_simulation_correlation"),
];

/// Own against shuffled explanation, paired by latent, over the latents with both scores (None if none has).
fn floor_check(scored: &[&LatentResult], own: &str, shuffled: &str) -> Option<FloorCheck> {
    let (own_of, shuffled_of) = (column(own).per_latent, column(shuffled).per_latent);
    let gaps: Vec<f64> = scored
        .iter()
        .filter_map(|r| Some(own_of(r)? - shuffled_of(r)?))
        .filter(|g| g.is_finite())
        .collect();
    (!gaps.is_empty()).then(|| FloorCheck {
        score: own.to_string(),
        latents: gaps.len(),
        wins: gaps.iter().filter(|&&g| g > 0.0).count(),
        ties: gaps.iter().filter(|&&g| g == 0.0).count(),
        mean_gap: mean(gaps.iter().copied()),
        gap_se: sd(gaps.iter().copied()) / (gaps.len() as f64).sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A latent scored by detection with the given AUROC, and by its control with `control`.
    fn latent(auroc: f64, control: f64) -> LatentResult {
        let scores = |auroc| Scores {
            n: 20,
            auroc,
            calibrated_auroc: f64::NAN,
            ..Default::default()
        };
        LatentResult {
            latent: 0,
            frequency: 0.01,
            firings: 100,
            explanation: Some("e".into()),
            explainer_answer: None,
            detection: Some(scores(auroc)),
            fuzzing: None,
            control_detection: Some(scores(control)),
            detection_judgements: vec![],
            fuzzing_judgements: vec![],
            simulation: None,
            control_simulation: None,
            explain_examples: vec![],
            non_activating_examples: vec![],
            note: None,
        }
    }

    #[test]
    fn the_floor_is_paired_by_latent_and_the_spread_is_over_latents() {
        let results = [latent(0.7, 0.5), latent(0.6, 0.6), latent(0.5, 0.6)];
        let s = summarize("c", &results);
        assert!((s.detection_auroc - 0.6).abs() < 1e-12);
        // AUROCs 0.7, 0.6, 0.5: sd 0.1.
        assert!((s.sd["detection_auroc"] - 0.1).abs() < 1e-12);
        assert!(
            !s.sd.contains_key("detection_calibrated_auroc"),
            "no finite values"
        );
        // Gaps +0.2, 0, −0.1: mean 1/30, one higher, one equal; SE = sd(gaps) / √3.
        let fl = &s.floor[0];
        assert_eq!(
            (fl.score.as_str(), fl.latents, fl.wins, fl.ties),
            ("detection_auroc", 3, 1, 1)
        );
        assert!((fl.mean_gap - 0.1 / 3.0).abs() < 1e-12);
        let sd =
            ((0.2f64 - 0.1 / 3.0).powi(2) + (0.1f64 / 3.0).powi(2) + (0.1f64 + 0.1 / 3.0).powi(2))
                / 2.0;
        assert!((fl.gap_se - sd.sqrt() / 3f64.sqrt()).abs() < 1e-12);
        // The other pairs have no finite values here (balanced accuracy is 0.0 on both sides: all ties).
        assert!(s
            .floor
            .iter()
            .all(|f| f.score != "detection_calibrated_auroc"));
    }
}
