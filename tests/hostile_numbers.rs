//! Every numeric flag of extract, train, eval and synth-cache against hostile values (0, negative, NaN, ±inf,
//! fractions, the type's extremes and beyond): each run either succeeds or refuses in one line naming the
//! flag, and none panics or runs on (a value that would take forever must be refused up front).
mod common;
use common::{model, small_cache_and_sweep, tutorial_text};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const VALUES: [&str; 11] = [
    "0",
    "-1",
    "nan",
    "inf",
    "-inf",
    "0.5",
    "1e300",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "",
];

/// Values that describe a legitimately long run (4.3 B tokens: the paper's scale), allowed to run on.
const LONG: [(&str, &str); 1] = [("--tokens", "4294967296")];

/// Runs the binary with `args`, killing it after `limit`: (exit code, stderr), or `None` when it ran on.
fn run_for(args: &[String], limit: Duration) -> Option<(i32, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sparsecoder"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return Some((status.code().unwrap_or(-1), err));
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `base` plus `--flag value` for every flag and value; `fresh_out` gives each run its own output folder.
fn probe(base: &[String], flags: &[&str], fresh_out: &mut dyn FnMut() -> Vec<String>) {
    let mut accepted = Vec::new();
    for flag in flags {
        for value in VALUES {
            let mut args = base.to_vec();
            args.extend(fresh_out());
            if value.starts_with('-') && !value[1..].starts_with(|c: char| c.is_ascii_digit()) {
                // Not a number to the argument parser, which would take it for a flag: the way to pass it.
                args.push(format!("{flag}={value}"));
            } else {
                args.push(flag.to_string());
                args.push(value.to_string());
            }
            let shown = args.join(" ");
            let Some((code, err)) = run_for(&args, Duration::from_secs(20)) else {
                assert!(
                    LONG.contains(&(*flag, value)),
                    "ran on for 20 s: sparsecoder {shown}"
                );
                continue;
            };
            assert!(
                !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
                "panic: sparsecoder {shown}\n{err}"
            );
            if code == 0 {
                accepted.push(format!("{flag} {value:?}"));
                continue;
            }
            let line = err
                .lines()
                .find(|l| l.starts_with("error"))
                .unwrap_or_else(|| panic!("no error line: sparsecoder {shown}\n{err}"));
            let name = flag.trim_start_matches('-');
            assert!(
                line.contains(name) || line.contains(&name.replace('-', "_")),
                "the error does not name {flag}: sparsecoder {shown}\n{line}"
            );
        }
    }
    println!("accepted: {}", accepted.join(", "));
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[test]
fn numeric_flags_of_train_eval_and_synth_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, run) = small_cache_and_sweep(tmp.path(), "sae");
    let mut n = 0;
    let dir = tmp.path().to_path_buf();
    let fresh = |flag: &'static str| {
        let dir = dir.clone();
        move || {
            n += 1;
            vec![
                flag.to_string(),
                dir.join(format!("o{n}")).display().to_string(),
            ]
        }
    };
    let train = strings(&[
        "train",
        "--cache",
        &cache,
        "--latents",
        "64",
        "--k",
        "4",
        "--batch",
        "1024",
        "--quiet",
        "--device",
        "cpu",
    ]);
    let train_flags = [
        "--k",
        "--latents",
        "--expansion",
        "--batch",
        "--epochs",
        "--tokens",
        "--seed",
        "--lr",
        "--warmup",
        "--dead-tokens",
        "--auxk-alpha",
        "--holdout-shards",
        "--save-every",
        "--loader-threads",
        "--eval-every",
        "--eval-rows",
    ];
    probe(&train, &train_flags, &mut fresh("--out"));
    let eval = strings(&[
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
    probe(
        &eval,
        &["--tokens", "--holdout-shards", "--batch-seqs"],
        &mut fresh("--out"),
    );
    let synth = strings(&["synth-cache", "--d-in", "8", "--d-out", "8", "--rows", "64"]);
    let mut m = 0;
    let mut synth_dir = || {
        m += 1;
        vec![tmp.path().join(format!("s{m}")).display().to_string()]
    };
    probe(
        &synth,
        &["--d-in", "--d-out", "--rows", "--shard-rows"],
        &mut synth_dir,
    );
}

#[test]
fn numeric_flags_of_extract() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tutorial_text();
    let extract = strings(&[
        "extract",
        "--model",
        &model(),
        "--text",
        &text,
        "--layers",
        "0",
        "--max-tokens",
        "1024",
        "--ctx-len",
        "64",
        "--quiet",
    ]);
    let mut n = 0;
    let mut fresh = || {
        n += 1;
        vec![
            "--out".to_string(),
            tmp.path().join(format!("e{n}")).display().to_string(),
        ]
    };
    let flags = [
        "--ctx-len",
        "--max-tokens",
        "--shard-rows",
        "--seed",
        "--batch-seqs",
        "--shuffle-buffer",
    ];
    probe(&extract, &flags, &mut fresh);
}
