//! The reproduction report: one trained and evaluated sweep per layer (a folder with summary.json,
//! metrics.jsonl and eval.json), laid out as the paper's Tables 1 and 3, with every ordering the paper reports
//! checked on these numbers, the skip transcoder's two starts compared by tokens to a held-out FVU, and
//! the curves' last quarter read for "still improving".
//!
//! Nothing here decides what a good result is: each ordering is stated as the paper states it and marked
//! holds or does not hold, with both numbers beside it.

use crate::plots::{self, Axes};
use crate::report::{CoderEval, Report};
use anyhow::{bail, Context, Result};
use cache_format::fsutil::write_atomic;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use trainer::coder::Kind;
use trainer::train::TrainSummary;

/// One layer's sweep: its evaluation, its training summary and each coder's held-out FVU curve.
pub struct LayerResults {
    pub dir: PathBuf,
    pub eval: Report,
    pub train: TrainSummary,
    /// Per coder name: (training tokens, held-out FVU) after each `--eval-every` step.
    pub curves: BTreeMap<String, Vec<(u64, f64)>>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not the expected JSON", path.display()))
}

impl LayerResults {
    /// Reads a sweep folder that `train` wrote and `eval` evaluated.
    pub fn load(dir: &Path) -> Result<LayerResults> {
        let eval: Report = read_json(&dir.join("eval.json"))?;
        let run_dirs = run_dirs(dir)?;
        let mut train: TrainSummary = read_json(&run_dirs[0].join("summary.json"))?;
        for part in &run_dirs[1..] {
            let more: TrainSummary = read_json(&part.join("summary.json"))?;
            train.seconds = train.seconds.max(more.seconds);
            train.coders.extend(more.coders);
        }
        let mut curves: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
        for run_dir in &run_dirs {
            read_curves(&run_dir.join("metrics.jsonl"), &mut curves)?;
        }
        Ok(LayerResults {
            dir: dir.to_path_buf(),
            eval,
            train,
            curves,
        })
    }
}

/// The folders holding a sweep's summary.json and metrics.jsonl: the sweep's own, or, for a sweep trained in
/// parts (`train --part I/N`), each `part-I-of-N` in it.
fn run_dirs(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    if dir.join("summary.json").exists() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let (_, parts) = cache_format::parts::find_parts(dir).with_context(|| {
        format!(
            "{}: holds no summary.json, so it must be a sweep trained in parts",
            dir.display()
        )
    })?;
    Ok(parts)
}

/// Adds the held-out FVU points of a metrics.jsonl to `curves`, by coder.
fn read_curves(path: &Path, curves: &mut BTreeMap<String, Vec<(u64, f64)>>) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}: line {}: not JSON", path.display(), i + 1))?;
        if let (Some(c), Some(t), Some(f)) = (
            v["coder"].as_str(),
            v["tokens"].as_u64(),
            v["heldout_fvu"].as_f64(),
        ) {
            curves.entry(c.to_string()).or_default().push((t, f));
        }
    }
    Ok(())
}

/// The coders of one layer at one (k, latents), by role.
struct Group<'a> {
    k: usize,
    latents: usize,
    sae: Option<&'a CoderEval>,
    st: Option<&'a CoderEval>,
    sst: Option<&'a CoderEval>,
    sst_reginit: Option<&'a CoderEval>,
}

fn groups(r: &Report) -> Vec<Group<'_>> {
    let mut keys: Vec<(usize, usize)> = r.coders.iter().map(|c| (c.k, c.num_latents)).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|(k, latents)| {
            let find = |pred: &dyn Fn(&CoderEval) -> bool| {
                r.coders
                    .iter()
                    .find(|c| c.k == k && c.num_latents == latents && pred(c))
            };
            Group {
                k,
                latents,
                sae: find(&|c| c.kind == Kind::Sae && c.name.contains("mlp_out")),
                st: find(&|c| c.kind == Kind::Transcoder),
                sst: find(&|c| c.kind == Kind::SkipTranscoder && !c.name.ends_with("-reginit")),
                sst_reginit: find(&|c| {
                    c.kind == Kind::SkipTranscoder && c.name.ends_with("-reginit")
                }),
            }
        })
        .collect()
}

/// Writes report.md, fvu_vs_ce_layers.png and, for each layer trained with `--eval-every`,
/// fvu_vs_tokens_layer{L}.png into `out`.
pub fn write(layers: &[LayerResults], out: &Path) -> Result<()> {
    if layers.is_empty() {
        bail!("no layer to report");
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let mut md = String::new();
    header(&mut md, layers);
    table_1(&mut md, layers);
    table_3(&mut md, layers);
    sparse_probing(&mut md, layers);
    absorption(&mut md, layers);
    orderings(&mut md, layers);
    time_to_quality(&mut md, layers);
    trends(&mut md, layers);
    paper_figures(&mut md);
    write_atomic(&out.join("report.md"), |w| w.write_all(md.as_bytes()))?;
    plot_fvu_vs_ce(layers, &out.join("fvu_vs_ce_layers.png"))?;
    for l in layers.iter().filter(|l| !l.curves.is_empty()) {
        plot_curves(
            l,
            &out.join(format!("fvu_vs_tokens_layer{}.png", l.eval.layer)),
        )?;
    }
    Ok(())
}

fn header(md: &mut String, layers: &[LayerResults]) {
    let model = cache_format::Manifest::load(Path::new(&layers[0].eval.cache))
        .map(|m| m.spec.model.name)
        .unwrap_or_else(|_| "(cache not found)".to_string());
    let list: Vec<String> = layers.iter().map(|l| l.eval.layer.to_string()).collect();
    let _ = writeln!(
        md,
        "# SAE vs transcoder vs skip transcoder: {model}, layers {}\n",
        list.join(", ")
    );
    let _ = writeln!(md, "| layer | sweep folder | training tokens per coder | steps | held-out rows | CE tokens | CE clean | CE, MLP zero-ablated |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- | --- |");
    for l in layers {
        let e = &l.eval;
        let _ = writeln!(
            md,
            "| {} | `{}` | {} | {} | {} | {} | {:.4} | {:.4} |",
            e.layer,
            l.dir.display(),
            l.train.tokens,
            l.train.steps,
            e.held_out_rows,
            e.ce_tokens,
            e.ce_clean,
            e.ce_zero_ablated
        );
    }
    md.push('\n');
}

/// The layout of the paper's Table 1: per coder, reconstruction and the loss with it patched in.
fn table_1(md: &mut String, layers: &[LayerResults]) {
    let _ = writeln!(
        md,
        "## Reconstruction and downstream loss (the layout of the paper's Table 1)\n"
    );
    let _ = writeln!(md, "| layer | coder | k | latents | FVU | variance explained % | ΔCE % | KL | L0 | dead % | dense % |");
    let _ = writeln!(
        md,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for l in layers {
        for c in &l.eval.coders {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.4} | {:.2} | {:.2} | {:.4} | {:.2} | {:.2} | {:.2} |",
                l.eval.layer,
                c.name,
                c.k,
                c.num_latents,
                c.fvu,
                100.0 * c.variance_explained,
                c.ce_increase_pct,
                c.kl,
                c.l0,
                c.dead_pct,
                c.dense_pct
            );
        }
        if let Some(lin) = &l.eval.linear_baseline {
            let _ = writeln!(
                md,
                "| {} | linear (ridge mlp_in→mlp_out, λ {:e}) | - | - | {:.4} | {:.2} | {:.2} | {:.4} | - | - | - |",
                l.eval.layer, lin.lambda, lin.fvu, 100.0 * lin.variance_explained, lin.ce_increase_pct, lin.kl
            );
        }
    }
    md.push('\n');
}

fn ve(c: Option<&CoderEval>) -> String {
    c.map_or("-".to_string(), |c| {
        format!("{:.2}", 100.0 * c.variance_explained)
    })
}

/// Sparse probing per layer (the paper's Table 3 column, SAEBench's method), where `eval --probing` ran: each
/// coder's and each raw side's mean test accuracy at k = 1, 2, 5.
fn sparse_probing(md: &mut String, layers: &[LayerResults]) {
    let probed: Vec<&LayerResults> = layers.iter().filter(|l| l.eval.probing.is_some()).collect();
    if probed.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Sparse probing: test accuracy, mean over tasks (SAEBench's method; balanced subtasks, chance 0.5)\n"
    );
    let _ = writeln!(md, "| layer | features | k = 1 | k = 2 | k = 5 | tasks |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- |");
    for l in probed {
        let p = l.eval.probing.as_ref().unwrap();
        let tasks: Vec<String> = p
            .tasks
            .iter()
            .map(|t| {
                format!(
                    "{} ({}+{} per class)",
                    t.name, t.train_per_class, t.test_per_class
                )
            })
            .collect();
        let rows = p.baselines.iter().chain(
            l.eval
                .coders
                .iter()
                .filter_map(|c| c.sparse_probing.as_ref()),
        );
        for s in rows {
            let acc: Vec<String> = s.accuracy.iter().map(|a| format!("{a:.3}")).collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                l.eval.layer,
                s.name,
                acc.join(" | "),
                tasks.join(", ")
            );
        }
    }
    md.push('\n');
}

/// Feature absorption per layer (the paper's Table 3 column, SAEBench's method), where `eval --absorption`
/// ran: each coder's letters counted, mean absorption fraction, full-absorption rate, main latents, k=1 F1.
fn absorption(md: &mut String, layers: &[LayerResults]) {
    let measured: Vec<&LayerResults> = layers
        .iter()
        .filter(|l| l.eval.absorption.is_some())
        .collect();
    if measured.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Feature absorption (SAEBench's first-letter method; means over the letters whose probe has F1 > {})\n",
        measured[0].eval.absorption.as_ref().unwrap().min_probe_f1
    );
    let _ = writeln!(md, "| layer | coder | side | latent direction | letters | absorption fraction | full absorption | main latents | k-sparse F1, k = 1 |");
    let _ = writeln!(
        md,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
    for l in measured {
        for a in l.eval.coders.iter().filter_map(|c| c.absorption.as_ref()) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                l.eval.layer,
                a.name,
                a.side.name(),
                format!("{:?}", a.direction).to_lowercase(),
                a.letters_counted,
                opt(a.mean_absorption_fraction),
                opt(a.mean_full_absorption),
                opt(a.mean_main_latents),
                opt(a.mean_k_sparse_f1.first().copied())
            );
        }
    }
    let _ = writeln!(
        md,
        "\n`-`: fewer letters counted than the minimum (eval.json `absorption.min_letters`), as SAEBench reports none.\n"
    );
}

/// The layout of the paper's Table 3: variance explained per layer, one column per coder kind.
fn table_3(md: &mut String, layers: &[LayerResults]) {
    let _ = writeln!(
        md,
        "## Variance explained % per layer (the layout of the paper's Table 3)\n"
    );
    let _ = writeln!(md, "| layer | k | latents | SAE | transcoder | skip transcoder | skip transcoder, regression start | linear map |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- | --- |");
    for l in layers {
        let lin = l
            .eval
            .linear_baseline
            .as_ref()
            .map_or("-".to_string(), |x| {
                format!("{:.2}", 100.0 * x.variance_explained)
            });
        for g in groups(&l.eval) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {lin} |",
                l.eval.layer,
                g.k,
                g.latents,
                ve(g.sae),
                ve(g.st),
                ve(g.sst),
                ve(g.sst_reginit)
            );
        }
    }
    md.push('\n');
}

/// One claimed ordering, `a` better than `b` when `a_value < b_value` (FVU, ΔCE: lower is better).
struct Claim<'a> {
    what: &'a str,
    source: &'a str,
    a: (&'a str, f64),
    b: (&'a str, f64),
}

fn claim_line(md: &mut String, layer: u32, k: usize, c: &Claim) {
    // Closer than 0.1 % of the larger is no ordering at all (e.g. a regression start that never left the map).
    let verdict = if (c.a.1 - c.b.1).abs() <= 1e-3 * c.a.1.abs().max(c.b.1.abs()) {
        "tie"
    } else if c.a.1 < c.b.1 {
        "holds"
    } else {
        "does not hold"
    };
    let _ = writeln!(
        md,
        "| {layer} | {k} | {} ({}) | **{verdict}** | {} {:.4} vs {} {:.4} |",
        c.what, c.source, c.a.0, c.a.1, c.b.0, c.b.1
    );
}

/// Every ordering of the paper that these coders can test, marked holds or not.
fn orderings(md: &mut String, layers: &[LayerResults]) {
    let _ = writeln!(md, "## The paper's orderings on these numbers\n");
    let _ = writeln!(
        md,
        "Lower is better for both FVU and ΔCE; \"tie\" when the two are within 0.1 %.\n"
    );
    let _ = writeln!(md, "| layer | k | ordering (source) | here | numbers |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    for l in layers {
        let layer = l.eval.layer;
        for g in groups(&l.eval) {
            let mut claims = Vec::new();
            if let (Some(sst), Some(sae)) = (g.sst, g.sae) {
                claims.push(Claim {
                    what: "skip transcoder FVU below SAE's",
                    source: "Table 3, every layer",
                    a: ("SST", sst.fvu),
                    b: ("SAE", sae.fvu),
                });
                claims.push(Claim {
                    what: "skip transcoder ΔCE below SAE's",
                    source: "Table 1",
                    a: ("SST", sst.ce_increase_pct),
                    b: ("SAE", sae.ce_increase_pct),
                });
            }
            if let (Some(sst), Some(st)) = (g.sst, g.st) {
                claims.push(Claim {
                    what: "skip transcoder FVU below transcoder's",
                    source: "§3, the skip's purpose",
                    a: ("SST", sst.fvu),
                    b: ("ST", st.fvu),
                });
            }
            if let (Some(r), Some(sae)) = (g.sst_reginit, g.sae) {
                claims.push(Claim {
                    what: "skip transcoder (regression start) FVU below SAE's",
                    source: "Table 3 ordering, our start",
                    a: ("SST reginit", r.fvu),
                    b: ("SAE", sae.fvu),
                });
                claims.push(Claim {
                    what: "skip transcoder (regression start) ΔCE below SAE's",
                    source: "Table 1 ordering, our start",
                    a: ("SST reginit", r.ce_increase_pct),
                    b: ("SAE", sae.ce_increase_pct),
                });
            }
            if let Some(lin) = &l.eval.linear_baseline {
                for (name, c) in [("ST", g.st), ("SST", g.sst), ("SST reginit", g.sst_reginit)] {
                    if let Some(c) = c {
                        claims.push(Claim {
                            what: "coder FVU below the linear map's",
                            source: "not in the paper: what a transcoder adds",
                            a: (name, c.fvu),
                            b: ("linear", lin.fvu),
                        });
                    }
                }
            }
            for c in &claims {
                claim_line(md, layer, g.k, c);
            }
        }
    }
    md.push('\n');
}

/// Tokens of the first curve point at or below `target`.
fn tokens_to(curve: &[(u64, f64)], target: f64) -> Option<u64> {
    curve.iter().find(|p| p.1 <= target).map(|p| p.0)
}

/// The skip transcoder's two starts: training tokens until the held-out FVU reaches the zero start's final one.
fn time_to_quality(md: &mut String, layers: &[LayerResults]) {
    let _ = writeln!(
        md,
        "## Time to quality: the skip transcoder's zero and regression starts\n"
    );
    let _ = writeln!(md, "Target: the zero start's held-out FVU after its last step (train's `--eval-every` curve).\n");
    let _ = writeln!(
        md,
        "| layer | k | target FVU | tokens, zero start | tokens, regression start | ratio |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- |");
    for l in layers {
        for g in groups(&l.eval) {
            let (Some(zero), Some(reg)) = (g.sst, g.sst_reginit) else {
                continue;
            };
            let (Some(cz), Some(cr)) = (l.curves.get(&zero.name), l.curves.get(&reg.name)) else {
                continue;
            };
            let Some(&(_, target)) = cz.last() else {
                continue;
            };
            let (tz, tr) = (tokens_to(cz, target), tokens_to(cr, target));
            let show = |t: Option<u64>| t.map_or("not reached".to_string(), |t| t.to_string());
            let ratio = match (tz, tr) {
                (Some(a), Some(b)) => format!("{:.2}×", a as f64 / b as f64),
                _ => "-".to_string(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {target:.4} | {} | {} | {ratio} |",
                l.eval.layer,
                g.k,
                show(tz),
                show(tr)
            );
        }
    }
    md.push('\n');
}

/// Whether each curve was still falling over its last quarter of tokens.
fn trends(md: &mut String, layers: &[LayerResults]) {
    let _ = writeln!(md, "## Were the coders still improving?\n");
    let _ = writeln!(md, "Held-out FVU at 75 % of the training tokens and at the end; \"still improving\" when it fell by more than 1 % of its final value.\n");
    let _ = writeln!(
        md,
        "| layer | coder | FVU at 75 % | final FVU | fall, % of final | reading |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- |");
    for l in layers {
        for (name, curve) in &l.curves {
            let Some(&(end, last)) = curve.last() else {
                continue;
            };
            let at = curve
                .iter()
                .find(|p| p.0 as f64 >= 0.75 * end as f64)
                .unwrap_or(&curve[0])
                .1;
            let fall = 100.0 * (at - last) / last;
            let reading = if fall > 1.0 {
                "still improving"
            } else {
                "flat"
            };
            let _ = writeln!(
                md,
                "| {} | {name} | {at:.4} | {last:.4} | {fall:.2} | {reading} |",
                l.eval.layer
            );
        }
    }
    md.push('\n');
}

/// What the paper reports, as far as it is known here: the figures quoted in this project's issues.
fn paper_figures(md: &mut String) {
    md.push_str(
        "## The paper's figures (Paulo, Shabalin & Belrose 2025, arXiv 2501.18823)\n\n\
         As this project's issues quote it (the paper itself is not part of this offline tool): it trains on \
         8 B tokens per coder at 32–64× width on Pythia-160M, Llama 3.2 1B and Gemma 2 2B, and reports:\n\n\
         | model, layer | measure | SAE | transcoder / skip transcoder |\n\
         | --- | --- | --- | --- |\n\
         | Pythia-160M, layer 4 | variance explained % (Table 3) | 75.9 | 87.4 (skip transcoder) |\n\
         | Pythia-160M | fuzzing score (Table 1) | 74.6 | 86.4 |\n\
         | Pythia-160M | detection score (Table 1) | 70.2 | 80.9 |\n\n\
         Its qualitative claims, checked above: skip transcoders explain more variance than SAEs at every layer \
         (Table 3) and raise CE loss less (Table 1). Compare orderings, not values: the model, the tokens and \
         the width differ.\n",
    );
}

fn plot_fvu_vs_ce(layers: &[LayerResults], path: &Path) -> Result<()> {
    let mut points = Vec::new();
    for l in layers {
        for c in &l.eval.coders {
            points.push((
                format!("L{} {}", l.eval.layer, c.name),
                c.fvu,
                c.ce_increase_pct,
            ));
        }
        if let Some(lin) = &l.eval.linear_baseline {
            points.push((
                format!("L{} linear", l.eval.layer),
                lin.fvu,
                lin.ce_increase_pct,
            ));
        }
    }
    plots::fvu_vs_ce(path, &points)
}

fn plot_curves(l: &LayerResults, path: &Path) -> Result<()> {
    let series: Vec<(String, Vec<(f64, f64)>)> = l
        .curves
        .iter()
        .map(|(name, c)| {
            (
                name.clone(),
                c.iter().map(|&(t, f)| (t as f64 / 1e6, f)).collect(),
            )
        })
        .collect();
    let pts = series.iter().flat_map(|s| s.1.iter());
    let (xmax, ymax) = pts.fold((1e-6f64, 0.1f64), |(a, b), p| (a.max(p.0), b.max(p.1)));
    let caption = format!("Held-out FVU during training, layer {}", l.eval.layer);
    let axes = Axes {
        caption: &caption,
        x_desc: "training tokens (millions)",
        y_desc: "held-out FVU",
        x: 0.0..xmax * 1.02,
        y: 0.0..ymax * 1.05,
    };
    plots::lines(path, &axes, &series)
}
