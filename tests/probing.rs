//! The logistic-regression probe of sparse probing (`evals::logistic`) against scikit-learn on the same real
//! features: activations of the embedded default's cache, labels from its next-layer output.

mod common;
use cache_format::{Cache, Side};
use std::io::Write;

/// A 2-D little-endian f32 .npy file (numpy's format, version 1).
fn write_npy(path: &std::path::Path, values: &[f32], rows: usize, cols: usize) {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(b"\x93NUMPY\x01\x00").unwrap();
    f.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    f.write_all(&bytes).unwrap();
}

#[test]
fn logistic_probe_equals_scikit_learn() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("cache");
    common::extract_small_cache(&cache_dir.display().to_string(), 0);
    let cache = Cache::open(&cache_dir).unwrap();
    let shard = cache.open_shard(0).unwrap();
    let rows = 2000;
    let d = cache.d_in();
    let (mut x_in, mut x_out) = (vec![0f32; rows * d], vec![0f32; rows * d]);
    shard.read_rows_f32(Side::MlpIn.section(), 0, &mut x_in);
    shard.read_rows_f32(Side::MlpOut.section(), 0, &mut x_out);
    // Label: the sign of one MLP output channel; features: the first `cols` MLP input channels.
    let y: Vec<bool> = (0..rows).map(|r| x_out[r * d + 3] > 0.0).collect();
    for (cols, c, balanced) in [(5, 1.0, false), (5, 0.1, true), (64, 1.0, true)] {
        let x: Vec<f32> = (0..rows)
            .flat_map(|r| x_in[r * d..r * d + cols].to_vec())
            .collect();
        let probe = evals::logistic::fit(&x, cols, &y, c, balanced);
        let (xp, yp) = (tmp.path().join("x.npy"), tmp.path().join("y.npy"));
        write_npy(&xp, &x, rows, cols);
        write_npy(
            &yp,
            &y.iter().map(|&t| t as u8 as f32).collect::<Vec<_>>(),
            rows,
            1,
        );
        let script = common::root().join("scripts/check_logistic.py");
        let stdout = common::python(&[
            &script.display().to_string(),
            &xp.display().to_string(),
            &yp.display().to_string(),
            &c.to_string(),
            if balanced { "balanced" } else { "none" },
        ]);
        let theirs: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let w: Vec<f64> = theirs["w"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let b = theirs["b"].as_f64().unwrap();
        let scale = w.iter().chain([&b]).fold(0f64, |m, v| m.max(v.abs()));
        let err = probe
            .w
            .iter()
            .zip(&w)
            .map(|(a, b)| (a - b).abs())
            .chain([(probe.b - b).abs()])
            .fold(0f64, f64::max)
            / scale;
        let acc = probe.accuracy(&x, &y);
        println!(
            "{cols} features, C {c}, balanced {balanced}: coefficients rel err {err:.2e} vs scikit-learn {}; \
             accuracy ours {acc:.4}, theirs {}",
            theirs["sklearn"], theirs["accuracy"]
        );
        assert!(
            err < 1e-6,
            "coefficients differ from scikit-learn's by {err:.2e}"
        );
        assert!((acc - theirs["accuracy"].as_f64().unwrap()).abs() < 1e-9);
    }
}

/// A user's probing task: paragraphs of two tutorial chapters, labelled by chapter.
fn write_chapter_task(path: &std::path::Path) {
    let mut f = std::fs::File::create(path).unwrap();
    for (chapter, label) in [("classes.rst.txt", "classes"), ("errors.rst.txt", "errors")] {
        let text =
            std::fs::read_to_string(std::path::Path::new(&common::tutorial_text()).join(chapter))
                .unwrap();
        for para in text.split("\n\n").filter(|p| p.len() >= 80) {
            let line = serde_json::json!({"text": para, "label": label});
            writeln!(f, "{line}").unwrap();
        }
    }
}

/// `eval --probing`: a built-in task and a user's file on the small sweep, the table, eval.json, eval.csv and
/// probing.json; and bad input refused with one line each.
#[test]
fn eval_probing_end_to_end() {
    let model = common::model();
    let tmp = tempfile::tempdir().unwrap();
    let (cache, run) = common::small_cache_and_sweep(tmp.path(), "sae,skip-transcoder");
    let user = tmp.path().join("chapters.jsonl");
    write_chapter_task(&user);
    let corpus = common::root().join("data/python-3.11-docs");
    let (corpus, user) = (corpus.display().to_string(), user.display().to_string());
    let out = tmp.path().join("eval").display().to_string();
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--model",
            &model,
            "--cache",
            &cache,
            "--checkpoints",
            &run,
            "--tokens",
            "128",
            "--out",
            &out,
            "--probing-corpus",
            &corpus,
        ];
        args.extend_from_slice(extra);
        common::sc(&args)
    };
    let (ok, stdout, err) = eval(&[
        "--probing",
        "code-vs-prose",
        &user,
        "--probing-train",
        "30",
        "--probing-test",
        "15",
    ]);
    assert!(ok, "{err}");
    println!("{stdout}");
    assert!(stdout.contains("sparse probing: 2 task(s)"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("eval/eval.json")).unwrap()).unwrap();
    let summary = &report["probing"];
    assert_eq!(summary["tasks"][1]["name"], "chapters");
    assert_eq!(
        summary["tasks"][1]["classes"],
        serde_json::json!(["classes", "errors"])
    );
    let baselines = summary["baselines"].as_array().unwrap();
    assert_eq!(baselines.len(), 2, "raw mlp_in and raw mlp_out");
    for s in baselines.iter().chain(
        report["coders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["sparse_probing"]),
    ) {
        let acc: Vec<f64> = s["accuracy"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_f64().unwrap())
            .collect();
        assert_eq!(acc.len(), 3, "{s}");
        // Code against prose at k = 5: well above chance (0.5, the subtasks are balanced).
        let at5 = s["tasks"]["code-vs-prose"][2].as_f64().unwrap();
        assert!(
            at5 >= 0.65,
            "{}: code-vs-prose accuracy at k = 5 is {at5}",
            s["name"]
        );
    }
    let csv = std::fs::read_to_string(tmp.path().join("eval/eval.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let at = header.iter().position(|&c| c == "probe_k1").unwrap();
    assert_eq!(
        &header[at..at + 3],
        ["probe_k1", "probe_k2", "probe_k5"],
        "{csv}"
    );
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert!(row[at..at + 3].iter().all(|c| !c.is_empty()), "{csv}");
    let detail: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("eval/probing.json")).unwrap())
            .unwrap();
    let task = &detail["tasks"][1];
    assert_eq!(task["texts"].as_array().unwrap().len(), 2 * 45);
    let sub = &task["subtasks"][0];
    let positives = sub["train_labels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l.as_bool().unwrap())
        .count();
    assert_eq!(
        (positives, sub["train"].as_array().unwrap().len()),
        (30, 60),
        "balanced"
    );
    assert!(task["token_ids"][0].as_array().unwrap().len() <= 128);

    // Bad input: each a one-line error naming what is wrong, before the model runs.
    let one_class = tmp.path().join("one.jsonl");
    std::fs::write(
        &one_class,
        "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": 1}\n",
    )
    .unwrap();
    let no_label = tmp.path().join("nolabel.jsonl");
    std::fs::write(&no_label, "{\"text\": \"a\", \"class\": 1}\n").unwrap();
    let cases = [
        (
            vec!["--probing", no_label.to_str().unwrap()],
            "no label field \"label\"",
        ),
        (
            vec!["--probing", one_class.to_str().unwrap()],
            "one class only",
        ),
        (
            vec!["--probing", &user, "--probing-train", "5000"],
            "expected at least 5050",
        ),
        (
            vec!["--probing", "code-vs-prose", "--probing-test", "0"],
            "--probing-test must be at least 1",
        ),
    ];
    for (args, want) in cases {
        let (ok, _, err) = eval(&args);
        assert!(
            !ok && err.contains(want) && err.trim().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    // A coder trained on another layer than the cache's.
    let two = tmp.path().join("two");
    common::extract_small_cache_of_layers(&two.display().to_string(), 0, "0,1");
    let (ok, _, err) = common::sc(&[
        "eval",
        "--model",
        &model,
        "--cache",
        &two.join("layer-0").display().to_string(),
        "--checkpoints",
        &run,
        "--probing",
        "code-vs-prose",
    ]);
    assert!(
        !ok && err.contains("trained on layer 1") && err.trim().lines().count() == 1,
        "{err}"
    );
}
