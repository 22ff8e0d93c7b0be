//! Work split over a job array, on the real model: an extraction in N parts merges to the cache a run in one
//! part writes (the same shard bytes, so byte-identical coders trained on it), with one part killed and rerun;
//! a sweep in parts trains the same coders as the whole sweep; and every misuse is refused in one line naming
//! the part, with nothing already written lost.
mod common;
use common::{model, root, sc, tutorial_text};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// 19,968 tokens of the tutorial at layers 1 and 2, on grids that do not line up: shards of 1000 rows,
/// sequences of 64, batches of 3 sequences, so parts start inside sequences and inside batches.
fn extract_args(out: &Path) -> Vec<String> {
    let mut args = ["extract", "--quiet", "--out", out.to_str().unwrap()]
        .map(String::from)
        .to_vec();
    args.extend(content_args());
    args
}

/// What [`extract_args`] gives, but where the output goes.
fn content_args() -> Vec<String> {
    [
        "--model",
        &model(),
        "--text",
        &tutorial_text(),
        "--layers",
        "1,2",
        "--ctx-len",
        "64",
        "--max-tokens",
        "20000",
        "--shard-rows",
        "1000",
        "--batch-seqs",
        "3",
    ]
    .map(String::from)
    .to_vec()
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sparsecoder")
}

/// `scripts/array_local.sh N bash scripts/slurm/SCRIPT args...`: the sbatch script run as a local Slurm array
/// of N tasks; returns its output.
fn slurm_array(n: usize, script: &str, args: &[String]) -> String {
    let o = Command::new("bash")
        .arg(root().join("scripts/array_local.sh"))
        .arg(n.to_string())
        .arg("bash")
        .arg(root().join("scripts/slurm").join(script))
        .args(args)
        .env("SPARSECODER", bin())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{script}: {out}{err}");
    out
}

fn run_ok(args: &[String]) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = sc(&args);
    assert!(ok, "sparsecoder {args:?} failed: {err}");
    out
}

/// Every shard file of the cache in `dir` (its manifest's order) as bytes, and the manifest's spec and rows.
fn shard_bytes(dir: &Path) -> (Vec<Vec<u8>>, serde_json::Value) {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let shards = m["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| std::fs::read(dir.join(s["file"].as_str().unwrap())).unwrap())
        .collect();
    let mut spec = m.clone();
    for key in ["shards", "manifest_xxh3", "parts"] {
        spec.as_object_mut().unwrap().remove(key);
    }
    (shards, spec)
}

fn train_args(cache: &Path, out: &Path) -> Vec<String> {
    let mut args = [
        "train",
        "--quiet",
        "--cache",
        cache.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    args.extend(sweep_args());
    args
}

/// What [`train_args`] gives, but the cache and where the output goes.
fn sweep_args() -> Vec<String> {
    [
        "--sweep",
        "kind=sae,st,sst",
        "--latents",
        "1152",
        "--k",
        "16",
        "--batch",
        "512",
        "--warmup",
        "2",
        "--device",
        "cpu",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn three_parts_with_one_killed_merge_to_the_one_part_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, three) = (tmp.path().join("one"), tmp.path().join("three"));
    run_ok(&extract_args(&one));

    // Part 1 alone first, killed (SIGKILL) once it has written two shards of layer 2.
    let mut args = extract_args(&three);
    args.extend(["--part".into(), "1/3".into()]);
    let mut child = Command::new(bin())
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let second = three.join("layer-2/part-1-of-3/shard-000001.bin");
    let started = Instant::now();
    while !second.exists() && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = std::fs::read_to_string(three.join("layer-2/part-1-of-3/manifest.json")).unwrap();
    assert!(
        killed.contains("\"complete\": false"),
        "part 1 was killed before it finished"
    );
    let (ok, _, err) = sc(&["merge", three.to_str().unwrap()]);
    assert!(!ok && err.contains("part-0-of-3: missing"), "{err}");
    // Parts 0 and 2 at once; the merge then refuses the half-written part 1.
    let others: Vec<_> = ["0/3", "2/3"]
        .map(|part| {
            let mut args = extract_args(&three);
            args.extend(["--part".into(), part.into()]);
            Command::new(bin()).args(&args).spawn().unwrap()
        })
        .into_iter()
        .collect();
    for mut child in others {
        assert!(child.wait().unwrap().success());
    }
    let (ok, _, err) = sc(&["merge", three.to_str().unwrap()]);
    assert!(
        !ok && err.contains("part-1-of-3: not complete")
            && err.contains("run extract --part 1/3 again"),
        "{err}"
    );

    // Then the whole array, as the Slurm script runs it: parts 0 and 2 have nothing to do, part 1 resumes where
    // it was killed.
    let mut args = vec![three.display().to_string()];
    args.extend(content_args());
    slurm_array(3, "extract_array.sbatch", &args);
    let merged = run_ok(&["merge".into(), three.display().to_string()]);
    assert!(
        merged.contains("from 3 parts (layer 1)") && merged.contains("from 3 parts (layer 2)"),
        "{merged}"
    );

    for layer in ["layer-1", "layer-2"] {
        let (a, spec_a) = shard_bytes(&one.join(layer));
        let (b, spec_b) = shard_bytes(&three.join(layer));
        assert_eq!(a.len(), 20, "19,968 rows in shards of 1000");
        assert_eq!(spec_a, spec_b, "{layer}: same spec and rows");
        assert!(
            a == b,
            "{layer}: every shard byte-identical to the one-part run's"
        );
        let (ok, out, err) = sc(&["validate", three.join(layer).to_str().unwrap()]);
        assert!(ok, "{out}{err}");
    }

    // The same rows in the same order: training on either gives the same coders, byte for byte.
    for (cache, out) in [(&one, "run-one"), (&three, "run-three")] {
        run_ok(&train_args(&cache.join("layer-2"), &tmp.path().join(out)));
    }
    for coder in ["sae-mlp_out-k16-l1152", "st-k16-l1152", "sst-k16-l1152"] {
        let weights = |run: &str| {
            std::fs::read(tmp.path().join(run).join(coder).join("sae.safetensors")).unwrap()
        };
        assert!(
            weights("run-one") == weights("run-three"),
            "{coder}: same weights"
        );
    }
}

#[test]
fn a_sweep_in_parts_trains_the_whole_sweeps_coders() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    common::extract_small_cache(cache.to_str().unwrap(), 0);
    let whole = tmp.path().join("whole");
    run_ok(&train_args(&cache, &whole));
    let split = tmp.path().join("split");
    // The Slurm sweep script, as a local array of 2 (it adds --cache, --out, --part auto and --quiet).
    let mut args = vec![cache.display().to_string(), split.display().to_string()];
    args.extend(sweep_args());
    let out = slurm_array(2, "sweep_array.sbatch", &args);
    let again = slurm_array(2, "sweep_array.sbatch", &args);
    assert_eq!(
        again.matches("nothing to do").count(),
        2,
        "a rerun array does nothing: {again}"
    );
    // Every second coder: part 0 trains the SAE and the skip transcoder, part 1 the transcoder.
    assert!(
        out.contains("[task 0] trained 2 coder(s)") && out.contains("[task 1] trained 1 coder(s)"),
        "{out}"
    );
    for coder in ["sae-mlp_out-k16-l1152", "st-k16-l1152", "sst-k16-l1152"] {
        let weights = |run: &Path| std::fs::read(run.join(coder).join("sae.safetensors")).unwrap();
        assert!(weights(&whole) == weights(&split), "{coder}: same weights");
    }
    for part in ["part-0-of-2", "part-1-of-2"] {
        for file in ["summary.json", "metrics.jsonl", "train_state.json"] {
            assert!(split.join(part).join(file).exists(), "{part}/{file}");
        }
    }
    // eval takes the folder as before: all three coders.
    let (ok, out, err) = sc(&[
        "eval",
        "--model",
        &model(),
        "--cache",
        cache.to_str().unwrap(),
        "--checkpoints",
        split.to_str().unwrap(),
        "--tokens",
        "128",
    ]);
    assert!(ok, "{err}");
    for coder in ["sae-mlp_out-k16-l1152", "st-k16-l1152", "sst-k16-l1152"] {
        assert!(out.contains(coder), "{coder} evaluated: {out}");
    }

    // A split into another number of parts in the same folder, and a part with no coder, are refused.
    let mut other = train_args(&cache, &split);
    other.extend(["--part".into(), "0/3".into()]);
    let args: Vec<&str> = other.iter().map(String::as_str).collect();
    let (ok, _, err) = sc(&args);
    assert!(
        !ok && err.contains("part-0-of-2, a part of a split into 2 parts"),
        "{err}"
    );
    let mut empty = train_args(&cache, &tmp.path().join("empty"));
    empty.extend(["--part".into(), "3/4".into()]);
    let args: Vec<&str> = empty.iter().map(String::as_str).collect();
    let (ok, _, err) = sc(&args);
    assert!(
        !ok && err.contains("the sweep has 3 coder(s), none for this part"),
        "{err}"
    );
}

/// A small extraction (4096 tokens of layer 1 in 4 shards of 1024 rows) into `out`, with `extra` arguments.
fn small(out: &Path, extra: &[&str]) -> (bool, String, String) {
    let text = tutorial_text();
    let model = model();
    let mut args = vec![
        "extract",
        "--model",
        &model,
        "--text",
        &text,
        "--layers",
        "1",
        "--ctx-len",
        "64",
        "--max-tokens",
        "4096",
        "--shard-rows",
        "1024",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    sc(&args)
}

fn refused(what: &str, (ok, out, err): (bool, String, String), says: &str) {
    assert!(!ok, "{what}: succeeded: {out}");
    assert_eq!(err.trim().lines().count(), 1, "{what}: one line: {err}");
    assert!(err.contains(says), "{what}: expected {says:?} in {err}");
}

#[test]
fn misuse_of_parts_is_refused_naming_the_part() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = out.to_str().unwrap();
    refused(
        "--part 3/3",
        small(&out, &["--part", "3/3"]),
        "parts are numbered 0 to 2",
    );
    refused(
        "--part 0/0",
        small(&out, &["--part", "0/0"]),
        "at least 1, found 0",
    );
    refused("--part x", small(&out, &["--part", "1of2"]), "expected I/N");
    refused(
        "--parts without auto",
        small(&out, &["--part", "0/2", "--parts", "2"]),
        "--parts goes with --part auto",
    );
    refused(
        "more parts than shards",
        small(&out, &["--part", "0/5"]),
        "use at most 4 parts",
    );
    let auto = |vars: &[(&str, &str)]| {
        let text = tutorial_text();
        let model = model();
        let o = Command::new(bin())
            .args([
                "extract", "--model", &model, "--text", &text, "--layers", "1", "--quiet", "--out",
                o, "--part", "auto",
            ])
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("JOB_COMPLETION_INDEX")
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    refused(
        "auto without variables",
        auto(&[]),
        "neither SLURM_ARRAY_TASK_ID",
    );
    refused(
        "auto, id without count",
        auto(&[("SLURM_ARRAY_TASK_ID", "1")]),
        "SLURM_ARRAY_TASK_COUNT is not",
    );
    refused(
        "auto, an array with a step",
        auto(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "4"),
        ]),
        "not one task per index",
    );
    refused(
        "auto, kubernetes without --parts",
        auto(&[("JOB_COMPLETION_INDEX", "0")]),
        "add --parts N",
    );
    assert!(
        !out.exists() || std::fs::read_dir(&out).unwrap().count() == 0,
        "nothing written by a refused run"
    );

    // Parts 0 and 1 of 2 done, part 0 of another extraction (another seed) beside them elsewhere.
    for part in ["0/2", "1/2"] {
        let (ok, _, err) = small(&out, &["--part", part]);
        assert!(ok, "{err}");
    }
    refused(
        "another split",
        small(&out, &["--part", "0/3"]),
        "part-0-of-2, a part of a split into 2 parts",
    );
    refused("one-part run over parts", small(&out, &[]), "is not empty");
    let part1 = out.join("part-1-of-2");
    let kept = tmp.path().join("kept-part-1");
    std::fs::rename(&part1, &kept).unwrap();
    refused(
        "merge, a part missing",
        sc(&["merge", o]),
        "part-1-of-2: missing",
    );
    let other = tmp.path().join("other");
    let (ok, _, err) = small(&other, &["--part", "1/2", "--seed", "7"]);
    assert!(ok, "{err}");
    std::fs::rename(other.join("part-1-of-2"), &part1).unwrap();
    refused(
        "merge, a part of another extraction",
        sc(&["merge", o]),
        "part-1-of-2: made by another extraction than part 0 (extraction_args",
    );
    std::fs::remove_dir_all(&part1).unwrap();
    std::fs::rename(&kept, &part1).unwrap();
    // A changed byte in a part's manifest, and a part renamed into another's place.
    let manifest = part1.join("manifest.json");
    let good = std::fs::read(&manifest).unwrap();
    let mut bad = good.clone();
    let at = bad.windows(8).position(|w| w == b"\"rows\": ").unwrap() + 8;
    bad[at] = if bad[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&manifest, &bad).unwrap();
    refused(
        "merge, an edited part manifest",
        sc(&["merge", o]),
        "part-1-of-2/manifest.json: manifest_xxh3",
    );
    std::fs::write(&manifest, &good).unwrap();
    let shard = part1.join("shard-000000.bin");
    let whole = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &whole[..whole.len() / 2]).unwrap();
    refused(
        "merge, a truncated shard in a part",
        sc(&["merge", o]),
        "part-1-of-2/shard-000000.bin: file size (bytes, from the manifest)",
    );
    std::fs::write(&shard, &whole).unwrap();
    // A part read as a cache on its own, before the merge.
    refused(
        "train on a part",
        sc(&[
            "train",
            "--cache",
            part1.to_str().unwrap(),
            "--out",
            tmp.path().join("t").to_str().unwrap(),
            "--quiet",
            "--device",
            "cpu",
        ]),
        "is part 1 of 2 of an extraction in parts",
    );
    // Nothing lost: the parts still merge, and the merged cache validates.
    let (ok, merged, err) = sc(&["merge", o]);
    assert!(
        ok && merged.contains("4096 rows in 4 shards from 2 parts"),
        "{merged}{err}"
    );
    let (ok, v, err) = sc(&["validate", o]);
    assert!(ok, "{v}{err}");
    refused(
        "compress a merged cache",
        sc(&["compress", o]),
        "convert each part-I-of-2 folder",
    );
}
