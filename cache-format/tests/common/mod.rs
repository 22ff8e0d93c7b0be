#![allow(dead_code)]
use cache_format::manifest::format_checksum;
use cache_format::shard::{Section, ShardHeader};
use cache_format::Manifest;
use std::path::Path;
use xxhash_rust::xxh3::xxh3_64;

/// Edits a shard's bytes with `edit`, then makes every checksum (sections, header, manifest) agree again,
/// so that only the edited content itself can be what a check finds.
pub fn rewrite_consistently(
    dir: &Path,
    shard_index: usize,
    edit: impl FnOnce(&ShardHeader, &mut Vec<u8>),
) {
    let mut manifest = Manifest::load(dir).unwrap();
    let path = dir.join(&manifest.shards[shard_index].file);
    let mut bytes = std::fs::read(&path).unwrap();
    let mut header = ShardHeader::parse(&bytes, bytes.len() as u64, &path).unwrap();
    edit(&header, &mut bytes);
    for s in Section::ALL {
        let e = header.sections[s as usize];
        header.sections[s as usize].checksum =
            xxh3_64(&bytes[e.offset as usize..(e.offset + e.len) as usize]);
    }
    let encoded = header.encode();
    bytes[..encoded.len()].copy_from_slice(&encoded);
    std::fs::write(&path, &bytes).unwrap();
    manifest.shards[shard_index].xxh3 = format_checksum(xxh3_64(&bytes));
    manifest.shards[shard_index].bytes = bytes.len() as u64;
    manifest.save(dir).unwrap();
}

/// Every file of a directory with its bytes, sorted by name.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}
