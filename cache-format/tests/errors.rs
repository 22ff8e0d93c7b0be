//! Each kind of damage gives an error naming the file and what was expected and found, and nothing is modified.
mod common;

use cache_format::shard::{Section, Shard, ShardHeader, HEADER_LEN};
use cache_format::validate::validate;
use cache_format::writer::WriterState;
use cache_format::{synthetic, Cache, CacheWriter, DType, Manifest};
use std::path::Path;

fn make(dtype: DType) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    synthetic::write_cache(
        dir.path(),
        synthetic::spec(16, 12, dtype, 40, 50),
        130,
        40,
        1,
    )
    .unwrap();
    dir
}

/// Validates and returns every problem as text; asserts the directory is unchanged by validation.
fn problems(dir: &Path) -> Result<Vec<String>, String> {
    let before = common::snapshot(dir);
    let result = validate(dir)
        .map(|r| r.problems().map(|p| p.to_string()).collect::<Vec<_>>())
        .map_err(|e| e.to_string());
    assert_eq!(
        before,
        common::snapshot(dir),
        "validate must not modify anything"
    );
    result
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn clean_cache_validates() {
    let dir = make(DType::Bf16);
    assert_eq!(problems(dir.path()).unwrap(), Vec::<String>::new());
}

#[test]
fn flipped_byte_in_each_section_names_shard_and_section() {
    for s in Section::ALL {
        let dir = make(DType::F16);
        let path = dir.path().join("shard-000001.bin");
        let h = Shard::open(&path).unwrap().header().clone();
        let e = h.section(s);
        flip_byte(&path, e.offset + e.len / 2);
        let found = problems(dir.path()).unwrap();
        // The section, then the whole-file checksum that the same byte breaks (and, for positions, maybe the
        // range check).
        assert!(found.len() >= 2, "{found:?}");
        assert!(found[0].contains("shard-000001.bin"), "{}", found[0]);
        assert!(
            found[0].contains(&format!("section {}", s.name())),
            "{}",
            found[0]
        );
        assert!(found[1].contains("whole-file xxh3"), "{}", found[1]);
        // Readers refuse the shard when they first open it.
        let cache = Cache::open(dir.path()).unwrap();
        let err = cache.open_shard(1).err().unwrap().to_string();
        assert!(err.contains(&format!("section {}", s.name())), "{err}");
        assert!(cache.open_shard(0).is_ok());
    }
}

/// With every section of a shard damaged, validate names each of them (it named only the first).
#[test]
fn every_damaged_section_is_named() {
    let dir = make(DType::Bf16);
    let path = dir.path().join("shard-000002.bin");
    let h = Shard::open(&path).unwrap().header().clone();
    for s in Section::ALL {
        let e = h.section(s);
        flip_byte(&path, e.offset);
    }
    let found = problems(dir.path()).unwrap();
    for s in Section::ALL {
        let name = format!("section {}", s.name());
        assert!(
            found.iter().any(|p| p.contains(&name)),
            "{name} not in {found:?}"
        );
    }
}

#[test]
fn flipped_byte_in_header_is_caught() {
    let dir = make(DType::Bf16);
    let path = dir.path().join("shard-000000.bin");
    flip_byte(&path, 20); // inside `rows`
    let found = problems(dir.path()).unwrap();
    assert!(
        found[0].contains("shard-000000.bin") && found[0].contains("checksum mismatch in header"),
        "{found:?}"
    );
}

#[test]
fn truncated_shard() {
    let dir = make(DType::Bf16);
    let path = dir.path().join("shard-000002.bin");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let err = problems(dir.path()).unwrap_err();
    assert!(
        err.contains("shard-000002.bin") && err.contains("file size"),
        "{err}"
    );
    assert!(
        err.contains(&bytes.len().to_string()) && err.contains(&(bytes.len() - 10).to_string()),
        "{err}"
    );
    // The shard parser on its own reports where the data should have ended.
    let err = Shard::open(&path).err().unwrap().to_string();
    assert!(
        err.contains("truncated shard") && err.contains("section positions"),
        "{err}"
    );
    std::fs::write(&path, &bytes[..HEADER_LEN / 2]).unwrap();
    let err = Shard::open(&path).err().unwrap().to_string();
    assert!(err.contains("truncated shard"), "{err}");
}

#[test]
fn missing_shard() {
    let dir = make(DType::Bf16);
    std::fs::remove_file(dir.path().join("shard-000001.bin")).unwrap();
    let err = problems(dir.path()).unwrap_err();
    assert!(
        err.contains("shard-000001.bin") && err.contains("cannot be read"),
        "{err}"
    );
    assert!(Cache::open(dir.path()).is_err());
}

#[test]
fn wrong_magic_and_unknown_version() {
    let dir = make(DType::Bf16);
    let path = dir.path().join("shard-000000.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] = b'X';
    std::fs::write(&path, bytes).unwrap();
    let found = problems(dir.path()).unwrap();
    assert!(
        found[0].contains("shard-000000.bin") && found[0].contains("magic expected"),
        "{found:?}"
    );

    let dir = make(DType::Bf16);
    let path = dir.path().join("shard-000000.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let found = problems(dir.path()).unwrap();
    assert!(
        found[0].contains("unknown shard format version: expected 1, found 7"),
        "{found:?}"
    );
}

#[test]
fn manifest_disagreeing_with_shard() {
    let dir = make(DType::Bf16);
    let mut m = Manifest::load(dir.path()).unwrap();
    m.shards[0].rows += 1;
    m.total_rows += 1;
    m.save(dir.path()).unwrap();
    let found = problems(dir.path()).unwrap();
    assert!(
        found[0].contains("shard-000000.bin")
            && found[0].contains("rows (manifest vs shard header) expected 51, found 50"),
        "{found:?}"
    );

    let dir = make(DType::Bf16);
    let mut m = Manifest::load(dir.path()).unwrap();
    m.spec.d_in = 17;
    m.save(dir.path()).unwrap();
    let found = problems(dir.path()).unwrap();
    assert!(
        found
            .iter()
            .all(|p| p.contains("d_in (manifest vs shard header) expected 17, found 16")),
        "{found:?}"
    );

    let dir = make(DType::Bf16);
    let mut m = Manifest::load(dir.path()).unwrap();
    m.total_rows = 5;
    m.save(dir.path()).unwrap();
    let err = problems(dir.path()).unwrap_err();
    assert!(
        err.contains("manifest.json") && err.contains("total_rows"),
        "{err}"
    );
}

#[test]
fn nan_and_inf_rows_are_reported() {
    let dir = make(DType::F32);
    common::rewrite_consistently(dir.path(), 1, |h: &ShardHeader, b| {
        let e = h.section(Section::MlpOut);
        let at = e.offset as usize + (3 * 12 + 5) * 4; // row 3, column 5
        b[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        let at = e.offset as usize + (9 * 12) * 4;
        b[at..at + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
    });
    let found = problems(dir.path()).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("shard-000001.bin")
            && found[0].contains("section mlp_out: 2 non-finite values"),
        "{found:?}"
    );
    assert!(found[0].contains("first in row 3"), "{found:?}");
}

#[test]
fn writer_refuses_non_finite_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, state) =
        CacheWriter::open(dir.path(), synthetic::spec(2, 2, DType::Bf16, 8, 4)).unwrap();
    assert_eq!(state, WriterState::Fresh);
    let err = w
        .push(&[1.0, f32::NAN], &[0.0, 0.0], &[5], &[3], &[2])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mlp_in of sequence 3 position 2") && err.contains("NaN"),
        "{err}"
    );
}

#[test]
fn writer_refuses_foreign_or_different_directories() {
    let dir = make(DType::Bf16);
    let before = common::snapshot(dir.path());
    let mut other = synthetic::spec(16, 12, DType::Bf16, 40, 50);
    other.layer = 4;
    let err = CacheWriter::open(dir.path(), other)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("different arguments") && err.contains("layer: cache has 0, this run has 4"),
        "{err}"
    );
    assert_eq!(
        before,
        common::snapshot(dir.path()),
        "a refused run changes nothing"
    );

    let foreign = tempfile::tempdir().unwrap();
    std::fs::write(foreign.path().join("notes.txt"), "mine").unwrap();
    let err = CacheWriter::open(foreign.path(), synthetic::spec(2, 2, DType::Bf16, 8, 4))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(foreign.path().join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn interrupted_write_resumes_to_identical_bytes() {
    let spec = synthetic::spec(16, 12, DType::Bf16, 40, 50);
    let full = tempfile::tempdir().unwrap();
    let (data, _) = synthetic::write_cache(full.path(), spec.clone(), 230, 40, 4).unwrap();

    let part = tempfile::tempdir().unwrap();
    let (mut w, _) = CacheWriter::open(part.path(), spec.clone()).unwrap();
    w.push(
        &data.mlp_in[..120 * 16],
        &data.mlp_out[..120 * 12],
        &data.token_ids[..120],
        &data.seq_ids[..120],
        &data.positions[..120],
    )
    .unwrap();
    drop(w); // a crash: 2 shards on disk, 20 rows lost in memory
    std::fs::write(part.path().join("shard-000002.bin.tmp"), b"half a shard").unwrap();
    assert!(
        Cache::open(part.path()).is_err(),
        "an unfinished cache is refused for reading"
    );

    let (mut w, state) = CacheWriter::open(part.path(), spec).unwrap();
    assert_eq!(state, WriterState::Resumed { rows_done: 100 });
    w.push(
        &data.mlp_in[100 * 16..],
        &data.mlp_out[100 * 12..],
        &data.token_ids[100..],
        &data.seq_ids[100..],
        &data.positions[100..],
    )
    .unwrap();
    w.finish().unwrap();
    assert_eq!(common::snapshot(full.path()), common::snapshot(part.path()));
}

/// Every single-bit flip anywhere in manifest.json — values, keys, whitespace, the checksum itself — is
/// refused when the manifest is read (by every reader, validate included), with an error naming the file.
/// A version-1 manifest (no checksum, as written before it existed) is still read.
#[test]
fn every_bit_flip_of_the_manifest_is_refused() {
    let dir = make(DType::Bf16);
    let path = dir.path().join("manifest.json");
    let clean = std::fs::read(&path).unwrap();
    assert!(Manifest::from_json(&clean, &path).is_ok());
    let mut accepted = Vec::new();
    for at in 0..clean.len() {
        for bit in 0..8 {
            let mut bytes = clean.clone();
            bytes[at] ^= 1 << bit;
            match Manifest::from_json(&bytes, &path) {
                Ok(_) => accepted.push((at, bit)),
                Err(e) => assert!(e.to_string().contains("manifest.json"), "{e}"),
            }
        }
    }
    assert!(
        accepted.is_empty(),
        "{} of {} flips accepted, first at byte {:?}",
        accepted.len(),
        8 * clean.len(),
        accepted.first()
    );

    // The end-to-end case the issue found (a layer edited) passes no reader now.
    let text = String::from_utf8(clean.clone()).unwrap();
    let edited = text.replacen("\"layer\": 0", "\"layer\": 1", 1);
    assert_ne!(edited, text);
    std::fs::write(&path, &edited).unwrap();
    let err = problems(dir.path()).unwrap_err();
    assert!(
        err.contains("manifest_xxh3") && err.contains("was changed"),
        "{err}"
    );

    // Version 1, without the checksum: read as before.
    let v1 = text
        .replacen("\"format_version\": 2", "\"format_version\": 1", 1)
        .split(",\n  \"manifest_xxh3\"")
        .next()
        .unwrap()
        .to_string()
        + "\n}\n";
    assert!(Manifest::from_json(v1.as_bytes(), &path).is_ok(), "{v1}");
    // Version 2 without it is refused.
    let v2 = v1.replacen("\"format_version\": 1", "\"format_version\": 2", 1);
    let err = Manifest::from_json(v2.as_bytes(), &path).unwrap_err();
    assert!(err.to_string().contains("manifest_xxh3: missing"), "{err}");
}

/// Each byte of a shard file, one bit flipped at a time: validate reports the shard each time (header,
/// section or, for the zero padding between sections, which no reader uses, the whole-file checksum), and a
/// reader's `open_shard` refuses every flip inside the header or a section.
#[test]
fn every_bit_flip_of_a_shard_is_detected() {
    let dir = make(DType::Bf16);
    let path = dir.path().join("shard-000002.bin");
    let clean = std::fs::read(&path).unwrap();
    let h = Shard::open(&path).unwrap().header().clone();
    let covered = |at: u64| {
        at < HEADER_LEN as u64
            || Section::ALL.iter().any(|&s| {
                (h.section(s).offset..h.section(s).offset + h.section(s).len).contains(&at)
            })
    };
    // Every byte of the header and the sections; of the zero padding, every 97th (it is all alike).
    for at in (0..clean.len()).filter(|&a| covered(a as u64) || a % 97 == 0) {
        let mut bytes = clean.clone();
        bytes[at] ^= 1 << (at % 8);
        std::fs::write(&path, &bytes).unwrap();
        let found = problems(dir.path()).unwrap();
        assert!(
            found.iter().any(|p| p.contains("shard-000002.bin")),
            "byte {at}: validate found {found:?}"
        );
        if covered(at as u64) {
            let cache = Cache::open(dir.path()).unwrap();
            assert!(
                cache.open_shard(2).is_err(),
                "byte {at}: a reader opened it"
            );
        }
    }
    std::fs::write(&path, &clean).unwrap();
    assert!(problems(dir.path()).unwrap().is_empty());
}
