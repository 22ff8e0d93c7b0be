//! `sparsecoder eval` end to end on the real model: a small cache, a small sweep, the table and its files.
mod common;
use common::{model, python, root, sc, small_cache_and_sweep, small_cache_and_sweep_with};

#[test]
fn eval_reports_every_coder_of_a_sweep() {
    let model = model();
    let tmp = tempfile::tempdir().unwrap();
    let (cache, run) = small_cache_and_sweep(tmp.path(), "sae,transcoder,skip-transcoder");
    let (ok, out, err) = sc(&[
        "eval",
        "--model",
        &model,
        "--cache",
        &cache,
        "--checkpoints",
        &run,
        "--tokens",
        "512",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("CE on 504 tokens"), "{out}"); // 8 sequences of 64, 63 targets each
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("run/eval.json")).unwrap()).unwrap();
    let coders = report["coders"].as_array().unwrap();
    assert_eq!(coders.len(), 3);
    let clean = report["ce_clean"].as_f64().unwrap();
    assert!(clean > 0.5 && clean < 10.0, "{clean}");
    assert_ne!(report["ce_zero_ablated"].as_f64().unwrap(), clean);
    for c in coders {
        let (fvu, kl, ce) = (
            c["fvu"].as_f64().unwrap(),
            c["kl"].as_f64().unwrap(),
            c["ce_patched"].as_f64().unwrap(),
        );
        assert!(fvu > 0.0 && fvu < 1.5 && kl >= 0.0 && ce.is_finite(), "{c}");
        assert_eq!(c["l0"].as_f64().unwrap(), 16.0);
        let latents: u64 = c["density_histogram"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(latents, 1152);
        let mean = c["mean_activation_histogram"].as_object().unwrap();
        assert_eq!(
            mean.values().map(|v| v.as_u64().unwrap()).sum::<u64>(),
            1152
        );
        assert_eq!(mean.get("dead"), c["density_histogram"].get("dead"));
    }
    // Both histograms against numpy's recomputation from the shards and sparsify's checkpoint files.
    python(&[
        &root()
            .join("scripts/check_density.py")
            .display()
            .to_string(),
        &cache,
        &tmp.path().join("run/eval.json").display().to_string(),
        &run,
    ]);
    let csv = std::fs::read_to_string(tmp.path().join("run/eval.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4);
    for png in ["density.png", "fvu_vs_ce.png"] {
        let bytes = std::fs::read(tmp.path().join("run").join(png))
            .unwrap_or_else(|e| panic!("{png}: {e}"));
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png} is a PNG");
        assert!(
            bytes.len() > 10_000,
            "{png} has content ({} bytes)",
            bytes.len()
        );
    }

    // A model other than the cache's is refused.
    let other = root()
        .join("tests/fixtures/quant_types.gguf")
        .display()
        .to_string();
    let (ok, _, err) = sc(&[
        "eval",
        "--model",
        &other,
        "--cache",
        &cache,
        "--checkpoints",
        &run,
    ]);
    assert!(
        !ok && err.contains("is not that of the model the cache was extracted from"),
        "{err}"
    );
}

/// `--linear-baseline`: its row in the table, eval.json and eval.csv, and its held-out FVU against a numpy
/// ridge fit (scripts/check_linear_baseline.py, reading the shards with numpy alone) at the λ eval chose.
#[test]
fn eval_linear_baseline_matches_numpy() {
    let model = model();
    let tmp = tempfile::tempdir().unwrap();
    let (cache, run) = small_cache_and_sweep(tmp.path(), "sae");
    let (ok, out, err) = sc(&[
        "eval",
        "--model",
        &model,
        "--cache",
        &cache,
        "--checkpoints",
        &run,
        "--tokens",
        "256",
        "--linear-baseline",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("linear (ridge mlp_in→out)"), "{out}");
    let eval_json = tmp.path().join("run/eval.json");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&eval_json).unwrap()).unwrap();
    let lin = &report["linear_baseline"];
    let fvu = lin["fvu"].as_f64().unwrap();
    assert!(fvu > 0.0 && fvu < 1.0, "{lin}");
    assert!(lin["kl"].as_f64().unwrap() >= 0.0, "{lin}");
    assert!(lin["validation_fvu"].as_f64().unwrap().is_finite(), "{lin}");
    assert_eq!(lin["fit_rows"].as_u64().unwrap(), 3 * 2048);
    let csv = std::fs::read_to_string(tmp.path().join("run/eval.csv")).unwrap();
    assert!(
        csv.lines().last().unwrap().starts_with("linear,linear,"),
        "{csv}"
    );
    python(&[
        &root()
            .join("scripts/check_linear_baseline.py")
            .display()
            .to_string(),
        &cache,
        &eval_json.display().to_string(),
    ]);
}

/// `train --eval-every`: the held-out FVU curve in metrics.jsonl (after every third step and the last), and
/// its last point, on all held-out rows, equal to eval's FVU of the saved checkpoints (which the tests above
/// and scripts/check_checkpoint.py tie to numpy and sparsify). The sweep over skip_init trains the skip
/// transcoder both ways and the other kinds once.
#[test]
fn train_held_out_curve_ends_at_eval_fvu() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = [
        "--eval-every",
        "3",
        "--eval-rows",
        "100000",
        "--sweep",
        "skip_init=zero,regression",
    ];
    let (cache, run) =
        small_cache_and_sweep_with(tmp.path(), "sae,transcoder,skip-transcoder", &extra);
    let metrics = std::fs::read_to_string(tmp.path().join("run/metrics.jsonl")).unwrap();
    let scored: Vec<u64> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["coder"].as_str().unwrap().starts_with("sae") && v["heldout_fvu"].is_f64())
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    // 3 training shards of 2048 rows in batches of 512: 12 steps, scored after steps 3, 6, 9 and 12.
    assert_eq!(scored, [2, 5, 8, 11], "{metrics}");
    let (ok, _, err) = sc(&[
        "eval",
        "--model",
        &model(),
        "--cache",
        &cache,
        "--checkpoints",
        &run,
        "--tokens",
        "128",
    ]);
    assert!(ok, "{err}");
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(tmp.path().join("run").join(f)).unwrap()).unwrap()
    };
    let (summary, report) = (read("summary.json"), read("eval.json"));
    let names: Vec<&str> = summary["coders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "sae-mlp_out-k16-l1152",
            "st-k16-l1152",
            "sst-k16-l1152",
            "sst-k16-l1152-reginit"
        ]
    );
    for c in summary["coders"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let evaluated = report["coders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"].as_str().unwrap() == name)
            .unwrap_or_else(|| panic!("{name} not in eval.json"));
        let (curve, eval) = (
            c["heldout_fvu"].as_f64().unwrap(),
            evaluated["fvu"].as_f64().unwrap(),
        );
        assert!(
            (curve - eval).abs() <= 1e-5 * eval,
            "{name}: train's held-out FVU {curve}, eval's {eval}"
        );
    }
}
