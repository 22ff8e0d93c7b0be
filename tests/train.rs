//! End-to-end tests of `sparsecoder train`: resume after kill -9, checkpoints read by numpy + safetensors,
//! errors. The cache is synthetic (random rows) so the tests are quick; training on real activations is recorded
//! in docs/BENCHMARKS.md.
use cache_format::{synthetic, DType};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn make_cache(dir: &Path) {
    synthetic::write_cache(
        dir,
        synthetic::spec(48, 48, DType::Bf16, 64, 2000),
        24000,
        4000,
        5,
    )
    .unwrap();
}

/// The test run's arguments; `extra` flags replace the defaults of the same name.
fn train_cmd(cache: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sparsecoder"));
    c.args([
        "train",
        "--cache",
        cache.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    c.args([
        "--sweep",
        "kind=sae,transcoder,skip-transcoder",
        "--latents",
        "384",
        "--batch",
        "200",
    ]);
    c.args(["--warmup", "10", "--save-every", "10"]);
    for (flag, default) in [("--k", "6"), ("--tokens", "60000"), ("--device", "cpu")] {
        if !extra.contains(&flag) {
            c.args([flag, default]);
        }
    }
    c.args(extra);
    c
}

const CODERS: [&str; 3] = ["sae-mlp_out-k6-l384", "st-k6-l384", "sst-k6-l384"];

fn checkpoint_bytes(out: &Path) -> Vec<Vec<u8>> {
    CODERS
        .iter()
        .map(|c| std::fs::read(out.join(c).join("sae.safetensors")).unwrap())
        .collect()
}

fn step_of(out: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(out.join("train_state.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["step"].as_u64()
}

#[test]
fn killed_training_resumes_to_identical_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    make_cache(&cache);
    let whole = tmp.path().join("whole");
    let o = train_cmd(&cache, &whole, &[]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(step_of(&whole), Some(300)); // 60000 tokens / 200: spans two epochs of 110 batches

    let killed = tmp.path().join("killed");
    let mut child = train_cmd(&cache, &killed, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while step_of(&killed).is_none_or(|s| s < 130) && t.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at = step_of(&killed).unwrap();
    assert!((130..300).contains(&at), "killed part-way (at step {at})");

    let o = train_cmd(&cache, &killed, &[]).output().unwrap();
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("add --resume"),
        "a run is never overwritten"
    );
    let o = train_cmd(&cache, &killed, &["--resume"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        checkpoint_bytes(&whole),
        checkpoint_bytes(&killed),
        "resumed run must equal the uninterrupted one"
    );
    let metrics = |p: &Path| {
        std::fs::read_to_string(p.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(metrics(&whole), metrics(&killed));
    assert_eq!(metrics(&whole), 900);

    let o = train_cmd(&cache, &killed, &["--resume", "--k", "7"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("other arguments"));

    // The SAE learns: FVU falls well below its first value.
    let text = std::fs::read_to_string(whole.join("metrics.jsonl")).unwrap();
    let fvus: Vec<f64> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["coder"] == CODERS[0])
        .map(|v| v["fvu"].as_f64().unwrap())
        .collect();
    assert!(
        fvus[299] < 0.95 * fvus[0],
        "SAE FVU {} -> {}",
        fvus[0],
        fvus[299]
    );
}

/// The GPU trainer's step sequence (cuda::engine), run on the kernels' CPU twins, trains the same coders as
/// the CPU trainer: same losses step by step, same checkpoints to f32 rounding.
#[test]
fn gpu_step_sequence_on_cpu_twins_matches_the_cpu_trainer() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    make_cache(&cache);
    let (cpu, twins) = (tmp.path().join("cpu"), tmp.path().join("twins"));
    for (out, device) in [(&cpu, "cpu"), (&twins, "cpu-twins")] {
        let o = train_cmd(&cache, out, &["--tokens", "8000", "--device", device])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{device}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let metrics = |p: &Path| -> Vec<(String, f64, f64, f64)> {
        std::fs::read_to_string(p.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| {
                let f = |k: &str| v[k].as_f64().unwrap();
                (
                    v["coder"].as_str().unwrap().to_string(),
                    f("fvu"),
                    f("l0"),
                    f("dead_pct"),
                )
            })
            .collect()
    };
    let (a, b) = (metrics(&cpu), metrics(&twins));
    assert_eq!(a.len(), 120);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (&x.0, x.2, x.3),
            (&y.0, y.2, y.3),
            "coder, L0 and dead % per step"
        );
        assert!(
            (x.1 - y.1).abs() <= 1e-4 * x.1,
            "{}: FVU {} (cpu) vs {} (twins)",
            x.0,
            x.1,
            y.1
        );
    }
    for coder in CODERS {
        let (p, _) = trainer::checkpoint::load_coder(&cpu.join(coder)).unwrap();
        let (q, _) = trainer::checkpoint::load_coder(&twins.join(coder)).unwrap();
        let tensors = [
            ("W_enc", &p.w_enc, &q.w_enc),
            ("b_enc", &p.b_enc, &q.b_enc),
            ("W_dec", &p.w_dec, &q.w_dec),
            ("b_dec", &p.b_dec, &q.b_dec),
        ];
        for (name, x, y) in tensors.into_iter().chain(
            p.w_skip
                .as_ref()
                .zip(q.w_skip.as_ref())
                .map(|(x, y)| ("W_skip", x, y)),
        ) {
            let diff: f64 = x
                .iter()
                .zip(y.iter())
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum();
            let norm: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum();
            let rel = (diff / norm.max(1e-30)).sqrt();
            eprintln!("{coder} {name}: relative difference {rel:.2e}");
            assert!(
                rel < 1e-5,
                "{coder} {name}: cpu and twins differ by {rel:.2e}"
            );
        }
    }
}

#[test]
fn checkpoints_match_an_independent_numpy_forward() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    make_cache(&cache);
    let out = tmp.path().join("run");
    let o = train_cmd(&cache, &out, &["--tokens", "4000"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cache = cache_format::Cache::open(&cache).unwrap();
    let shard = cache.open_shard(11).unwrap(); // held out
    let rows = 300;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/check_checkpoint.py");
    for name in CODERS {
        let dir = out.join(name);
        let (coder, meta) = trainer::checkpoint::load_coder(&dir).unwrap();
        let side = if meta.sae_on == Some(cache_format::Side::MlpOut) {
            cache_format::Section::MlpOut
        } else {
            cache_format::Section::MlpIn
        };
        let mut x = vec![0f32; rows * coder.cfg.d_in];
        shard.read_rows_f32(side, 0, &mut x);
        let ours = coder.decode(&coder.encode(&x, rows), &x, rows);
        let xf = tmp.path().join("x.f32");
        let of = tmp.path().join("out.f32");
        std::fs::write(
            &xf,
            x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
        )
        .unwrap();
        let o = Command::new("python3")
            .arg(&script)
            .arg(&dir)
            .arg(&xf)
            .arg(rows.to_string())
            .arg(&of)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "check_checkpoint.py (needs numpy, safetensors): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let theirs: Vec<f32> = std::fs::read(&of)
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let num: f64 = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        let den: f64 = theirs.iter().map(|b| (*b as f64).powi(2)).sum();
        let rel = (num / den).sqrt();
        assert!(rel < 1e-5, "{name}: relative error {rel:.3e}");
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("cfg.json")).unwrap()).unwrap();
        assert_eq!(cfg["skip_connection"], name.starts_with("sst"));
        assert_eq!(cfg["transcode"], !name.starts_with("sae"));
    }
}

#[test]
fn bad_arguments_give_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    make_cache(&cache);
    let run_on = |cache: &Path, extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sparsecoder"));
        c.args(["train", "--cache", cache.to_str().unwrap(), "--quiet"])
            .args(extra);
        let o = c.output().unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!err.contains("panicked"), "{err}");
        err
    };
    let run = |extra: &[&str]| run_on(&cache, extra);
    let out = tmp.path().join("o");
    let o = out.to_str().unwrap();
    assert!(run(&["--out", o, "--k", "500", "--latents", "400"])
        .contains("k = 500 must be between 1 and the number of latents (400)"));
    assert!(
        run(&["--out", o, "--device", "cuda", "--auxk-alpha", "0.1"]).contains(
            "--device cuda: AuxK and Multi-TopK are in the CPU trainer only; use --device cpu"
        )
    );
    assert!(run(&[
        "--out",
        o,
        "--device",
        "cuda",
        "--k",
        "200",
        "--latents",
        "400"
    ])
    .contains("k = 200 is above 128, the largest the GPU TopK kernel takes"));
    if let compute::gpu::Probe::Unavailable(why) = compute::gpu::probe() {
        let err = run(&["--out", o, "--device", "cuda"]);
        assert!(err.contains(&format!("--device cuda: {why}")), "{err}");
    }
    assert!(run(&["--out", o, "--device", "tpu"])
        .contains("--device must be cpu, cuda, auto or cpu-twins"));
    assert!(run(&["--out", o, "--sweep", "width=3"])
        .contains("key must be kind, k, latents, expansion, sae_on or skip_init"));
    assert!(run(&["--out", o, "--batch", "100000"]).contains("make no batch of 100000 rows"));
    assert!(run(&["--out", "/proc/no/such", "--latents", "64"])
        .contains("cannot create output directory"));
    let err = run_on(Path::new("/no/cache"), &["--out", o]);
    assert!(err.contains("/no/cache/manifest.json"), "{err}");
}
