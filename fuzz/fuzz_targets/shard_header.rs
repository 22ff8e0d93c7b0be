//! Untrusted shard bytes: the parser must return an error, never panic or read out of bounds, and whatever it
//! accepts must describe sections that lie inside the file. Each input is tried as is and with its header
//! checksum repaired, so mutations reach the field checks behind the checksum.
#![no_main]
use cache_format::shard::{Section, ShardHeader, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8]) {
    let path = std::path::Path::new("fuzz");
    if let Ok(h) = ShardHeader::parse(data, data.len() as u64, path) {
        for s in Section::ALL {
            let e = h.section(s);
            assert!(e.offset + e.len <= data.len() as u64);
            std::hint::black_box(&data[e.offset as usize..(e.offset + e.len) as usize]);
        }
        assert_eq!(ShardHeader::parse(&h.encode(), h.file_len(), path).unwrap(), h);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= HEADER_LEN {
        let mut fixed = data.to_vec();
        let sum = xxhash_rust::xxh3::xxh3_64(&fixed[..HEADER_LEN - 8]);
        fixed[HEADER_LEN - 8..HEADER_LEN].copy_from_slice(&sum.to_le_bytes());
        check(&fixed);
    }
});
