//! `sparsecoder interp` end to end on the real model, offline: a small cache, an SAE and a skip transcoder, two
//! latents each explained and scored (with calibration prompts) by the local SmolLM2 chat model; the files it
//! writes, and a re-run that takes every answer from the cache.
mod common;
use common::{model, sc, small_cache_and_sweep};

#[test]
fn interp_explains_and_scores_latents_offline() {
    let model = model();
    let tmp = tempfile::tempdir().unwrap();
    let (cache, run) = small_cache_and_sweep(tmp.path(), "sae,skip-transcoder");
    let out = tmp.path().join("interp").display().to_string();
    let interp = [
        "interp",
        "--model",
        &model,
        "--cache",
        &cache,
        "--checkpoints",
        &run,
        "--latents",
        "2",
        "--min-firings",
        "10",
        "--explain-per-quantile",
        "1",
        "--score-per-quantile",
        "1",
        "--non-activating",
        "5",
        "--scorers",
        "detection,fuzzing,simulation",
        "--simulation-windows",
        "1",
        "--out",
        &out,
        "--quiet",
    ];
    let (ok, stdout, err) = sc(&interp);
    assert!(ok, "{err}");
    println!("{stdout}");
    let coders = ["sae-mlp_out-k16-l1152", "sst-k16-l1152"];
    for c in coders {
        assert!(stdout.contains(c), "{stdout}");
    }

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("interp/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary.as_array().unwrap().len(), 2);
    for (c, s) in coders.iter().zip(summary.as_array().unwrap()) {
        assert_eq!(s["coder"], *c);
        assert_eq!(s["latents"], 2);
        let lines =
            std::fs::read_to_string(tmp.path().join("interp").join(c).join("latents.jsonl"))
                .unwrap();
        let latents: Vec<serde_json::Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(latents.len(), 2);
        for l in &latents {
            assert!(l["frequency"].as_f64().unwrap() > 0.0);
            assert!(
                l["explainer_answer"].is_string(),
                "the explainer was asked: {l}"
            );
            let examples = l["explain_examples"].as_array().unwrap();
            assert!(!examples.is_empty() && examples.len() <= 10);
            for e in examples {
                let acts: Vec<f64> = e["acts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_f64().unwrap())
                    .collect();
                assert_eq!(acts.len(), 32);
                assert_eq!(e["tokens"].as_array().unwrap().len(), 32);
                assert!(acts.iter().any(|&a| a > 0.0), "an activating example fires");
            }
            for e in l["non_activating_examples"].as_array().unwrap() {
                assert!(e["acts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|a| a.as_f64().unwrap() == 0.0));
            }
            if l["explanation"].is_string() {
                let det = &l["detection"];
                assert_eq!(
                    det["n"].as_u64().unwrap() + det["unparsed"].as_u64().unwrap(),
                    15,
                    "10 + 5 examples"
                );
                // The local model decodes lists under their format: every answer parses, with probabilities.
                assert_eq!(det["unparsed"], 0);
                let auroc = det["auroc"]
                    .as_f64()
                    .expect("an AUROC from the yes probabilities");
                assert!((0.0..=1.0).contains(&auroc));
                // Every example was asked again with the content-free explanation, for the calibrated AUROC.
                let calibrated = det["calibrated_auroc"]
                    .as_f64()
                    .expect("a calibrated AUROC");
                assert!((0.0..=1.0).contains(&calibrated));
                let judged = l["detection_judgements"].as_array().unwrap();
                let base = |j: &serde_json::Value| j["p_base"].as_f64().expect("a baseline p");
                assert!(judged.iter().all(|j| (0.0..=1.0).contains(&base(j))));
                assert!(
                    judged
                        .iter()
                        .any(|j| base(j) != j["p_yes"].as_f64().unwrap()),
                    "the baseline prompt is not the explanation's"
                );
                // Simulation: one activating and one silent window, each answer a digit list decoded under
                // its format, predictions the expected digits.
                let sim = &l["simulation"];
                assert_eq!(
                    (sim["windows"].as_u64(), sim["unparsed"].as_u64()),
                    (Some(2), Some(0)),
                    "{sim}"
                );
                assert_eq!(
                    (sim["tokens"].as_u64(), &sim["expected_values"]),
                    (Some(64), &true.into())
                );
                assert!(sim["correlation"].is_number() || sim["correlation"].is_null());
                assert!(
                    l["control_simulation"].is_object(),
                    "the other latent's explanation"
                );
                let fuzz = &l["fuzzing"];
                assert!(fuzz["calibrated_auroc"].as_f64().is_some());
                assert_eq!(
                    fuzz["n"].as_u64().unwrap() + fuzz["unparsed"].as_u64().unwrap(),
                    10
                );
            }
        }
        check_spread_and_floor(s, &latents);
        let page =
            std::fs::read_to_string(tmp.path().join("interp").join(format!("{c}.html"))).unwrap();
        assert!(
            page.contains("<h2>latent ") && page.contains("rgba(255,140,0,"),
            "examples are shaded"
        );
    }
    let index = std::fs::read_to_string(tmp.path().join("interp/index.html")).unwrap();
    assert!(index.contains("sst-k16-l1152.html"));
    let csv = std::fs::read_to_string(tmp.path().join("interp/summary.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    for column in [
        "detection_auroc",
        "detection_auroc_sd",
        "detection_auroc_gap",
        "detection_auroc_wins",
    ] {
        assert!(header.contains(&column), "{column} in {header:?}");
    }
    assert!(csv
        .lines()
        .skip(1)
        .all(|l| l.split(',').count() == header.len()));

    // A re-run asks the model nothing: every prompt's answer is in the cache.
    let (ok, stdout, err) = sc(&interp);
    assert!(ok, "{err}");
    assert!(stdout.contains("\n0 model calls"), "{stdout}");

    // Explanations from the top tokens, without calibration prompts: the model only scores.
    let out2 = tmp.path().join("interp-top").display().to_string();
    let mut top = interp.to_vec();
    let out_at = top.len() - 2;
    top[out_at] = &out2;
    let latents = top.iter().position(|&a| a == "--latents").unwrap();
    top[latents + 1] = "1";
    top.extend(["--explainer", "top-tokens", "--no-calibration"]);
    let (ok, stdout, err) = sc(&top);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("\n54 model calls"),
        "1 latent x 2 coders x (15 + 10 + 2 simulated windows), batch 1, no shuffled control with one latent: \
         {stdout}"
    );
    let lines = std::fs::read_to_string(
        tmp.path()
            .join("interp-top")
            .join(coders[1])
            .join("latents.jsonl"),
    )
    .unwrap();
    let l: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    let explanation = l["explanation"].as_str().unwrap();
    assert!(
        explanation.starts_with("The feature is active on the token"),
        "{explanation}"
    );
    assert!(l["explainer_answer"].is_null());
    assert!(l["detection_judgements"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["p_base"].is_null() && j["p_yes"].is_f64()));
}

/// The summary's spread and sanity floor, recomputed from the latents' own scores in latents.jsonl: the
/// standard deviation of the detection AUROC over latents, and own − shuffled explanation paired by latent.
fn check_spread_and_floor(summary: &serde_json::Value, latents: &[serde_json::Value]) {
    let auroc = |l: &serde_json::Value, key: &str| l[key]["auroc"].as_f64();
    let own: Vec<f64> = latents
        .iter()
        .filter_map(|l| auroc(l, "detection"))
        .collect();
    if own.len() >= 2 {
        let m = own.iter().sum::<f64>() / own.len() as f64;
        let sd = (own.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (own.len() - 1) as f64).sqrt();
        let got = summary["sd"]["detection_auroc"].as_f64().unwrap();
        assert!((got - sd).abs() < 1e-9, "sd {got} against {sd}");
    }
    let gaps: Vec<f64> = latents
        .iter()
        .filter_map(|l| Some(auroc(l, "detection")? - auroc(l, "control_detection")?))
        .collect();
    let floor = summary["floor"].as_array().unwrap();
    let fl = floor.iter().find(|f| f["score"] == "detection_auroc");
    match fl {
        None => assert!(gaps.is_empty(), "{summary}"),
        Some(fl) => {
            assert_eq!(fl["latents"].as_u64().unwrap() as usize, gaps.len());
            let wins = gaps.iter().filter(|&&g| g > 0.0).count();
            assert_eq!(fl["wins"].as_u64().unwrap() as usize, wins);
            let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
            assert!(
                (fl["mean_gap"].as_f64().unwrap() - mean).abs() < 1e-9,
                "{fl}"
            );
        }
    }
}
