//! Scores from the scorer's yes/no judgements: accuracy, balanced accuracy (the mean of the true-positive and
//! true-negative rates, so a scorer that always says yes gets 0.5), false-positive rate, and accuracy per
//! activation quantile (the paper's Figure 2). Judgements whose answer did not parse are counted apart and
//! left out of the rates.

use serde::{Deserialize, Serialize};

/// One example's verdict: what it is (`truth`), what the scorer said (None: unparsed answer), its probability
/// of a yes where the model exposes it, and for activating examples the quantile of their activation.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Judgement {
    pub truth: bool,
    pub predicted: Option<bool>,
    pub quantile: Option<u32>,
    #[serde(default)]
    pub p_yes: Option<f64>,
    /// The yes probability for the same example under a content-free explanation ("N/A"): what the scorer
    /// says of the example alone, subtracted (in log-odds) for the calibrated AUROC.
    #[serde(default)]
    pub p_base: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Judgements with a parsed answer.
    pub n: usize,
    pub unparsed: usize,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub true_positive_rate: f64,
    pub false_positive_rate: f64,
    /// (quantile, accuracy, examples) for each quantile with examples.
    pub per_quantile: Vec<(u32, f64, usize)>,
    /// Area under the ROC curve of the yes probabilities (the chance that a true example gets a higher one
    /// than a false example; 0.5 = chance, threshold-free); NaN when the model gives no probabilities.
    #[serde(default)]
    pub auroc: f64,
    /// The same for logit(p_yes) − logit(p_base), which cancels the scorer's bias for or against an example
    /// whatever the explanation ("contextual calibration", Zhao et al. 2021): what the explanation itself adds.
    /// NaN without baseline probabilities.
    #[serde(default = "nan")]
    pub calibrated_auroc: f64,
}

/// NaN, the serde default of scores absent from older files.
pub(crate) fn nan() -> f64 {
    f64::NAN
}

fn rate(hits: usize, of: usize) -> f64 {
    if of == 0 {
        f64::NAN
    } else {
        hits as f64 / of as f64
    }
}

pub fn score(judgements: &[Judgement]) -> Scores {
    let parsed: Vec<(&Judgement, bool)> = judgements
        .iter()
        .filter_map(|j| j.predicted.map(|p| (j, p)))
        .collect();
    let count = |truth: bool, predicted: bool| {
        parsed
            .iter()
            .filter(|(j, p)| j.truth == truth && *p == predicted)
            .count()
    };
    let (tp, fn_, tn, fp) = (
        count(true, true),
        count(true, false),
        count(false, false),
        count(false, true),
    );
    let (tpr, tnr) = (rate(tp, tp + fn_), rate(tn, tn + fp));
    let balanced = match (tpr.is_nan(), tnr.is_nan()) {
        (false, false) => (tpr + tnr) / 2.0,
        (false, true) => tpr,
        (true, false) => tnr,
        (true, true) => f64::NAN,
    };
    let mut quantiles: Vec<u32> = parsed.iter().filter_map(|(j, _)| j.quantile).collect();
    quantiles.sort();
    quantiles.dedup();
    let per_quantile = quantiles
        .into_iter()
        .map(|q| {
            let of: Vec<_> = parsed
                .iter()
                .filter(|(j, _)| j.quantile == Some(q))
                .collect();
            let right = of.iter().filter(|(j, p)| j.truth == *p).count();
            (q, rate(right, of.len()), of.len())
        })
        .collect();
    let ranked = |key: &dyn Fn(&Judgement) -> Option<f64>| -> f64 {
        let of = |truth: bool| -> Option<Vec<f64>> {
            parsed
                .iter()
                .filter(|(j, _)| j.truth == truth)
                .map(|(j, _)| key(j))
                .collect()
        };
        match (of(true), of(false)) {
            (Some(p), Some(q)) => auroc(&p, &q),
            _ => f64::NAN,
        }
    };
    let log_odds = |p: f64| {
        let p = p.clamp(1e-12, 1.0 - 1e-12);
        (p / (1.0 - p)).ln()
    };
    let auroc = ranked(&|j| j.p_yes);
    let calibrated_auroc = ranked(&|j| Some(log_odds(j.p_yes?) - log_odds(j.p_base?)));
    Scores {
        auroc,
        calibrated_auroc,
        n: parsed.len(),
        unparsed: judgements.len() - parsed.len(),
        accuracy: rate(tp + tn, parsed.len()),
        balanced_accuracy: balanced,
        true_positive_rate: tpr,
        false_positive_rate: rate(fp, fp + tn),
        per_quantile,
    }
}

/// The chance that a positive scores above a negative (ties count half); NaN when either side is empty.
pub fn auroc(positives: &[f64], negatives: &[f64]) -> f64 {
    if positives.is_empty() || negatives.is_empty() {
        return f64::NAN;
    }
    let wins: f64 = positives
        .iter()
        .flat_map(|a| {
            negatives.iter().map(move |b| match a.partial_cmp(b) {
                Some(std::cmp::Ordering::Greater) => 1.0,
                Some(std::cmp::Ordering::Equal) => 0.5,
                _ => 0.0,
            })
        })
        .sum();
    wins / (positives.len() * negatives.len()) as f64
}

/// The mean of the finite values (NaN when there are none).
pub fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The sample standard deviation (n − 1) of the finite values: the spread over latents of a score whose
/// mean [`mean`] gives (NaN with fewer than two).
pub fn sd(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return f64::NAN;
    }
    let m = mean(v.iter().copied());
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_is_the_sample_standard_deviation_of_the_finite_values() {
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, squared deviations sum to 32, so sd = sqrt(32 / 7).
        let v = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0, f64::NAN];
        assert!((sd(v.into_iter()) - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert!(
            sd([1.0, f64::NAN].into_iter()).is_nan(),
            "one value has no spread"
        );
    }

    fn j(truth: bool, predicted: Option<bool>, quantile: Option<u32>) -> Judgement {
        Judgement {
            truth,
            predicted,
            quantile,
            p_yes: None,
            p_base: None,
        }
    }

    #[test]
    fn rates_on_a_worked_example() {
        // 4 activating (q1: right, wrong; q2: right, right), 4 silent (3 right, 1 false positive), 1 unparsed.
        let js = [
            j(true, Some(true), Some(1)),
            j(true, Some(false), Some(1)),
            j(true, Some(true), Some(2)),
            j(true, Some(true), Some(2)),
            j(false, Some(false), None),
            j(false, Some(false), None),
            j(false, Some(false), None),
            j(false, Some(true), None),
            j(true, None, Some(2)),
        ];
        let s = score(&js);
        assert_eq!((s.n, s.unparsed), (8, 1));
        assert_eq!(s.accuracy, 6.0 / 8.0);
        assert_eq!(s.true_positive_rate, 0.75);
        assert_eq!(s.false_positive_rate, 0.25);
        assert_eq!(s.balanced_accuracy, 0.75);
        assert_eq!(s.per_quantile, vec![(1, 0.5, 2), (2, 1.0, 2)]);
        assert!(s.auroc.is_nan(), "no probabilities, no AUROC");
    }

    #[test]
    fn auroc_ranks_true_above_false() {
        let with_p = |truth, p| Judgement {
            truth,
            predicted: Some(p > 0.5),
            quantile: None,
            p_yes: Some(p),
            p_base: None,
        };
        // Positives 0.9, 0.6, 0.4 against negatives 0.5, 0.4, 0.1: 3 + 3 + 1 wins and one tie (0.4, 0.4) → 7.5 / 9.
        let js = [
            with_p(true, 0.9),
            with_p(true, 0.6),
            with_p(true, 0.4),
            with_p(false, 0.5),
            with_p(false, 0.4),
            with_p(false, 0.1),
        ];
        assert!((score(&js).auroc - 7.5 / 9.0).abs() < 1e-12);
        // Always yes, whatever the example: chance, however confident.
        let flat: Vec<Judgement> = (0..6).map(|i| with_p(i % 2 == 0, 0.8)).collect();
        assert_eq!(score(&flat).auroc, 0.5);
    }

    #[test]
    fn calibration_cancels_the_bias_of_each_example() {
        let with = |truth, p_yes, p_base| Judgement {
            truth,
            predicted: Some(p_yes > 0.5),
            quantile: None,
            p_yes: Some(p_yes),
            p_base: Some(p_base),
        };
        // The scorer likes the silent examples more whatever the explanation (raw AUROC 0), but the explanation
        // raises every activating example above its baseline and lowers every silent one below its baseline.
        let js = [
            with(true, 0.6, 0.5),
            with(true, 0.3, 0.2),
            with(false, 0.7, 0.9),
            with(false, 0.8, 0.95),
        ];
        let s = score(&js);
        assert_eq!(s.auroc, 0.0);
        assert_eq!(s.calibrated_auroc, 1.0);
        // Equal shifts for all: no information in the explanation, chance.
        let flat = [with(true, 0.6, 0.5), with(false, 0.6, 0.5)];
        assert_eq!(score(&flat).calibrated_auroc, 0.5);
        // A missing baseline leaves it undefined.
        let mut partial = js.clone();
        partial[0].p_base = None;
        assert!(score(&partial).calibrated_auroc.is_nan());
    }

    #[test]
    fn always_yes_is_chance_when_balanced() {
        let js: Vec<Judgement> = (0..10).map(|i| j(i % 2 == 0, Some(true), None)).collect();
        let s = score(&js);
        assert_eq!(
            (s.accuracy, s.balanced_accuracy, s.false_positive_rate),
            (0.5, 0.5, 1.0)
        );
    }
}
