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
