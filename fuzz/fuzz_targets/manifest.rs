//! Untrusted manifest JSON: parsing and its consistency checks must never panic.
#![no_main]
use cache_format::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::from_json(data, std::path::Path::new("fuzz/manifest.json")) {
        let again = serde_json::to_vec(&m).unwrap();
        Manifest::from_json(&again, std::path::Path::new("fuzz/manifest.json")).unwrap();
    }
});
