//! The evaluation's results: one row per coder, printed as a table and written as eval.json and eval.csv.

use crate::absorption::{AbsorptionResult, AbsorptionScores};
use crate::activations::ActivationStats;
use crate::patched::PatchedLosses;
use crate::probing::{ProbingResult, ProbingScores, KS};
use anyhow::Result;
use cache_format::fsutil::write_atomic;
use cache_format::Side;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use trainer::checkpoint::{Imported, LoadedCoder};
use trainer::coder::{Activation, Kind};
use trainer::regression::LinearFit;

#[derive(Serialize, Deserialize)]
pub struct CoderEval {
    pub name: String,
    pub kind: Kind,
    pub sae_on: Option<Side>,
    pub k: usize,
    pub num_latents: usize,
    pub fvu: f64,
    pub variance_explained: f64,
    pub l0: f64,
    pub dead_pct: f64,
    pub dense_pct: f64,
    /// Latents per log10 firing frequency bin: key = floor(log10 f) ("dead" for never).
    pub density_histogram: BTreeMap<String, u64>,
    /// Latents per log10 bin of their mean activation over all held-out tokens ("dead" for never).
    #[serde(default)]
    pub mean_activation_histogram: BTreeMap<String, u64>,
    pub ce_patched: f64,
    pub ce_increase_pct: f64,
    pub kl: f64,
    /// Where an imported coder came from (`sparsecoder import`); absent for coders we trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<Imported>,
    /// JumpReLU for an imported coder that uses it (then `k` is `num_latents`, a bound that never binds).
    #[serde(default, skip_serializing_if = "Activation::is_topk")]
    pub activation: Activation,
    /// Sparse probing's test accuracies (with `--probing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparse_probing: Option<ProbingScores>,
    /// Feature absorption per letter and its means (with `--absorption`; the words are in absorption.json).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absorption: Option<AbsorptionScores>,
}

impl CoderEval {
    /// Coder `j` of the losses, with its activation statistics.
    pub fn new(
        c: &LoadedCoder,
        a: &ActivationStats,
        losses: &PatchedLosses,
        j: usize,
    ) -> CoderEval {
        let ce_clean = losses.ce_clean();
        let ce_patched = losses.ce_patched[j] / losses.count as f64;
        CoderEval {
            name: c.name.clone(),
            kind: c.coder.cfg.kind,
            sae_on: c.meta.sae_on,
            k: c.coder.cfg.k,
            num_latents: c.coder.cfg.num_latents,
            fvu: a.fvu,
            variance_explained: 1.0 - a.fvu,
            l0: a.l0,
            dead_pct: a.dead_pct(),
            dense_pct: a.dense_pct(),
            density_histogram: a.density_histogram(),
            mean_activation_histogram: a.mean_activation_histogram(),
            ce_patched,
            ce_increase_pct: 100.0 * (ce_patched - ce_clean) / ce_clean,
            kl: losses.kl[j] / losses.positions as f64,
            imported: c.meta.imported.clone(),
            activation: c.meta.activation,
            sparse_probing: None,
            absorption: None,
        }
    }
}

/// The linear baseline: the ridge map mlp_in → mlp_out, on the same held-out data as the coders.
#[derive(Serialize, Deserialize)]
pub struct LinearEval {
    /// The ridge weight chosen on the validation shard (relative to the mean diagonal of XᵀX).
    pub lambda: f64,
    /// That choice's FVU on the validation shard (a fit without it).
    pub validation_fvu: f64,
    /// Training rows of the final fit.
    pub fit_rows: u64,
    pub fvu: f64,
    pub variance_explained: f64,
    pub ce_patched: f64,
    pub ce_increase_pct: f64,
    pub kl: f64,
}

impl LinearEval {
    pub fn new(fit: &LinearFit, fvu: f64, losses: &PatchedLosses) -> LinearEval {
        let (ce, kl) = losses.linear.expect("the linear baseline was patched in");
        let (ce_clean, ce_patched) = (losses.ce_clean(), ce / losses.count as f64);
        LinearEval {
            lambda: fit.lambda,
            validation_fvu: fit.validation_fvu,
            fit_rows: fit.rows,
            fvu,
            variance_explained: 1.0 - fvu,
            ce_patched,
            ce_increase_pct: 100.0 * (ce_patched - ce_clean) / ce_clean,
            kl: kl / losses.positions as f64,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct Report {
    pub cache: String,
    pub layer: u32,
    pub held_out_rows: u64,
    pub ce_tokens: u64,
    pub ce_clean: f64,
    pub ce_zero_ablated: f64,
    pub coders: Vec<CoderEval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linear_baseline: Option<LinearEval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probing: Option<ProbingSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absorption: Option<AbsorptionSummary>,
}

/// What absorption ran on: the first-letter words and each side's letter probes (eval.json).
#[derive(Serialize, Deserialize)]
pub struct AbsorptionSummary {
    pub seed: u64,
    /// Alphabetic tokens of the tokenizer, and how many of them made prompts.
    pub vocabulary: usize,
    pub words_used: usize,
    pub train_words: usize,
    pub test_words: usize,
    pub min_probe_f1: f64,
    pub min_letters: usize,
    /// Per side a coder reads: each letter probe's test F1.
    pub probe_f1: BTreeMap<String, Vec<f64>>,
}

impl AbsorptionSummary {
    pub fn new(a: &AbsorptionResult) -> AbsorptionSummary {
        AbsorptionSummary {
            seed: a.seed,
            vocabulary: a.dataset.vocabulary,
            words_used: a.dataset.used,
            train_words: a.dataset.train.len(),
            test_words: a.dataset.test.len(),
            min_probe_f1: a.min_probe_f1,
            min_letters: a.min_letters,
            probe_f1: a
                .probes
                .iter()
                .map(|p| (p.side.name().to_string(), p.f1.clone()))
                .collect(),
        }
    }

    /// The absorption table: per coder, letters counted and the means over them.
    fn print(&self, coders: &[CoderEval]) {
        println!(
            "absorption: {} of {} alphabetic tokens ({} train, {} test); letters count where the probe's F1 > {} \
             (at least {} needed)",
            self.words_used, self.vocabulary, self.train_words, self.test_words, self.min_probe_f1, self.min_letters
        );
        for (side, f1) in &self.probe_f1 {
            let above = f1.iter().filter(|&&f| f > self.min_probe_f1).count();
            let mean = f1.iter().sum::<f64>() / f1.len().max(1) as f64;
            println!(
                "  letter probes on {side}: mean F1 {mean:.3}, {above} letters above {}",
                self.min_probe_f1
            );
        }
        println!(
            "{:<26} {:>7} {:>8} {:>7} {:>10} {:>9} {:>6} {:>7} {:>7}",
            "coder",
            "side",
            "latent",
            "letters",
            "absorption",
            "full abs.",
            "main",
            "F1 k=1",
            "F1 k=10"
        );
        let opt =
            |v: Option<f64>, w: usize| v.map_or(format!("{:>w$}", "-"), |x| format!("{x:>w$.3}"));
        for c in coders {
            let Some(a) = &c.absorption else { continue };
            let f1k = |k: usize| opt(a.mean_k_sparse_f1.get(k - 1).copied(), 7);
            println!(
                "{:<26} {:>7} {:>8} {:>7} {} {} {} {} {}",
                a.name,
                a.side.name(),
                format!("{:?}", a.direction).to_lowercase(),
                a.letters_counted,
                opt(a.mean_absorption_fraction, 10),
                opt(a.mean_full_absorption, 9),
                opt(a.mean_main_latents, 6),
                f1k(1),
                f1k(crate::absorption::MAX_K)
            );
        }
        if coders.iter().any(|c| {
            c.absorption
                .as_ref()
                .is_some_and(|a| a.mean_absorption_fraction.is_none())
        }) {
            println!(
                "  -: fewer letters than the minimum count, so no absorption mean (as SAEBench)"
            );
        }
    }
}

/// What sparse probing ran on, and its baselines (eval.json; the examples themselves are in probing.json).
#[derive(Serialize, Deserialize)]
pub struct ProbingSummary {
    pub ctx_len: usize,
    pub seed: u64,
    pub tasks: Vec<ProbingTaskSummary>,
    /// The raw activations of each side.
    pub baselines: Vec<ProbingScores>,
}

#[derive(Serialize, Deserialize)]
pub struct ProbingTaskSummary {
    pub name: String,
    pub classes: Vec<String>,
    /// Examples of each class the task had.
    pub available: Vec<usize>,
    pub train_per_class: usize,
    pub test_per_class: usize,
    /// The binary subtasks (one per class; one for a two-class task), each balanced: chance is 0.5.
    pub subtasks: usize,
}

impl ProbingSummary {
    pub fn new(p: &ProbingResult) -> ProbingSummary {
        ProbingSummary {
            ctx_len: p.ctx_len,
            seed: p.seed,
            tasks: p
                .tasks
                .iter()
                .map(|t| ProbingTaskSummary {
                    name: t.name.clone(),
                    classes: t.classes.clone(),
                    available: t.available.clone(),
                    train_per_class: t.train_per_class,
                    test_per_class: t.test_per_class,
                    subtasks: t.subtasks.len(),
                })
                .collect(),
            baselines: p.baselines.iter().map(ProbingScores::summary).collect(),
        }
    }

    /// The sparse-probing table: mean test accuracy over tasks per k, and each task's at the largest k.
    fn print(&self, coders: &[CoderEval]) {
        let tasks: Vec<&str> = self.tasks.iter().map(|t| t.name.as_str()).collect();
        let kmax = KS[KS.len() - 1];
        println!(
            "sparse probing: {} task(s) ({}), balanced binary subtasks (chance 0.5), {} tokens per example",
            tasks.len(),
            self.tasks
                .iter()
                .map(|t| format!("{}: {} classes, {}+{} per class", t.name, t.classes.len(), t.train_per_class, t.test_per_class))
                .collect::<Vec<_>>()
                .join("; "),
            self.ctx_len
        );
        let mut header = format!("{:<26} {:>7}", "features", "side");
        for k in KS {
            header += &format!(" {:>6}", format!("k={k}"));
        }
        header += &format!(" {:>6}", "all");
        for t in &tasks {
            header += &format!(" {:>16}", format!("{t}@{kmax}"));
        }
        println!("{header}");
        let rows = self
            .baselines
            .iter()
            .chain(coders.iter().filter_map(|c| c.sparse_probing.as_ref()));
        for s in rows {
            let mut line = format!("{:<26} {:>7}", s.name, s.side.name());
            for a in &s.accuracy {
                line += &format!(" {a:>6.3}");
            }
            line += &match s.all_features {
                Some(a) => format!(" {a:>6.3}"),
                None => format!(" {:>6}", "-"),
            };
            for t in &tasks {
                line += &format!(" {:>16.3}", s.tasks[*t][KS.len() - 1]);
            }
            println!("{line}");
        }
    }
}

/// Sparse probing's mean accuracy at the `i`-th k, or empty.
fn probe(c: &CoderEval, i: usize) -> String {
    c.sparse_probing
        .as_ref()
        .map_or(String::new(), |p| p.accuracy[i].to_string())
}

/// Absorption's mean fraction, full-absorption rate, main latents and k=1 F1, or empty.
fn absorbed(c: &CoderEval) -> [String; 4] {
    let s = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
    match &c.absorption {
        None => Default::default(),
        Some(a) => [
            s(a.mean_absorption_fraction),
            s(a.mean_full_absorption),
            s(a.mean_main_latents),
            s(a.mean_k_sparse_f1.first().copied()),
        ],
    }
}

/// The columns of eval.csv, in order.
const CSV_COLUMNS: [&str; 20] = [
    "coder",
    "kind",
    "k",
    "latents",
    "fvu",
    "variance_explained",
    "l0",
    "dead_pct",
    "dense_pct",
    "ce_clean",
    "ce_patched",
    "ce_increase_pct",
    "kl",
    "probe_k1",
    "probe_k2",
    "probe_k5",
    "absorption_fraction",
    "full_absorption",
    "absorption_main_latents",
    "absorption_f1_k1",
];

impl Report {
    /// The table on standard output.
    pub fn print(&self) {
        println!(
            "layer {}: {} held-out rows; CE on {} tokens: clean {:.4}, zero-ablated MLP {:.4} (+{:.2} %)",
            self.layer,
            self.held_out_rows,
            self.ce_tokens,
            self.ce_clean,
            self.ce_zero_ablated,
            100.0 * (self.ce_zero_ablated - self.ce_clean) / self.ce_clean
        );
        println!(
            "{:<26} {:>5} {:>4} {:>7} {:>8} {:>7} {:>7} {:>7} {:>9} {:>9} {:>7} {:>8}",
            "coder",
            "kind",
            "k",
            "latents",
            "FVU",
            "L0",
            "dead%",
            "dense%",
            "CE clean",
            "CE patch",
            "ΔCE %",
            "KL"
        );
        for c in &self.coders {
            println!(
                "{:<26} {:>5} {:>4} {:>7} {:>8.4} {:>7.2} {:>7.2} {:>7.2} {:>9.4} {:>9.4} {:>7.2} {:>8.4}",
                match c.imported {
                    Some(_) => format!("{}*", c.name),
                    None => c.name.clone(),
                },
                c.kind.short(),
                c.k,
                c.num_latents,
                c.fvu,
                c.l0,
                c.dead_pct,
                c.dense_pct,
                self.ce_clean,
                c.ce_patched,
                c.ce_increase_pct,
                c.kl
            );
        }
        if let Some(l) = &self.linear_baseline {
            println!(
                "{:<26} {:>5} {:>4} {:>7} {:>8.4} {:>7} {:>7} {:>7} {:>9.4} {:>9.4} {:>7.2} {:>8.4}",
                "linear (ridge mlp_in→out)", "lin", "-", "-", l.fvu, "-", "-", "-", self.ce_clean, l.ce_patched,
                l.ce_increase_pct, l.kl
            );
        }
        if let Some(p) = &self.probing {
            p.print(&self.coders);
        }
        if let Some(a) = &self.absorption {
            a.print(&self.coders);
        }
        for c in &self.coders {
            if let Some(i) = &c.imported {
                let jump = if c.activation.is_topk() {
                    ""
                } else {
                    ", JumpReLU: k is its width"
                };
                let hooks = i
                    .hooks
                    .as_deref()
                    .map_or(String::new(), |h| format!(", hooks {h}"));
                println!(
                    "* {}: imported from {} ({}{jump}{hooks})",
                    c.name, i.source, i.format
                );
            }
        }
    }

    /// The rows of eval.csv (numbers in Rust's shortest round-trip form, as in eval.json).
    fn csv(&self) -> Result<Vec<u8>> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(CSV_COLUMNS)?;
        for c in &self.coders {
            let [fraction, full, main, f1] = absorbed(c);
            w.write_record([
                c.name.clone(),
                c.kind.short().to_string(),
                c.k.to_string(),
                c.num_latents.to_string(),
                c.fvu.to_string(),
                c.variance_explained.to_string(),
                c.l0.to_string(),
                c.dead_pct.to_string(),
                c.dense_pct.to_string(),
                self.ce_clean.to_string(),
                c.ce_patched.to_string(),
                c.ce_increase_pct.to_string(),
                c.kl.to_string(),
                probe(c, 0),
                probe(c, 1),
                probe(c, 2),
                fraction,
                full,
                main,
                f1,
            ])?;
        }
        if let Some(l) = &self.linear_baseline {
            w.write_record([
                "linear".to_string(),
                "linear".to_string(),
                String::new(),
                String::new(),
                l.fvu.to_string(),
                l.variance_explained.to_string(),
                String::new(),
                String::new(),
                String::new(),
                self.ce_clean.to_string(),
                l.ce_patched.to_string(),
                l.ce_increase_pct.to_string(),
                l.kl.to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ])?;
        }
        Ok(w.into_inner()?)
    }

    /// Writes `out`/eval.json and `out`/eval.csv, each atomically.
    pub fn save(&self, out: &Path) -> Result<()> {
        std::fs::create_dir_all(out)?;
        let csv = self.csv()?;
        write_atomic(&out.join("eval.json"), |w| {
            w.write_all(serde_json::to_string_pretty(self)?.as_bytes())
        })?;
        write_atomic(&out.join("eval.csv"), |w| w.write_all(&csv))?;
        println!(
            "wrote {} and {}",
            out.join("eval.json").display(),
            out.join("eval.csv").display()
        );
        Ok(())
    }
}
