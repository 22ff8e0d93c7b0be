//! What a run leaves behind: per coder `<coder>/latents.jsonl` (one line per latent: explanation, scores,
//! judgements, examples), `summary.json` and `summary.csv` (the paper's Table 1 columns), and a static HTML
//! report readable offline: `index.html` with the summary, one page per coder listing its latents with their
//! explanation, scores and examples, each token shaded by the latent's activation.

use crate::run::{LatentResult, ShownWindow};
use crate::summary::{CoderSummary, FLOOR_PAIRS, SCORE_COLUMNS};
use anyhow::Result;
use cache_format::fsutil::write_atomic;
use std::fmt::Write as _;
use std::path::Path;

pub fn write_latents(dir: &Path, results: &[LatentResult]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    write_atomic(&dir.join("latents.jsonl"), |w| {
        for r in results {
            writeln!(w, "{}", serde_json::to_string(r)?)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// A score as the tables show it: 3 decimals, "–" when missing.
pub fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "–".into()
    }
}

pub fn write_summary(out: &Path, summaries: &[CoderSummary]) -> Result<()> {
    write_atomic(&out.join("summary.json"), |w| {
        w.write_all(serde_json::to_string_pretty(summaries)?.as_bytes())
    })?;
    write_atomic(&out.join("summary.csv"), |w| {
        // The means, then (appended, so the older columns keep their places) each score's spread over
        // latents and the floor checks: own − shuffled per latent, its mean, SE and wins.
        let mut names: Vec<String> = SCORE_COLUMNS.iter().map(|c| c.name.to_string()).collect();
        names.extend(["unparsed_explanations".into(), "unparsed_judgements".into()]);
        names.extend(SCORE_COLUMNS.iter().map(|c| format!("{}_sd", c.name)));
        for (own, _) in FLOOR_PAIRS {
            names.extend(["gap", "gap_se", "wins", "paired"].map(|x| format!("{own}_{x}")));
        }
        writeln!(w, "coder,latents,explained,{}", names.join(","))?;
        for s in summaries {
            let mut values: Vec<String> = SCORE_COLUMNS
                .iter()
                .map(|c| (c.value)(s).to_string())
                .collect();
            values.extend([s.unparsed_explanations, s.unparsed_judgements].map(|n| n.to_string()));
            values.extend(SCORE_COLUMNS.iter().map(|c| s.sd_of(c.name).to_string()));
            for (own, _) in FLOOR_PAIRS {
                let fl = s.floor.iter().find(|f| f.score == own);
                values.extend(
                    match fl {
                        Some(f) => [f.mean_gap, f.gap_se, f.wins as f64, f.latents as f64],
                        None => [f64::NAN, f64::NAN, 0.0, 0.0],
                    }
                    .map(|v| v.to_string()),
                );
            }
            writeln!(
                w,
                "{},{},{},{}",
                s.coder,
                s.latents,
                s.explained,
                values.join(",")
            )?;
        }
        Ok(())
    })?;
    Ok(())
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:75em;color:#222}\
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:.25em .4em;text-align:right}\
td.l,th.l{text-align:left;white-space:nowrap}.ex{font-family:monospace;white-space:pre-wrap;margin:.15em 0;line-height:1.5}\
.ex span{border-radius:2px}.q{color:#888;font-size:.8em;margin-right:.5em}\
.latent{border-top:2px solid #444;margin-top:1.5em;padding-top:.5em}.muted{color:#888}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head>\
         <body>\n{body}\n</body></html>\n",
        escape(title)
    )
}

/// One window: each token shaded orange by its activation relative to `max`.
fn window_html(w: &ShownWindow, max: f32) -> String {
    let mut s = String::from("<div class=\"ex\">");
    if let Some(q) = w.quantile {
        let _ = write!(s, "<span class=\"q\">q{q}</span>");
    }
    for (t, &a) in w.tokens.iter().zip(&w.acts) {
        let text = escape(&t.replace('\n', "↵"));
        if a > 0.0 {
            let alpha = (0.15 + 0.85 * a / max.max(f32::MIN_POSITIVE)).min(1.0);
            let _ = write!(
                s,
                "<span style=\"background:rgba(255,140,0,{alpha:.2})\" title=\"{a:.3}\">{text}</span>"
            );
        } else {
            s.push_str(&text);
        }
    }
    s.push_str("</div>");
    s
}

fn summary_rows(summaries: &[CoderSummary], link: bool) -> String {
    let mut s =
        String::from("<table><tr><th class=\"l\">coder</th><th>latents</th><th>explained</th>");
    for c in &SCORE_COLUMNS {
        let _ = write!(s, "<th>{}</th>", c.header);
    }
    s.push_str("<th>unparsed answers</th></tr>");
    for c in summaries {
        let name = if link {
            format!("<a href=\"{0}.html\">{0}</a>", escape(&c.coder))
        } else {
            escape(&c.coder)
        };
        let _ = write!(
            s,
            "<tr><td class=\"l\">{name}</td><td>{}</td><td>{}</td>",
            c.latents, c.explained
        );
        for col in &SCORE_COLUMNS {
            let sd = c.sd_of(col.name);
            let spread = if sd.is_finite() {
                format!("<br><span class=\"muted\">± {}</span>", num(sd))
            } else {
                String::new()
            };
            let _ = write!(s, "<td>{}{spread}</td>", num((col.value)(c)));
        }
        let _ = write!(
            s,
            "<td>{}</td></tr>",
            c.unparsed_explanations + c.unparsed_judgements
        );
    }
    s.push_str("</table>");
    for c in summaries {
        for fl in &c.floor {
            let _ = write!(s, "<p>{}</p>", escape(&fl.describe(&c.coder)));
        }
    }
    s
}

/// `index.html` and one page per coder.
pub fn write_html(
    out: &Path,
    title: &str,
    coders: &[(CoderSummary, Vec<LatentResult>)],
) -> Result<()> {
    let summaries: Vec<CoderSummary> = coders.iter().map(|(s, _)| s.clone()).collect();
    let mut index = format!("<h1>{}</h1>\n", escape(title));
    index.push_str(&summary_rows(&summaries, true));
    index.push_str(
        "<p class=\"muted\">Balanced accuracy: mean of the rates of right answers on activating and on silent \
         (detection) or wrongly marked (fuzzing) examples; 0.5 is chance. AUROC (models that expose their \
         probability of a yes): the chance that a true example gets a higher one than a false example; calibrated: \
         of the log-odds of a yes minus those for the same example under the content-free explanation \"N/A\", so \
         only what the explanation adds counts. Simulation: the correlation of the activations the scorer predicts \
         for every token (0–9; the expected digit where the model gives probabilities) with the true ones, over a \
         latent's activating and silent windows together; 0 is chance. Quantiles q1 (weakest tenth of a \
         latent's sampled activations) to q10 (strongest). Below each mean: its standard deviation over \
         the coder's latents.</p>",
    );
    for (summary, _) in coders {
        let _ = write!(
            index,
            "<h3>{}: detection accuracy per quantile</h3><table><tr>",
            escape(&summary.coder)
        );
        for (q, _, _) in &summary.detection_per_quantile {
            let _ = write!(index, "<th>q{q}</th>");
        }
        index.push_str("</tr><tr>");
        for (_, acc, n) in &summary.detection_per_quantile {
            let _ = write!(index, "<td title=\"{n} examples\">{}</td>", num(*acc));
        }
        index.push_str("</tr></table>");
    }
    write_atomic(&out.join("index.html"), |w| {
        w.write_all(page(title, &index).as_bytes())
    })?;

    for (summary, results) in coders {
        let mut body = format!(
            "<p><a href=\"index.html\">← all coders</a></p><h1>{}</h1>",
            escape(&summary.coder)
        );
        body.push_str(&summary_rows(std::slice::from_ref(summary), false));
        for r in results {
            let max = r
                .explain_examples
                .iter()
                .flat_map(|w| w.acts.iter().cloned())
                .fold(0.0, f32::max);
            let _ = write!(
                body,
                "<div class=\"latent\" id=\"latent-{0}\"><h2>latent {0}</h2><p class=\"muted\">fires on {1:.4}% of \
                 tokens ({2} times)</p>",
                r.latent,
                100.0 * r.frequency,
                r.firings
            );
            match &r.explanation {
                Some(e) => {
                    let _ = write!(body, "<p><b>Explanation:</b> {}</p>", escape(e));
                }
                None => {
                    let _ = write!(
                        body,
                        "<p class=\"muted\">{}</p>",
                        escape(r.note.as_deref().unwrap_or("no explanation"))
                    );
                }
            }
            if let (Some(d), Some(f)) = (&r.detection, &r.fuzzing) {
                let control = r
                    .control_detection
                    .as_ref()
                    .map_or((f64::NAN, f64::NAN, f64::NAN), |c| {
                        (c.balanced_accuracy, c.auroc, c.calibrated_auroc)
                    });
                let _ = write!(
                    body,
                    "<p>detection: accuracy {}, balanced {}, FPR {}, AUROC {} (calibrated {}) · fuzzing: accuracy {}, \
                     balanced {}, AUROC {} (calibrated {}) · detection with a shuffled explanation: balanced {}, \
                     AUROC {} (calibrated {})</p>",
                    num(d.accuracy),
                    num(d.balanced_accuracy),
                    num(d.false_positive_rate),
                    num(d.auroc),
                    num(d.calibrated_auroc),
                    num(f.accuracy),
                    num(f.balanced_accuracy),
                    num(f.auroc),
                    num(f.calibrated_auroc),
                    num(control.0),
                    num(control.1),
                    num(control.2)
                );
            }
            if let Some(sim) = &r.simulation {
                let control = r
                    .control_simulation
                    .as_ref()
                    .map_or(f64::NAN, |c| c.correlation);
                let _ = write!(
                    body,
                    "<p>simulation: correlation {} over {} tokens of {} windows ({}{} unparsed) · with a shuffled \
                     explanation: {}</p>",
                    num(sim.correlation),
                    sim.tokens,
                    sim.windows,
                    if sim.expected_values { "expected values, " } else { "written digits, " },
                    sim.unparsed,
                    num(control)
                );
            }
            body.push_str("<details open><summary>activating examples (the explainer's)</summary>");
            for w in &r.explain_examples {
                body.push_str(&window_html(w, max));
            }
            body.push_str("</details><details><summary>silent examples</summary>");
            for w in &r.non_activating_examples {
                body.push_str(&window_html(w, max));
            }
            body.push_str("</details></div>");
        }
        let path = out.join(format!("{}.html", summary.coder));
        write_atomic(&path, |w| {
            w.write_all(page(&summary.coder, &body).as_bytes())
        })?;
    }
    Ok(())
}
