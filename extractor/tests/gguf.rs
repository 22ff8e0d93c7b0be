//! Dequantisation of every supported GGUF type against llama.cpp's reference Python code (the `gguf` package),
//! through a fixture made by scripts/make_gguf_fixture.py.
use extractor::gguf::GgufFile;
use std::path::PathBuf;

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/quant_types.gguf")
}

#[test]
fn every_supported_type_dequantises_exactly_as_the_reference() {
    let g = GgufFile::open(&fixture_path()).unwrap();
    assert_eq!(g.get_u64("fixture.rows").unwrap(), 4);
    for (t, width) in [
        ("f32", 64),
        ("f16", 64),
        ("bf16", 64),
        ("q8_0", 64),
        ("q4_0", 64),
        ("q4_1", 64),
        ("q5_0", 64),
        ("q5_1", 64),
        ("q4_k", 256),
        ("q5_k", 256),
        ("q6_k", 256),
    ] {
        let ours = g.tensor_f32(&format!("x.{t}")).unwrap();
        let reference = g.tensor_f32(&format!("ref.{t}")).unwrap();
        assert_eq!(ours.len(), 4 * width);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&ours), bits(&reference), "{t}: bitwise equal");
        assert_eq!(
            g.tensor(&format!("x.{t}")).unwrap().dims,
            vec![width as u64, 4]
        );
    }
}

#[test]
fn unsupported_type_names_tensor_and_type() {
    let g = GgufFile::open(&fixture_path()).unwrap();
    let err = g.tensor_f32("x.q2_k").unwrap_err().to_string();
    assert!(
        err.contains("tensor x.q2_k has type Q2_K, which is not supported"),
        "{err}"
    );
    let err = g.tensor_f32("x.nope").unwrap_err().to_string();
    assert!(err.contains("tensor x.nope is missing"), "{err}");
}

#[test]
fn damaged_headers_are_errors_not_panics() {
    let bytes = std::fs::read(fixture_path()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x.gguf");
    let header_len = 1200.min(bytes.len());
    for cut in 0..header_len {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        assert!(GgufFile::open(&path).is_err(), "truncated at {cut}");
    }
    for at in 0..header_len {
        let mut b = bytes.clone();
        b[at] ^= 0xff;
        std::fs::write(&path, &b).unwrap();
        let _ = GgufFile::open(&path); // an error or another valid file; never a panic
    }
}
