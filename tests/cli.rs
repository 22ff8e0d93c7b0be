//! End-to-end tests of the `sparsecoder` cache subcommands and of `scripts/read_shard.py` (numpy) against the
//! Rust reader.
use cache_format::shard::Section;
use cache_format::{synthetic, Cache, DType};
use std::path::Path;
use std::process::{Command, Output};

fn sparsecoder(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparsecoder"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn make(dir: &Path, dtype: DType) -> synthetic::SyntheticRows {
    synthetic::write_cache(dir, synthetic::spec(40, 36, dtype, 64, 200), 450, 128, 21)
        .unwrap()
        .0
}

#[test]
fn inspect_shows_manifest_and_shard_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let data = make(dir.path(), DType::Bf16);
    let o = sparsecoder(&["inspect", dir.path().to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for want in [
        "sparsecoder-activation-cache v2, complete",
        "d_in 40, d_out 36, stored as bf16",
        "450 in 3 shards",
        "shard-000002.bin",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    // Mean and max L2 of shard 0's mlp_in, computed here from the rows that were written.
    let stored = DType::Bf16.round_trip(&data.mlp_in[..200 * 40], 40);
    let norms: Vec<f64> = (0..200)
        .map(|r| {
            (0..40)
                .map(|j| stored[r * 40 + j] as f64)
                .map(|v| v * v)
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let mean = norms.iter().sum::<f64>() / 200.0;
    let max = norms.iter().cloned().fold(0.0, f64::max);
    let line = out
        .lines()
        .find(|l| l.starts_with("shard-000000.bin"))
        .unwrap();
    assert!(
        line.contains(&format!("{mean:.3}")) && line.contains(&format!("{max:.3}")),
        "{line} vs {mean:.3}/{max:.3}"
    );
}

#[test]
fn validate_reports_damage_with_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), DType::Bf16);
    let o = sparsecoder(&["validate", dir.path().to_str().unwrap()]);
    assert!(
        o.status.success() && text(&o).0.contains("valid: 3 shards, 450 rows"),
        "{:?}",
        text(&o)
    );

    let path = dir.path().join("shard-000001.bin");
    let shard = cache_format::Shard::open(&path).unwrap();
    let at = shard.header().section(Section::MlpOut).offset + 11;
    drop(shard);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at as usize] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let o = sparsecoder(&["validate", dir.path().to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out.contains("shard-000001.bin: checksum mismatch in section mlp_out"),
        "{out}"
    );
    // The section, and the whole-file checksum the same bit breaks.
    assert!(out.contains("shard-000001.bin: whole-file xxh3"), "{out}");
    assert!(
        err.contains("2 problem(s) in 1 shard(s)") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn bad_paths_give_one_line_errors() {
    let o = sparsecoder(&["inspect", "/nonexistent/cache"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: /nonexistent/cache/manifest.json"),
        "{err}"
    );
}

#[test]
fn compress_and_decompress_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), DType::Bf16);
    let d = dir.path().to_str().unwrap();
    let o = sparsecoder(&["compress", d, "--level", "3"]);
    assert!(
        o.status.success() && text(&o).0.contains("compressed 3 shards"),
        "{:?}",
        text(&o)
    );
    assert!(sparsecoder(&["validate", d]).status.success());
    assert!(text(&sparsecoder(&["inspect", d]))
        .0
        .contains("shard-000000.bin.zst"));
    assert!(sparsecoder(&["decompress", d]).status.success());
    assert!(Cache::open(dir.path())
        .unwrap()
        .manifest()
        .shards
        .iter()
        .all(|s| s.file.ends_with(".bin")));
}

/// Minimal .npy reader: (descr, shape, raw data).
fn read_npy(path: &Path) -> (String, Vec<usize>, Vec<u8>) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..6], b"\x93NUMPY");
    let (len, start) = if b[6] == 1 {
        (u16::from_le_bytes([b[8], b[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&b[start..start + len]).unwrap();
    let descr = header
        .split("'descr': '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_string();
    assert!(header.contains("'fortran_order': False"));
    let shape = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    (descr, shape, b[start + len..].to_vec())
}

#[test]
fn numpy_reader_matches_rust_reader() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/read_shard.py");
    for dtype in DType::ALL {
        let dir = tempfile::tempdir().unwrap();
        make(dir.path(), dtype);
        let cache = Cache::open(dir.path()).unwrap();
        let shard = cache.open_shard(2).unwrap(); // the short last shard: 50 rows
        for s in Section::ALL {
            let out = dir.path().join(format!("{}.npy", s.name()));
            let o = Command::new("python3")
                .arg(&script)
                .arg(shard.path())
                .arg(s.name())
                .arg(&out)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "read_shard.py failed (is numpy installed?): {:?}",
                text(&o)
            );
            let (descr, shape, raw) = read_npy(&out);
            match s {
                Section::MlpIn | Section::MlpOut => {
                    let width = shard.width(s);
                    assert_eq!((descr.as_str(), shape), ("<f4", vec![50, width]));
                    let mut want = vec![0f32; 50 * width];
                    shard.read_rows_f32(s, 0, &mut want);
                    let got: Vec<f32> = raw
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    assert_eq!(got, want, "{dtype} {}", s.name());
                }
                _ => {
                    assert_eq!((descr.as_str(), shape), ("<i8", vec![50]));
                    let got: Vec<i64> = raw
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    let want: Vec<i64> = match s {
                        Section::TokenIds => shard.token_ids().iter().map(|&v| v as i64).collect(),
                        Section::SeqIds => shard.seq_ids().iter().map(|&v| v as i64).collect(),
                        _ => shard.positions().iter().map(|&v| v as i64).collect(),
                    };
                    assert_eq!(got, want, "{}", s.name());
                }
            }
        }
    }
}

/// Our E4M3 rounding against ml_dtypes' `float8_e4m3fn` cast (the one JAX and many PyTorch tools use) on
/// every code's value, every midpoint between neighbouring codes and the floats either side of it, and random
/// values over the whole range a row's scaling produces (|x| ≤ 448).
#[test]
fn fp8_encoding_matches_ml_dtypes() {
    use cache_format::fp8;
    let grid: Vec<f32> = (0..=0x7eu8).map(fp8::decode).collect();
    let mut values = grid.clone();
    for w in grid.windows(2) {
        let mid = (w[0] + w[1]) / 2.0; // exact: neighbours differ in their last few bits
        values.extend([mid, mid.next_down(), mid.next_up()]);
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..100_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
        values.push(448.0 * unit.powi(4));
    }
    let values: Vec<f32> = values.iter().flat_map(|&v| [v, -v]).collect();
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("values.f32"), dir.path().join("codes.u8"));
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input, bytes).unwrap();
    let o = Command::new("python3")
        .args([
            "-c",
            "import sys, numpy as np, ml_dtypes; \
             np.fromfile(sys.argv[1], '<f4').astype(ml_dtypes.float8_e4m3fn).view(np.uint8).tofile(sys.argv[2])",
        ])
        .arg(&input)
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ml_dtypes (pip install ml_dtypes): {:?}",
        text(&o)
    );
    let theirs = std::fs::read(&output).unwrap();
    let ours: Vec<u8> = values.iter().map(|&v| fp8::encode(v)).collect();
    let differ: Vec<(f32, u8, u8)> = values
        .iter()
        .zip(ours.iter().zip(&theirs))
        .filter(|(_, (a, b))| a != b)
        .map(|(&v, (&a, &b))| (v, a, b))
        .take(5)
        .collect();
    assert!(differ.is_empty(), "value, ours, ml_dtypes: {differ:?}");
    assert_eq!(theirs.len(), values.len());
}
