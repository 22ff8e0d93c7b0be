//! Hostile input against the real binary (issue 25's crash, hang and nonsense classes, as far as they are
//! fixed): every case exits non-zero with a one-line error holding the expected words, no panic and no
//! backtrace, and leaves its output folder absent.
mod common;
use common::{extract_small_cache, model, sc, small_cache_and_sweep, tutorial_text};
use std::path::Path;
use std::time::{Duration, Instant};

/// One case: the arguments (`{cache}`, `{run}`, `{model}`, `{out}` filled in), and the words the error must
/// hold.
struct Case {
    args: &'static [&'static str],
    words: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        args: &[
            "train", "--cache", "{cache}", "--out", "{out}", "--batch", "0",
        ],
        words: &["--batch", "at least 1", "found 0"],
    },
    Case {
        args: &[
            "train",
            "--cache",
            "{cache}",
            "--out",
            "{out}",
            "--epochs",
            "0",
            "--latents",
            "64",
        ],
        words: &["--epochs 0", "no step"],
    },
    Case {
        args: &[
            "train",
            "--cache",
            "{cache}",
            "--out",
            "{out}",
            "--tokens",
            "0",
            "--latents",
            "64",
        ],
        words: &["--tokens 0", "no step"],
    },
    Case {
        args: &[
            "train",
            "--cache",
            "{cache}",
            "--out",
            "{out}",
            "--auxk-alpha",
            "NaN",
        ],
        words: &["--auxk-alpha", "finite", "NaN"],
    },
    Case {
        args: &[
            "train",
            "--cache",
            "{cache}",
            "--out",
            "{out}",
            "--auxk-alpha=-1",
        ],
        words: &["--auxk-alpha", "≥ 0", "-1"],
    },
    Case {
        args: &[
            "train", "--cache", "{cache}", "--out", "{out}", "--lr", "inf",
        ],
        words: &["--lr", "> 0", "inf"],
    },
    Case {
        args: &[
            "train",
            "--cache",
            "{cache}",
            "--out",
            "{out}",
            "--save-every",
            "0",
        ],
        words: &["--save-every", "at least 1"],
    },
    Case {
        args: &[
            "train",
            "--cache",
            "{cache}",
            "--out",
            "{out}",
            "--loader-threads",
            "0",
        ],
        words: &["--loader-threads", "at least 1"],
    },
    Case {
        args: &[
            "train",
            "--cache",
            "{cache}",
            "--out",
            "{cache}/run",
            "--latents",
            "64",
        ],
        words: &["--out", "inside the cache"],
    },
    Case {
        args: &[
            "train",
            "--cache",
            "{cache}",
            "--out",
            "{out}",
            "--skip-init",
            "regression",
            "--kind",
            "sae",
        ],
        words: &["--skip-init regression", "no skip transcoder"],
    },
    Case {
        args: &[
            "extract", "--model", "{model}", "--text", "{text}", "--layers", "1,1", "--out",
            "{out}",
        ],
        words: &["--layers", "layer 1 is given twice"],
    },
    Case {
        args: &[
            "eval",
            "--model",
            "{model}",
            "--cache",
            "{cache}",
            "--checkpoints",
            "{run}",
            "--tokens",
            "0",
            "--out",
            "{out}",
        ],
        words: &["--tokens", "at least 1"],
    },
    Case {
        args: &[
            "eval",
            "--model",
            "{model}",
            "--cache",
            "{cache}",
            "--checkpoints",
            "{run}",
            "--batch-seqs",
            "0",
            "--out",
            "{out}",
        ],
        words: &["--batch-seqs", "at least 1"],
    },
    Case {
        args: &[
            "eval",
            "--model",
            "{model}",
            "--cache",
            "{cache}",
            "--checkpoints",
            "{run}",
            "--holdout-shards",
            "0",
            "--out",
            "{out}",
        ],
        words: &["--holdout-shards", "at least 1"],
    },
    Case {
        args: &[
            "interp",
            "--model",
            "{model}",
            "--cache",
            "{cache}",
            "--checkpoints",
            "{run}",
            "--latents",
            "0",
            "--out",
            "{out}",
        ],
        words: &["--latents", "at least 1"],
    },
    Case {
        args: &[
            "synth-cache",
            "{out}",
            "--d-in",
            "0",
            "--d-out",
            "8",
            "--rows",
            "16",
        ],
        words: &["--d-in", "at least 1"],
    },
    Case {
        args: &[
            "synth-cache",
            "{out}",
            "--d-in",
            "8",
            "--d-out",
            "8",
            "--rows",
            "0",
        ],
        words: &["--rows", "at least 1"],
    },
];

/// interp's numeric flags (after `interp --model M --cache C --checkpoints R --out O`) and the words each refusal
/// must hold.
const INTERP_REFUSALS: &[(&[&str], &[&str])] = &[
    (&["--min-firings", "0"], &["--min-firings", "at least 1"]),
    (&["--concurrency", "0"], &["--concurrency", "at least 1"]),
    (
        &["--concurrency", "100000"],
        &["--concurrency", "at most 1024"],
    ),
    (&["--timeout", "0"], &["--timeout", "at least 1"]),
    (
        &["--explain-per-quantile", "0"],
        &["--explain-per-quantile", "at least 1"],
    ),
    (
        &["--score-per-quantile", "0"],
        &["--score-per-quantile", "at least 1"],
    ),
    (&["--batch", "0"], &["--batch", "at least 1"]),
    (&["--temperature", "NaN"], &["--temperature", "finite"]),
    (&["--temperature=-1"], &["--temperature", "finite"]),
];

/// Runs `args` and checks the refusal: exit ≠ 0, the words on the error line, no panic, `out` not created.
fn refused(args: &[String], words: &[&str], out: &Path) {
    let started = Instant::now();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, err) = sc(&refs);
    let context = format!("sparsecoder {}:\n{err}", args.join(" "));
    assert!(!ok, "accepted: {context}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panic: {context}"
    );
    let line = err
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or_else(|| panic!("no error line: {context}"));
    for w in words {
        assert!(line.contains(w), "{w:?} not in the error line: {context}");
    }
    assert!(!out.exists(), "{} was created: {context}", out.display());
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "slow refusal: {context}"
    );
}

#[test]
fn hostile_numbers_and_repeats_are_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, run) = small_cache_and_sweep(tmp.path(), "sae");
    let model = model();
    let text = tutorial_text();
    for (i, case) in CASES.iter().enumerate() {
        let out = tmp.path().join(format!("out-{i}"));
        let out_s = out.display().to_string();
        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| {
                a.replace("{cache}", &cache)
                    .replace("{run}", &run)
                    .replace("{model}", &model)
                    .replace("{text}", &text)
                    .replace("{out}", &out_s)
            })
            .collect();
        refused(&args, case.words, &out);
    }
    for (i, (flag_args, words)) in INTERP_REFUSALS.iter().enumerate() {
        let out = tmp.path().join(format!("interp-{i}"));
        let mut args: Vec<String> = [
            "interp",
            "--model",
            &model,
            "--cache",
            &cache,
            "--checkpoints",
            &run,
            "--out",
        ]
        .map(String::from)
        .to_vec();
        args.push(out.display().to_string());
        args.extend(flag_args.iter().map(|a| a.to_string()));
        refused(&args, words, &out);
    }
}

/// `eval` of every coder under `run` on `cache`, writing into `out`.
fn eval_args(cache: &str, run: &str, out: &Path) -> Vec<String> {
    [
        "eval",
        "--model",
        &model(),
        "--cache",
        cache,
        "--checkpoints",
        run,
        "--out",
        &out.display().to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// A coder description whose k is 0 or above its latents is refused by eval naming the file and the field
/// (it reached an assertion in the fused encoder before).
#[test]
fn checkpoint_with_impossible_k_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, run) = small_cache_and_sweep(tmp.path(), "sae");
    let meta_path = Path::new(&run).join("sae-mlp_out-k16-l1152/sparsecoder.json");
    let original = std::fs::read_to_string(&meta_path).unwrap();
    for k in ["0", "5000"] {
        let edited = original.replace("\"k\": 16", &format!("\"k\": {k}"));
        assert_ne!(edited, original, "the description holds \"k\": 16");
        std::fs::write(&meta_path, edited).unwrap();
        let out = tmp.path().join(format!("eval-{k}"));
        let args = eval_args(&cache, &run, &out);
        refused(&args, &["sparsecoder.json", "config.k", k], &out);
    }
}

/// A FIFO in a corpus folder is skipped with a line saying so, never opened (opening it blocked forever).
#[cfg(unix)]
#[test]
fn fifo_in_corpus_is_skipped_not_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    std::fs::copy(
        Path::new(&tutorial_text()).join("index.rst.txt"),
        corpus.join("a.txt"),
    )
    .unwrap();
    let fifo = corpus.join("zz.txt");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let out = tmp.path().join("cache");
    let started = Instant::now();
    let (ok, _, err) = sc(&[
        "extract",
        "--model",
        &model(),
        "--text",
        &corpus.display().to_string(),
        "--layers",
        "0",
        "--ctx-len",
        "16",
        "--max-tokens",
        "64",
        "--out",
        &out.display().to_string(),
        "--quiet",
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("zz.txt: skipped: not a regular file"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// sparsify's cfg.json and our sparsecoder.json must describe the same coder: an edited k or kind in
/// cfg.json is refused naming both files (eval scored k = 8 when cfg.json said 16 before).
#[test]
fn cfg_json_disagreeing_with_sparsecoder_json_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, run) = small_cache_and_sweep(tmp.path(), "sae");
    let cfg_path = Path::new(&run).join("sae-mlp_out-k16-l1152/cfg.json");
    let original = std::fs::read_to_string(&cfg_path).unwrap();
    for (from, to, field) in [
        ("\"k\": 16", "\"k\": 8", "k is 8"),
        (
            "\"transcode\": false",
            "\"transcode\": true",
            "transcode is true",
        ),
    ] {
        let edited = original.replace(from, to);
        assert_ne!(edited, original, "cfg.json holds {from}");
        std::fs::write(&cfg_path, edited).unwrap();
        let out = tmp.path().join("eval");
        let args = eval_args(&cache, &run, &out);
        refused(
            &args,
            &["cfg.json", field, "sparsecoder.json", "must agree"],
            &out,
        );
    }
}

/// A run resumed after its cache was replaced by another extraction is refused (it resumed on the mixture
/// before): the training state pins the cache's content id.
#[test]
fn resume_on_a_replaced_cache_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, _) = small_cache_and_sweep(tmp.path(), "sae");
    let out = tmp.path().join("resumable").display().to_string();
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--cache",
            &cache,
            "--kind",
            "sae",
            "--latents",
            "256",
            "--k",
            "8",
            "--batch",
            "512",
            "--warmup",
            "1",
            "--out",
            &out,
            "--quiet",
            "--device",
            "cpu",
        ];
        args.extend_from_slice(extra);
        sc(&args)
    };
    let (ok, _, err) = train(&["--tokens", "1024", "--save-every", "1"]);
    assert!(ok, "{err}");
    // Another extraction in the cache's place: same layer and widths, another seed.
    std::fs::remove_dir_all(&cache).unwrap();
    extract_small_cache(&cache, 7);
    // The same arguments except a longer run: resuming is what is asked.
    let (ok, _, err) = train(&["--tokens", "1024", "--save-every", "1", "--resume"]);
    assert!(!ok, "resumed on a replaced cache");
    let line = err.lines().find(|l| l.starts_with("error")).unwrap_or("");
    assert!(
        line.contains("another cache") && line.contains("content id"),
        "{err}"
    );
}

/// The silent wrong answer: `layer` edited in a real cache's manifest.json. validate, train and eval
/// now refuse it in one line naming the file (the manifest carries its own checksum).
#[test]
fn edited_manifest_is_refused_by_every_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, run) = small_cache_and_sweep(tmp.path(), "sae");
    let path = Path::new(&cache).join("manifest.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let edited = original.replacen("\"layer\": 1,", "\"layer\": 2,", 1);
    assert_ne!(edited, original, "the manifest holds \"layer\": 1");
    std::fs::write(&path, edited).unwrap();
    let words = ["manifest.json", "manifest_xxh3", "was changed"];
    let (ok, out, err) = sc(&["validate", &cache]);
    assert!(!ok, "validate accepted it: {out}");
    assert!(words.iter().all(|w| err.contains(w)), "{err}");
    let out = tmp.path().join("train-out");
    let o = out.display().to_string();
    refused(
        &["train", "--cache", &cache, "--out", &o].map(String::from),
        &words,
        &out,
    );
    let out = tmp.path().join("eval-out");
    refused(&eval_args(&cache, &run, &out), &words, &out);
}

/// One flipped bit inside a training shard's mlp_out (which trained to a different checkpoint with exit 0)
/// stops train, naming the shard and the section; eval the same for a held-out shard.
#[test]
fn flipped_bit_in_a_shard_stops_every_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, run) = small_cache_and_sweep(tmp.path(), "sae");
    let flip = |file: &str| {
        let path = Path::new(&cache).join(file);
        let shard = cache_format::Shard::open(&path).unwrap();
        let at = shard
            .header()
            .section(cache_format::shard::Section::MlpOut)
            .offset
            + 100;
        drop(shard);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at as usize] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
    };
    flip("shard-000001.bin");
    let out = tmp.path().join("train-out");
    let o = out.display().to_string();
    let args = [
        "train",
        "--cache",
        &cache,
        "--out",
        &o,
        "--latents",
        "64",
        "--quiet",
    ];
    let (ok, _, err) = sc(&args);
    assert!(!ok, "train accepted a damaged shard");
    assert!(
        err.contains("shard-000001.bin") && err.contains("checksum mismatch in section mlp_out"),
        "{err}"
    );
    flip("shard-000001.bin");
    flip("shard-000003.bin"); // held out
    let out = tmp.path().join("eval-out");
    refused(
        &eval_args(&cache, &run, &out),
        &["shard-000003.bin", "section mlp_out"],
        &out,
    );
}

/// Two runs into one output folder: the second is refused naming the first's PID (they interleaved before);
/// after kill -9 of the first, its lock no longer blocks: the run resumes. Same for extract.
#[cfg(unix)]
#[test]
fn second_run_into_a_busy_folder_is_refused_and_a_killed_ones_lock_is_not_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache").display().to_string();
    extract_small_cache(&cache, 0);
    let out = tmp.path().join("run");
    let o = out.display().to_string();
    let train = [
        "train",
        "--cache",
        &cache,
        "--out",
        &o,
        "--latents",
        "1152",
        "--k",
        "16",
        "--batch",
        "256",
        "--epochs",
        "200",
        "--save-every",
        "5",
        "--quiet",
        "--device",
        "cpu",
        "--resume",
    ];
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_sparsecoder"))
        .args(train)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !out.join("train_state.json").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first run never saved"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ok, _, err) = sc(&train);
    assert!(!ok, "a second run into a busy folder was accepted");
    let pid = first.id().to_string();
    assert!(
        err.contains("in use by another sparsecoder process") && err.contains(&pid),
        "{err}"
    );
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert!(
        out.join(".sparsecoder.lock").exists(),
        "kill -9 leaves the lock file behind"
    );
    let shorter: Vec<&str> = train
        .iter()
        .map(|a| if *a == "200" { "1" } else { a })
        .collect();
    let (ok, _, err) = sc(&shorter);
    // The killed run's arguments differ (200 epochs): the refusal is about that, not the lock.
    assert!(
        !ok && err.contains("other arguments") && !err.contains("in use"),
        "{err}"
    );

    // extract: a second extraction while the first holds the folder.
    let text = tutorial_text();
    let ex_out = tmp.path().join("ex").display().to_string();
    let extract = [
        "extract",
        "--model",
        &model(),
        "--text",
        &text,
        "--layers",
        "1",
        "--ctx-len",
        "64",
        "--max-tokens",
        "65536",
        "--out",
        &ex_out,
        "--quiet",
    ];
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_sparsecoder"))
        .args(extract)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = Path::new(&ex_out).join(".sparsecoder.lock");
    let started = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|p| !p.is_empty()) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first extraction never locked"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (ok, _, err) = sc(&extract);
    let _ = first.kill();
    first.wait().unwrap();
    assert!(
        !ok && err.contains("in use by another sparsecoder process"),
        "{err}"
    );
}

/// `train --out` naming a folder that holds something else is refused, and the folder left as it was.
#[test]
fn train_into_an_unrelated_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache").display().to_string();
    extract_small_cache(&cache, 0);
    let out = tmp.path().join("notes");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("thesis.tex"), "keep me").unwrap();
    let o = out.display().to_string();
    let (ok, _, err) = sc(&["train", "--cache", &cache, "--out", &o, "--latents", "64"]);
    assert!(
        !ok && err.contains("thesis.tex") && err.contains("empty or new folder"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["thesis.tex"]);
}
