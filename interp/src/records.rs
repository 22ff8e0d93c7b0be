//! Latent records: what a coder's latents do on a token set, collected in one streaming pass with bounded
//! memory. The caller feeds whole sequences (token ids with each token's top-k latent activations); per
//! tracked latent we keep a uniform reservoir of its firings, each with the 32-token window around it and
//! the latent's activation on every token of the window, and a reservoir of windows where it is silent. Every
//! latent's firing count is kept for the density histogram.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Clone, Debug)]
pub struct RecordConfig {
    /// Tokens per window.
    pub window: usize,
    /// Firings kept per latent (a uniform sample of all of them).
    pub activating: usize,
    /// Silent windows kept per latent.
    pub non_activating: usize,
    pub seed: u64,
}

impl Default for RecordConfig {
    fn default() -> RecordConfig {
        RecordConfig {
            window: 32,
            activating: 500,
            non_activating: 200,
            seed: 0,
        }
    }
}

/// A window of consecutive tokens of one sequence, with one latent's activation on each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub seq: u64,
    /// Position of the first token in its sequence.
    pub start: u32,
    pub tokens: Vec<u32>,
    pub acts: Vec<f32>,
    /// The activation of the firing this window was sampled for (0 for silent windows).
    pub act: f32,
}

impl Window {
    pub fn max_act(&self) -> f32 {
        self.acts.iter().cloned().fold(0.0, f32::max)
    }
}

/// A uniform sample of size ≤ `cap` from a stream (Algorithm R).
#[derive(Clone, Debug, Default)]
struct Reservoir {
    items: Vec<Window>,
    seen: u64,
}

impl Reservoir {
    fn offer(&mut self, cap: usize, rng: &mut ChaCha8Rng, make: impl FnOnce() -> Window) {
        self.seen += 1;
        if self.items.len() < cap {
            self.items.push(make());
        } else {
            let j = rng.random_range(0..self.seen);
            if (j as usize) < cap {
                self.items[j as usize] = make();
            }
        }
    }
}

/// What was recorded for one latent.
#[derive(Clone, Debug)]
pub struct LatentRecord {
    pub latent: u32,
    /// Tokens it fired on.
    pub firings: u64,
    /// Sampled firings, each with its window.
    pub activating: Vec<Window>,
    pub non_activating: Vec<Window>,
}

pub struct Recorder {
    cfg: RecordConfig,
    slot: HashMap<u32, usize>,
    tracked: Vec<u32>,
    activating: Vec<Reservoir>,
    silent: Vec<Reservoir>,
    /// Per latent (all of them): tokens it fired on.
    pub fired: Vec<u64>,
    pub tokens: u64,
    rng: ChaCha8Rng,
}

impl Recorder {
    /// Records examples for `tracked` latents among `num_latents`.
    pub fn new(num_latents: usize, tracked: &[u32], cfg: RecordConfig) -> Recorder {
        let n = tracked.len();
        Recorder {
            slot: tracked.iter().enumerate().map(|(i, &l)| (l, i)).collect(),
            tracked: tracked.to_vec(),
            activating: vec![Reservoir::default(); n],
            silent: vec![Reservoir::default(); n],
            fired: vec![0; num_latents],
            tokens: 0,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
        }
    }

    /// One run of consecutive tokens of sequence `seq` starting at position `first`: `acts`, `idx` are
    /// `[tokens × k]` (the coder's top-k per token; zero activations do not count as firing).
    pub fn add_sequence(
        &mut self,
        seq: u64,
        first: u32,
        tokens: &[u32],
        acts: &[f32],
        idx: &[u32],
    ) {
        let n = tokens.len();
        if n == 0 {
            return;
        }
        let k = acts.len() / n;
        self.tokens += n as u64;
        // Each tracked latent's activation on every token of the run, for the ones that fired in it.
        let mut dense: HashMap<usize, Vec<f32>> = HashMap::new();
        let mut events: Vec<(usize, usize, f32)> = Vec::new();
        for t in 0..n {
            for j in 0..k {
                let (a, l) = (acts[t * k + j], idx[t * k + j]);
                if a <= 0.0 {
                    continue;
                }
                self.fired[l as usize] += 1;
                if let Some(&s) = self.slot.get(&l) {
                    dense.entry(s).or_insert_with(|| vec![0.0; n])[t] = a;
                    events.push((s, t, a));
                }
            }
        }
        let w = self.cfg.window.min(n);
        let window = |acts: &[f32], start: usize, act: f32| Window {
            seq,
            start: first + start as u32,
            tokens: tokens[start..start + w].to_vec(),
            acts: acts[start..start + w].to_vec(),
            act,
        };
        for (s, t, a) in events {
            // The firing near the middle of its window, the window inside the run.
            let start = t.saturating_sub(w / 2 - 1).min(n - w);
            let cap = self.cfg.activating;
            self.activating[s].offer(cap, &mut self.rng, || window(&dense[&s], start, a));
        }
        // Silent windows: the run cut into whole windows, each offered to every latent silent in it.
        let zeros = vec![0.0f32; n];
        for start in (0..=n - w).step_by(w) {
            for s in 0..self.tracked.len() {
                let acts = dense.get(&s).unwrap_or(&zeros);
                if acts[start..start + w].iter().all(|&a| a == 0.0) {
                    let cap = self.cfg.non_activating;
                    self.silent[s].offer(cap, &mut self.rng, || window(acts, start, 0.0));
                }
            }
        }
    }

    pub fn finish(self) -> (Vec<LatentRecord>, Vec<u64>, u64) {
        let records = self
            .tracked
            .iter()
            .zip(self.activating)
            .zip(self.silent)
            .map(|((&latent, a), s)| LatentRecord {
                latent,
                firings: a.seen,
                activating: a.items,
                non_activating: s.items,
            })
            .collect();
        (records, self.fired, self.tokens)
    }
}

/// An activating window with the quantile (1 = weakest tenth of the sampled firings, `quantiles` = strongest)
/// its firing falls in.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Example {
    pub window: Window,
    pub quantile: u32,
}

/// Disjoint example sets for one latent: for the explainer, for scoring, and silent windows.
#[derive(Clone, Debug)]
pub struct ExampleSets {
    pub explain: Vec<Example>,
    pub score: Vec<Example>,
    pub non_activating: Vec<Window>,
}

/// Splits a record's firings into `quantiles` equal-count bins by activation and draws, without repeating a
/// window, `explain_per_q` examples per bin for the explainer and `score_per_q` others for scoring; plus
/// `non_activating` silent windows.
pub fn split_examples(
    record: &LatentRecord,
    quantiles: u32,
    explain_per_q: usize,
    score_per_q: usize,
    non_activating: usize,
    rng: &mut ChaCha8Rng,
) -> ExampleSets {
    let mut sorted: Vec<&Window> = record.activating.iter().collect();
    sorted.sort_by(|a, b| {
        a.act
            .total_cmp(&b.act)
            .then((a.seq, a.start).cmp(&(b.seq, b.start)))
    });
    let n = sorted.len();
    let (mut explain, mut score) = (Vec::new(), Vec::new());
    let mut used = std::collections::HashSet::new();
    for q in 0..quantiles as usize {
        let (lo, hi) = (q * n / quantiles as usize, (q + 1) * n / quantiles as usize);
        let mut bin: Vec<&Window> = sorted[lo..hi].to_vec();
        shuffle(&mut bin, rng);
        let mut distinct = bin.into_iter().filter(|w| used.insert((w.seq, w.start)));
        let quantile = q as u32 + 1;
        for (out, count) in [(&mut explain, explain_per_q), (&mut score, score_per_q)] {
            for w in distinct.by_ref().take(count) {
                out.push(Example {
                    window: w.clone(),
                    quantile,
                });
            }
        }
    }
    let mut silent: Vec<Window> = record.non_activating.clone();
    shuffle(&mut silent, rng);
    silent.truncate(non_activating);
    ExampleSets {
        explain,
        score,
        non_activating: silent,
    }
}

/// Fisher–Yates, with our own generator so results depend only on the seed.
pub fn shuffle<T>(v: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sequence where latent 7 fires with activation (position + 1) on every 3rd token and latent 9 never.
    fn feed(rec: &mut Recorder, seq: u64, len: usize) {
        let tokens: Vec<u32> = (0..len as u32).map(|t| 100 + t).collect();
        let (mut acts, mut idx) = (vec![0.0; len * 2], vec![0u32; len * 2]);
        for t in 0..len {
            if t % 3 == 0 {
                acts[t * 2] = t as f32 + 1.0;
                idx[t * 2] = 7;
            }
            idx[t * 2 + 1] = 3; // zero activation: not a firing
        }
        rec.add_sequence(seq, 0, &tokens, &acts, &idx);
    }

    #[test]
    fn windows_hold_the_firing_and_the_latents_activations() {
        let cfg = RecordConfig {
            activating: 1000,
            ..Default::default()
        };
        let mut rec = Recorder::new(16, &[7, 9], cfg);
        for s in 0..4 {
            feed(&mut rec, s, 100);
        }
        let (records, fired, tokens) = rec.finish();
        assert_eq!(tokens, 400);
        assert_eq!(fired[7], 4 * 34);
        assert_eq!(fired[3], 0);
        let r7 = &records[0];
        assert_eq!((r7.latent, r7.firings, r7.activating.len()), (7, 136, 136));
        for w in &r7.activating {
            assert_eq!(w.tokens.len(), 32);
            assert!(w.start + 32 <= 100);
            let at = w.act as u32 - 1; // the firing's position
            assert!((w.start..w.start + 32).contains(&at));
            for (i, (&t, &a)) in w.tokens.iter().zip(&w.acts).enumerate() {
                let pos = w.start + i as u32;
                assert_eq!(t, 100 + pos);
                assert_eq!(
                    a,
                    if pos.is_multiple_of(3) {
                        pos as f32 + 1.0
                    } else {
                        0.0
                    }
                );
            }
        }
        // Latent 7 fires in every window; latent 9 is silent in all 3 whole windows of each sequence.
        assert!(r7.non_activating.is_empty());
        let r9 = &records[1];
        assert_eq!((r9.firings, r9.non_activating.len()), (0, 12));
        assert!(r9
            .non_activating
            .iter()
            .all(|w| w.acts.iter().all(|&a| a == 0.0)));
    }

    #[test]
    fn reservoirs_stay_bounded_and_quantiles_are_ordered() {
        let cfg = RecordConfig {
            activating: 50,
            non_activating: 5,
            ..Default::default()
        };
        let mut rec = Recorder::new(16, &[7, 9], cfg);
        for s in 0..40 {
            feed(&mut rec, s, 256);
        }
        let (records, _, _) = rec.finish();
        assert_eq!(records[0].activating.len(), 50);
        assert_eq!(records[0].firings, 40 * 86);
        assert_eq!(records[1].non_activating.len(), 5);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let sets = split_examples(&records[0], 10, 2, 3, 0, &mut rng);
        assert_eq!((sets.explain.len(), sets.score.len()), (20, 30));
        let all: Vec<&Example> = sets.explain.iter().chain(&sets.score).collect();
        let mut keys: Vec<(u64, u32)> =
            all.iter().map(|e| (e.window.seq, e.window.start)).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 50, "no window is used twice");
        // Every example of quantile q is at least as strong as every example of quantile q − 1.
        for a in &all {
            for b in &all {
                if a.quantile < b.quantile {
                    assert!(a.window.act <= b.window.act);
                }
            }
        }
    }
}
