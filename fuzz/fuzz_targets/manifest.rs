//! Untrusted manifest JSON: parsing and its consistency checks must never panic, and what parses is written
//! back (with its own checksum) as bytes that parse to the same manifest.
#![no_main]
use cache_format::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz/manifest.json");
    if let Ok(m) = Manifest::from_json(data, path) {
        let again = Manifest::from_json(&m.to_bytes(), path).unwrap();
        assert_eq!(again.spec, m.spec);
        assert_eq!(again.shards, m.shards);
    }
});
