//! `export` and `import` on the real model's coders: the exports read back by a reader written from SAELens's
//! and circuit-tracer's source (scripts/check_exports.py, numpy only: the tools themselves need torch, see
//! scripts/check_exports.sh), round trips that give back the same tensors and the same `eval`, and the
//! refusals.

mod common;
use common::{model, python, sc, small_cache_and_sweep};
use std::path::{Path, PathBuf};
use trainer::checkpoint::load_coder;

/// A cache of layers 0 and 1 and, for each, an SAE and a skip transcoder: `dir/cache/layer-L`, `dir/runL`.
fn two_layers(dir: &Path) {
    common::extract_small_cache_of_layers(&dir.join("cache").display().to_string(), 0, "0,1");
    for layer in 0..2 {
        let (cache, run) = (
            dir.join(format!("cache/layer-{layer}")),
            dir.join(format!("run{layer}")),
        );
        common::train_small_sweep(
            &cache.display().to_string(),
            "sae,sst",
            &run.display().to_string(),
            &[],
        );
    }
}

fn check_exports(format: &str, dirs: &[&Path]) {
    let script = common::root()
        .join("scripts/check_exports.py")
        .display()
        .to_string();
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let mut args = vec![script.as_str(), format];
    args.extend(dirs.iter().map(String::as_str));
    let text = python(&args);
    assert!(text.lines().filter(|l| l.starts_with("ok")).count() >= dirs.len());
}

/// The coders in `a` and `b` hold the same kind, sizes and tensors, bit for bit.
fn same_coder(a: &Path, b: &Path) {
    let ((ca, ma), (cb, mb)) = (load_coder(a).unwrap(), load_coder(b).unwrap());
    assert_eq!(ca.cfg, cb.cfg);
    assert_eq!((ma.layer, ma.sae_on), (mb.layer, mb.sae_on));
    assert!(mb.imported.is_some() && ma.imported.is_none());
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&ca.w_enc), bits(&cb.w_enc));
    assert_eq!(bits(&ca.b_enc), bits(&cb.b_enc));
    assert_eq!(bits(&ca.w_dec), bits(&cb.w_dec));
    assert_eq!(bits(&ca.b_dec), bits(&cb.b_dec));
    assert_eq!(
        ca.w_skip.as_deref().map(bits),
        cb.w_skip.as_deref().map(bits)
    );
}

fn eval_rows(cache: &Path, coders: &[&Path], out: &Path) -> Vec<serde_json::Value> {
    let mut args = vec![
        "eval".to_string(),
        "--model".into(),
        model(),
        "--cache".into(),
        cache.display().to_string(),
        "--tokens".into(),
        "1024".into(),
        "--out".into(),
        out.display().to_string(),
        "--checkpoints".into(),
    ];
    args.extend(coders.iter().map(|c| c.display().to_string()));
    let (ok, stdout, err) = sc(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{err}");
    assert!(
        stdout.contains("* "),
        "the table marks the imported coder:\n{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("eval.json")).unwrap()).unwrap();
    json["coders"].as_array().unwrap().clone()
}

#[test]
fn exports_read_by_the_tools_formulas_and_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    two_layers(dir);
    let p = |s: &str| dir.join(s).display().to_string();

    // SAELens: both layers' SAEs, one folder per layer.
    let (ok, _, err) = sc(&[
        "export",
        "--format",
        "saelens",
        &p("run0"),
        &p("run1"),
        "--out",
        &p("saelens"),
        "--model-name",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
    ]);
    // The sweeps hold skip transcoders too, which SAELens cannot carry: refused, naming the coder.
    assert!(
        !ok && err.contains("sst-k16-l1152: config.kind is sst") && err.lines().count() == 1,
        "{err}"
    );
    let sae = |l: u32| dir.join(format!("run{l}/sae-mlp_out-k16-l1152"));
    let (ok, _, err) = sc(&[
        "export",
        "--format",
        "saelens",
        &sae(0).display().to_string(),
        &sae(1).display().to_string(),
        "--out",
        &p("saelens2"),
    ]);
    assert!(ok, "{err}");
    let exported = |l: u32| dir.join(format!("saelens2/layer_{l}/sae-mlp_out-k16-l1152"));
    check_exports("saelens", &[&exported(0), &exported(1)]);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(exported(1).join("cfg.json")).unwrap()).unwrap();
    assert_eq!(cfg["metadata"]["hook_name"], "blocks.1.hook_mlp_out");
    assert_eq!(
        cfg["metadata"]["sparsecoder"]["checkpoint_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );

    let (ok, _, err) = sc(&[
        "import",
        "--format",
        "saelens",
        &exported(1).display().to_string(),
        "--out",
        &p("back-sae"),
    ]);
    assert!(ok, "{err}");
    same_coder(&sae(1), &dir.join("back-sae"));

    // circuit-tracer: the two layers' skip transcoders as one set.
    let sst = |l: u32| {
        dir.join(format!("run{l}/sst-k16-l1152"))
            .display()
            .to_string()
    };
    let (ok, _, err) = sc(&[
        "export",
        "--format",
        "circuit-tracer",
        &sst(1),
        &sst(0),
        "--out",
        &p("ct"),
    ]);
    assert!(ok, "{err}");
    check_exports("circuit-tracer", &[&dir.join("ct")]);
    let (ok, _, err) = sc(&[
        "import",
        "--format",
        "circuit-tracer",
        &p("ct"),
        "--out",
        &p("back-ct"),
    ]);
    assert!(ok, "{err}");
    for l in 0..2 {
        same_coder(Path::new(&sst(l)), &dir.join(format!("back-ct/layer_{l}")));
    }

    circuit_tracer_refusals(dir);
    feature_files(dir);

    // delphi: both layers' skip transcoders, one hookpoint each, against the coders recomputed in numpy.
    let (ok, out, err) = sc(&[
        "export",
        "--format",
        "delphi",
        &sst(0),
        &sst(1),
        "--out",
        &p("delphi"),
        "--splits",
        "3",
    ]);
    assert!(ok && out.contains("128 sequences"), "{out}{err}");
    for l in 0..2 {
        let hook = dir.join(format!("delphi/latents/layers.{l}.mlp"));
        assert_eq!(
            std::fs::read_dir(&hook).unwrap().count(),
            4,
            "3 splits and config.json"
        );
        let script = common::root().join("scripts/check_exports.py");
        let (cache, coder) = (p(&format!("cache/layer-{l}")), sst(l));
        python(&[
            &script.display().to_string(),
            "delphi",
            &hook.display().to_string(),
            "--cache",
            &cache,
            "--coder",
            &coder,
        ]);
    }
    let (ok, _, err) = sc(&[
        "export",
        "--format",
        "delphi",
        &sst(0),
        &sae(0).display().to_string(),
        "--out",
        &p("delphi2"),
    ]);
    assert!(!ok && err.contains("a second coder of layer 0"), "{err}");

    // The round trip evaluates as the original: every number of eval.json equal.
    let cache1 = dir.join("cache/layer-1");
    let rows = eval_rows(
        &cache1,
        &[
            &sae(1),
            &dir.join("back-sae"),
            Path::new(&sst(1)),
            &dir.join("back-ct/layer_1"),
        ],
        &dir.join("ev"),
    );
    for pair in rows.chunks(2) {
        let strip = |v: &serde_json::Value| {
            let mut v = v.clone();
            let o = v.as_object_mut().unwrap();
            o.remove("name");
            o.remove("imported");
            v
        };
        assert!(pair[1]["imported"].is_object() && pair[0].get("imported").is_none());
        assert_eq!(strip(&pair[0]), strip(&pair[1]));
    }
}

#[test]
fn exports_and_imports_refuse_what_the_target_cannot_express() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    small_cache_and_sweep(dir, "sae,st");
    let p = |s: &str| dir.join(s).display().to_string();
    let refused = |args: &[&str], words: &str| {
        let (ok, _, err) = sc(args);
        assert!(
            !ok && err.contains(words) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    };
    // An SAE as a transcoder set; a set whose layers do not start at 0 (the small cache is layer 1).
    refused(
        &[
            "export",
            "--format",
            "circuit-tracer",
            &p("run/sae-mlp_out-k16-l1152"),
            "--out",
            &p("x1"),
        ],
        "config.kind is sae",
    );
    refused(
        &[
            "export",
            "--format",
            "circuit-tracer",
            &p("run/st-k16-l1152"),
            "--out",
            &p("x2"),
        ],
        "layer 1 where layer 0 was expected",
    );
    // A non-empty output folder.
    refused(
        &[
            "export",
            "--format",
            "saelens",
            &p("run/sae-mlp_out-k16-l1152"),
            "--out",
            &p("run"),
        ],
        "the output folder is not empty",
    );

    // SAELens folders: an unknown architecture, a hook we do not read.
    let (ok, _, err) = sc(&[
        "export",
        "--format",
        "saelens",
        &p("run/sae-mlp_out-k16-l1152"),
        "--out",
        &p("sl"),
    ]);
    assert!(ok, "{err}");
    let folder = dir.join("sl/layer_1/sae-mlp_out-k16-l1152");
    let cfg_path = folder.join("cfg.json");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let edit = |from: &str, to: &str| {
        assert!(cfg.contains(from));
        std::fs::write(&cfg_path, cfg.replace(from, to)).unwrap();
    };
    let import = |out: &str| {
        vec![
            "import".to_string(),
            "--format".into(),
            "saelens".into(),
            folder.display().to_string(),
            "--out".into(),
            p(out),
        ]
    };
    let run = |args: Vec<String>, words: &str| {
        refused(&args.iter().map(String::as_str).collect::<Vec<_>>(), words)
    };
    edit("\"topk\"", "\"gated_v2\"");
    run(
        import("i1"),
        "architecture is \"gated_v2\", expected \"topk\"",
    );
    edit("blocks.1.hook_mlp_out", "blocks.1.hook_resid_post");
    run(
        import("i2"),
        "metadata.hook_name is \"blocks.1.hook_resid_post\"",
    );
    std::fs::write(&cfg_path, &cfg).unwrap();

    // A folder without config.yaml as a circuit-tracer set.
    let (ok, _, err) = sc(&[
        "import",
        "--format",
        "circuit-tracer",
        &p("sl"),
        "--out",
        &p("i3"),
    ]);
    assert!(!ok && err.contains("config.yaml: cannot read"), "{err}");
}

/// Imports of the exported set `dir/ct`, edited: no k (refused, then given), a negative JumpReLU threshold,
/// no layer files.
fn circuit_tracer_refusals(dir: &Path) {
    let (ct, bad) = (dir.join("ct"), dir.join("ct-bad"));
    std::fs::create_dir_all(&bad).unwrap();
    for f in ["config.yaml", "layer_0.safetensors", "layer_1.safetensors"] {
        std::fs::copy(ct.join(f), bad.join(f)).unwrap();
    }
    let config = std::fs::read_to_string(bad.join("config.yaml")).unwrap();
    assert!(config.contains("\nk: 16\n"));
    std::fs::write(bad.join("config.yaml"), config.replace("\nk: 16\n", "\n")).unwrap();
    let import = |out: &str, extra: &[&str]| {
        let (bad, out) = (
            bad.display().to_string(),
            dir.join(out).display().to_string(),
        );
        let mut args = vec!["import", "--format", "circuit-tracer", &bad, "--out", &out];
        args.extend_from_slice(extra);
        sc(&args)
    };
    let (ok, _, err) = import("c1", &[]);
    assert!(
        !ok && err.contains("config.yaml: k is missing") && err.lines().count() == 1,
        "{err}"
    );
    let (ok, _, err) = import("c2", &["--k", "16"]);
    assert!(ok, "{err}");
    // A layer with a negative JumpReLU threshold (added with the safetensors package): refused.
    let layer1 = bad.join("layer_1.safetensors").display().to_string();
    python(&["-c", "import sys, numpy as np; from safetensors.numpy import load_file, save_file; \
        t = load_file(sys.argv[1]); t['activation_function.threshold'] = np.full(1152, -1, np.float32); \
        save_file(t, sys.argv[1])", &layer1]);
    let (ok, _, err) = import("c3", &["--k", "16"]);
    assert!(
        !ok && err.contains("layer_1.safetensors: threshold of latent 0 is -1"),
        "{err}"
    );
    for f in ["layer_0.safetensors", "layer_1.safetensors"] {
        std::fs::remove_file(bad.join(f)).unwrap();
    }
    let (ok, _, err) = import("c4", &["--k", "16"]);
    assert!(!ok && err.contains("holds no layer_0.safetensors"), "{err}");
}

#[test]
fn imports_of_published_layouts_compute_what_their_layouts_define() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    two_layers(dir);
    let p = |s: &str| dir.join(s).display().to_string();
    let script = |s: &str| common::root().join("scripts").join(s).display().to_string();
    // Real rows of layer 1's held-out shard calibrate the fixtures' thresholds.
    let shard = p("cache/layer-1/shard-000003.bin");
    python(&[&script("read_shard.py"), &shard, "mlp_in", &p("in.npy")]);
    python(&[&script("read_shard.py"), &shard, "mlp_out", &p("out.npy")]);
    python(&[
        &script("make_scope_fixtures.py"),
        &p("in.npy"),
        &p("out.npy"),
        &p("fx"),
    ]);
    let cases = [
        (
            "gemma-scope",
            "gemma-scope",
            "gemma-scope-2b-pt-transcoders/layer_1/width_1k/average_l0_35/params.npz",
        ),
        (
            "gemma-scope",
            "gemma-scope",
            "gemma-scope-2b-pt-mlp/layer_1/width_1k/average_l0_35/params.npz",
        ),
        (
            "gemma-scope",
            "gemma-scope-2",
            "gemma-scope-2-pt/transcoder_all/layer_1_width_1k_l0_small_affine/params.safetensors",
        ),
        ("saelens", "saelens", "saelens-jumprelu-skip-transcoder"),
        (
            "llama-scope",
            "llama-scope",
            "llama-scope/Llama3_1-8B-Base-L1M-8x",
        ),
        (
            "llama-scope",
            "llama-scope",
            "llama-scope/Llama3_1-8B-Base-L1TC-8x",
        ),
    ];
    let mut imported = Vec::new();
    for (i, (format, kind, file)) in cases.iter().enumerate() {
        let (source, coder, export) = (
            p(&format!("fx/{file}")),
            p(&format!("imp{i}")),
            p(&format!("exp{i}")),
        );
        let (ok, _, err) = sc(&["import", "--format", format, &source, "--out", &coder]);
        assert!(ok, "{file}: {err}");
        // Our coder's latents and output on held-out rows come with an export; the original file, read by
        // its layout's formulas, must give the same there. The export itself is read back by SAELens's.
        let (ok, _, err) = sc(&[
            "export",
            "--format",
            "saelens",
            &coder,
            "--cache",
            &p("cache"),
            "--out",
            &export,
        ]);
        assert!(ok, "{file}: {err}");
        let exported = format!("{export}/layer_1/imp{i}");
        python(&[
            &script("check_exports.py"),
            "import",
            &source,
            &exported,
            "--kind",
            kind,
            "--layer",
            "1",
        ]);
        python(&[&script("check_exports.py"), "saelens", &exported]);
        imported.push(dir.join(format!("imp{i}")));
    }
    // circuit-tracer's JumpReLU set: both layers, exported again as a set.
    let (ok, _, err) = sc(&[
        "import",
        "--format",
        "circuit-tracer",
        &p("fx/circuit-tracer-jumprelu"),
        "--out",
        &p("ct"),
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = sc(&[
        "export",
        "--format",
        "circuit-tracer",
        &p("ct"),
        "--cache",
        &p("cache"),
        "--out",
        &p("ct-exp"),
    ]);
    assert!(ok, "{err}");
    for l in ["0", "1"] {
        python(&[
            &script("check_exports.py"),
            "import",
            &p("fx/circuit-tracer-jumprelu"),
            &p("ct-exp"),
            "--kind",
            "circuit-tracer",
            "--layer",
            l,
        ]);
    }
    python(&[&script("check_exports.py"), "circuit-tracer", &p("ct-exp")]);

    // eval takes them, marking each as imported.
    let refs: Vec<&Path> = imported.iter().map(PathBuf::as_path).collect();
    let rows = eval_rows(&dir.join("cache/layer-1"), &refs, &dir.join("ev"));
    assert_eq!(rows.len(), 6);
    assert!(rows
        .iter()
        .all(|r| r["activation"] == "jumprelu" && r["imported"]["sha256"].is_string()));

    // A JumpReLU set with a TopK coder; a negative threshold.
    let (ok, _, err) = sc(&[
        "export",
        "--format",
        "circuit-tracer",
        &p("ct/layer_0"),
        &p("run1/sst-k16-l1152"),
        "--cache",
        &p("cache"),
        "--out",
        &p("mixed"),
    ]);
    assert!(
        !ok && err.contains("config.activation is TopK, but") && err.lines().count() == 1,
        "{err}"
    );
    let file = p(
        "fx/gemma-scope-2-pt/transcoder_all/layer_1_width_1k_l0_small_affine/params.safetensors",
    );
    python(&[
        "-c",
        "import sys, numpy as np; from safetensors.numpy import load_file, save_file; \
        t = load_file(sys.argv[1]); t['threshold'][7] = -0.5; save_file(t, sys.argv[1])",
        &file,
    ]);
    let (ok, _, err) = sc(&[
        "import",
        "--format",
        "gemma-scope",
        &file,
        "--out",
        &p("neg"),
    ]);
    assert!(
        !ok && err.contains("threshold of latent 7 is -0.5"),
        "{err}"
    );
}

/// The set's feature files from interp's records of layer 1's coder (2 latents, top-tokens explanations),
/// read as circuit-tracer's frontend reads them.
fn feature_files(dir: &Path) {
    let p = |s: &str| dir.join(s).display().to_string();
    let (ok, _, err) = sc(&[
        "interp",
        "--model",
        &model(),
        "--cache",
        &p("cache/layer-1"),
        "--checkpoints",
        &p("run1/sst-k16-l1152"),
        "--latents",
        "2",
        "--explainer",
        "top-tokens",
        "--score-per-quantile",
        "1",
        "--non-activating",
        "2",
        "--no-calibration",
        "--out",
        &p("interp1"),
        "--quiet",
    ]);
    assert!(ok, "{err}");
    let records = format!("1={}", p("interp1/sst-k16-l1152/latents.jsonl"));
    let (ok, _, err) = sc(&[
        "export",
        "--format",
        "circuit-tracer",
        &p("run0/sst-k16-l1152"),
        &p("run1/sst-k16-l1152"),
        "--out",
        &p("ct-features"),
        "--features",
        &records,
    ]);
    assert!(ok, "{err}");
    python(&[
        &common::root()
            .join("scripts/check_exports.py")
            .display()
            .to_string(),
        "features",
        &p("ct-features"),
        "--records",
        &records,
    ]);
    let (ok, _, err) = sc(&[
        "export",
        "--format",
        "saelens",
        &p("run1/sae-mlp_out-k16-l1152"),
        "--out",
        &p("x"),
        "--features",
        &records,
    ]);
    assert!(
        !ok && err.contains("--features: feature files are circuit-tracer's"),
        "{err}"
    );
}
