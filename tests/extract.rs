//! End-to-end tests of `sparsecoder extract` on the real model and the real corpus (scripts/fetch_default.sh).
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model() -> String {
    let p = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch_default.sh first",
        p.display()
    );
    p.display().to_string()
}

fn tutorial() -> String {
    let p = root().join("data/python-3.11-docs/tutorial");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch_default.sh first",
        p.display()
    );
    p.display().to_string()
}

fn extract_cmd(out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sparsecoder"));
    c.args([
        "extract",
        "--model",
        &model(),
        "--text",
        &tutorial(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    c.args(extra);
    c
}

fn run(mut c: Command) -> (bool, String, String) {
    let o: Output = c.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

const SMALL: [&str; 10] = [
    "--layers",
    "1,2",
    "--ctx-len",
    "64",
    "--max-tokens",
    "24576",
    "--shard-rows",
    "1024",
    "--batch-seqs",
    "4",
];

#[test]
fn killed_extraction_resumes_to_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    let (ok, out, err) = run(extract_cmd(&whole, &SMALL));
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("extracted 24576 tokens in 384 sequences of 64"),
        "{out}"
    );
    let listing = files(&whole);
    assert_eq!(
        listing
            .iter()
            .filter(|(p, _)| p.to_string_lossy().ends_with(".bin"))
            .count(),
        48
    );

    let killed = tmp.path().join("killed");
    let mut child = extract_cmd(&killed, &SMALL)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first_shard = killed.join("layer-2/shard-000002.bin");
    let t = Instant::now();
    while !first_shard.exists() && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let manifest = std::fs::read_to_string(killed.join("layer-2/manifest.json")).unwrap();
    assert!(
        manifest.contains("\"complete\": false"),
        "killed before it finished"
    );

    let (ok, out, err) = run(extract_cmd(&killed, &SMALL));
    assert!(ok, "{out}{err}");
    let computed: u64 = out
        .split(": ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        computed < 24576,
        "the resumed run recomputed everything: {out}"
    );
    assert_eq!(
        files(&whole),
        files(&killed),
        "resumed cache must be byte-identical"
    );

    let (ok, out, _) = run(extract_cmd(&killed, &SMALL));
    assert!(ok && out.contains("nothing to do"), "{out}");
    let (ok, _, err) = run(Command::new(env!("CARGO_BIN_EXE_sparsecoder")).tap(|c| {
        c.args(["validate", killed.join("layer-1").to_str().unwrap()]);
    }));
    assert!(ok, "{err}");
}

trait Tap {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}
impl Tap for Command {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

#[test]
fn single_layer_cache_equals_that_layer_of_a_multi_layer_run() {
    let tmp = tempfile::tempdir().unwrap();
    let args = |layers: &str| -> Vec<String> {
        [
            "--layers",
            layers,
            "--ctx-len",
            "64",
            "--max-tokens",
            "4096",
            "--shard-rows",
            "1024",
            "--seed",
            "3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let single = tmp.path().join("single");
    let multi = tmp.path().join("multi");
    let a: Vec<String> = args("2");
    let (ok, _, err) = run(extract_cmd(
        &single,
        &a.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    ));
    assert!(ok, "{err}");
    let b: Vec<String> = args("0,2");
    let (ok, _, err) = run(extract_cmd(
        &multi,
        &b.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    ));
    assert!(ok, "{err}");
    assert!(single.join("manifest.json").exists() && multi.join("layer-0/manifest.json").exists());
    // Same shards; the manifests differ only in the recorded layer list.
    let shards = |d: &Path| {
        files(d)
            .into_iter()
            .filter(|(p, _)| p.to_string_lossy().ends_with(".bin"))
            .collect::<Vec<_>>()
    };
    assert_eq!(shards(&single), shards(&multi.join("layer-2")));
    assert_ne!(
        shards(&multi.join("layer-0")),
        shards(&multi.join("layer-2"))
    );
}

#[test]
fn errors_are_one_line_and_nonzero() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let base = |model: &str, text: &str, layers: &str, out: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sparsecoder"));
        c.args([
            "extract",
            "--model",
            model,
            "--text",
            text,
            "--layers",
            layers,
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        c.args(["--ctx-len", "32", "--max-tokens", "64"]);
        c
    };
    let check = |c: Command, want: &[&str]| {
        let (ok, _, err) = run(c);
        assert!(!ok, "must fail: {want:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(!err.contains("panicked"), "{err}");
        for w in want {
            assert!(err.contains(w), "missing {w:?} in {err}");
        }
    };
    let m = model();
    let t = tutorial();
    check(
        base("/no/such/model.gguf", &t, "3", &out),
        &["/no/such/model.gguf", "cannot open model file"],
    );
    let junk = tmp.path().join("junk.gguf");
    std::fs::write(
        &junk,
        b"GGUF\x03\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\x7f",
    )
    .unwrap();
    check(
        base(junk.to_str().unwrap(), &t, "3", &out),
        &["junk.gguf", "not a valid GGUF file"],
    );
    let truncated = tmp.path().join("truncated.gguf");
    let bytes = std::fs::read(&m).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    check(
        base(truncated.to_str().unwrap(), &t, "3", &out),
        &["truncated.gguf", "runs past the end of the file"],
    );
    check(
        base(&m, &t, "30", &out),
        &["layer 30 is out of range", "0..=29"],
    );
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    check(
        base(&m, empty.to_str().unwrap(), "1", &out),
        &["holds no files"],
    );
    let tiny = tmp.path().join("tiny.txt");
    std::fs::write(&tiny, "Too short.").unwrap();
    check(
        base(&m, tiny.to_str().unwrap(), "1", &out),
        &["no full sequence of 32 tokens"],
    );
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    check(
        base(&m, &t, "1", &blocker.join("sub")),
        &["cannot create output directory"],
    );

    // Non-UTF-8 files are skipped and counted.
    let mixed = tmp.path().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    std::fs::write(mixed.join("binary.bin"), [0xff, 0xfe, 0x00, 0x80]).unwrap();
    std::fs::copy(
        Path::new(&t).join("controlflow.rst.txt"),
        mixed.join("text.txt"),
    )
    .unwrap();
    let (ok, stdout, err) = run(base(&m, mixed.to_str().unwrap(), "1", &out));
    assert!(ok, "{err}");
    assert!(
        stdout.contains("from 1 documents (1 non-UTF-8 files skipped)"),
        "{stdout}"
    );

    // Another run with different arguments into the same directory is refused, and changes nothing.
    let before = files(&out);
    let mut c = base(&m, mixed.to_str().unwrap(), "1", &out);
    c.args(["--seed", "9"]);
    check(c, &["different arguments", "choose another --out"]);
    assert_eq!(before, files(&out));
}

/// The same command line on a Hugging Face folder (Gemma 2 fixture: BOS, sliding window, soft caps): the cache
/// holds what the model computes on each cached sequence, every sequence starts with BOS, and the hookpoints
/// name Gemma 2's modules.
#[test]
fn extract_from_a_hugging_face_folder() {
    use cache_format::{Cache, Section};
    use extractor::model::Stop;
    use extractor::source::ModelSource;
    let folder = root().join("tests/fixtures/hf/gemma2");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cache");
    let mut c = Command::new(env!("CARGO_BIN_EXE_sparsecoder"));
    c.args([
        "extract",
        "--model",
        folder.to_str().unwrap(),
        "--text",
        &tutorial(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--layers",
        "1,2",
        "--ctx-len",
        "32",
        "--max-tokens",
        "2048",
        "--shard-rows",
        "1024",
        "--dtype",
        "f32",
    ]);
    let (ok, stdout, err) = run(c);
    assert!(ok, "{stdout}{err}");
    assert!(
        stdout.contains("extracted 2048 tokens in 64 sequences of 32"),
        "{stdout}"
    );

    let source = ModelSource::open(&folder).unwrap();
    let model = source.load(Some(2), false).unwrap();
    let bos = source.tokenizer().unwrap().bos_id.unwrap();
    for layer in [1usize, 2] {
        let cache = Cache::open(&out.join(format!("layer-{layer}"))).unwrap();
        let spec = &cache.manifest().spec;
        assert_eq!((spec.d_in, spec.d_out, spec.layer), (64, 64, layer as u32));
        assert!(
            spec.hookpoints.mlp_in.contains("pre_feedforward_layernorm"),
            "{:?}",
            spec.hookpoints
        );
        assert_eq!(spec.model.sha256, source.sha256().unwrap());
        let shard = cache.open_shard(1).unwrap();
        let tokens = shard.token_ids();
        assert!(
            tokens.chunks(32).all(|s| s[0] == bos),
            "every sequence starts with BOS"
        );
        // The first two sequences of this shard, recomputed.
        let seqs = &tokens[..64];
        let mut want = (Vec::new(), Vec::new());
        model.forward(seqs, 32, Stop::AfterLayer(2), &mut |l, x, y| {
            if l == layer {
                want = (x.to_vec(), y.to_vec());
            }
        });
        for (section, want) in [(Section::MlpIn, &want.0), (Section::MlpOut, &want.1)] {
            let mut got = vec![0f32; 64 * 64];
            shard.read_rows_f32(section, 0, &mut got);
            let err = got
                .iter()
                .zip(want.iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let scale = want.iter().map(|v| v.abs()).fold(0f32, f32::max);
            assert!(
                err <= 1e-5 * scale,
                "layer {layer} {}: max error {err} of {scale}",
                section.name()
            );
        }
    }
}
