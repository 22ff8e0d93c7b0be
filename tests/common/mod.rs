//! What the end-to-end tests on the real model share: running the binary, and a small cache of the embedded
//! default (layer 1, 8192 tokens of the tutorial, sequences of 64) with a small sweep trained on it.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `sparsecoder args`: (success, stdout, stderr).
pub fn sc(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_sparsecoder"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The embedded default model's path (fetched by scripts/fetch_default.sh).
pub fn model() -> String {
    let model = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.exists(),
        "{} is missing: run scripts/fetch_default.sh first",
        model.display()
    );
    model.display().to_string()
}

/// The tutorial folder of the embedded corpus (fetched by scripts/fetch_default.sh).
pub fn tutorial_text() -> String {
    root()
        .join("data/python-3.11-docs/tutorial")
        .display()
        .to_string()
}

/// Extracts the small cache (layer 1 of the tutorial texts, 8192 tokens in shards of 2048) into `cache`, its
/// sequences shuffled with `seed`.
pub fn extract_small_cache(cache: &str, seed: u64) {
    extract_small_cache_of_layers(cache, seed, "1");
}

/// [`extract_small_cache`] of the comma-separated `layers` (several write `cache/layer-L`).
pub fn extract_small_cache_of_layers(cache: &str, seed: u64, layers: &str) {
    let text = tutorial_text();
    let seed = seed.to_string();
    let (ok, _, err) = sc(&[
        "extract",
        "--model",
        &model(),
        "--text",
        &text,
        "--layers",
        layers,
        "--ctx-len",
        "64",
        "--max-tokens",
        "8192",
        "--shard-rows",
        "2048",
        "--seed",
        &seed,
        "--out",
        cache,
        "--quiet",
    ]);
    assert!(ok, "{err}");
}

/// Extracts the small cache into `dir/cache` and trains `kinds` (a --sweep kind list; k 16, 1152 latents) into
/// `dir/run`; returns both paths.
pub fn small_cache_and_sweep(dir: &Path, kinds: &str) -> (String, String) {
    small_cache_and_sweep_with(dir, kinds, &[])
}

/// [`small_cache_and_sweep`] with `extra` arguments to train.
pub fn small_cache_and_sweep_with(dir: &Path, kinds: &str, extra: &[&str]) -> (String, String) {
    let (cache, run) = (
        dir.join("cache").display().to_string(),
        dir.join("run").display().to_string(),
    );
    extract_small_cache(&cache, 0);
    train_small_sweep(&cache, kinds, &run, extra);
    (cache, run)
}

/// Trains `kinds` (a --sweep kind list; k 16, 1152 latents) on `cache` into `run`, with `extra` arguments.
pub fn train_small_sweep(cache: &str, kinds: &str, run: &str, extra: &[&str]) {
    let sweep = format!("kind={kinds}");
    let mut args = vec![
        "train",
        "--cache",
        cache,
        "--sweep",
        &sweep,
        "--latents",
        "1152",
        "--k",
        "16",
        "--batch",
        "512",
        "--warmup",
        "2",
        "--out",
        run,
        "--quiet",
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    let (ok, _, err) = sc(&args);
    assert!(ok, "{err}");
}

/// Runs `python3 args`, showing what it printed; panics unless it succeeds. Returns its stdout.
pub fn python(args: &[&str]) -> String {
    let out = Command::new("python3")
        .args(args)
        .output()
        .expect("python3 runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr),
    );
    println!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "python3 {args:?} failed:\n{stdout}{stderr}"
    );
    stdout
}
