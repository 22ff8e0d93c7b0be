//! Untrusted checkpoints: `sparsecoder.json`, sparsify's `cfg.json` and the safetensors file, each from its
//! own slice of the input. Loading must never panic, and what loads has tensors of the described sizes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Two little-endian u16 lengths, then the description, the cfg, and the tensors.
    if data.len() < 4 {
        return;
    }
    let a = u16::from_le_bytes([data[0], data[1]]) as usize;
    let b = u16::from_le_bytes([data[2], data[3]]) as usize;
    let rest = &data[4..];
    let (meta, rest) = rest.split_at(a.min(rest.len()));
    let (cfg, tensors) = rest.split_at(b.min(rest.len()));
    let dir = std::path::Path::new("fuzz/coder");
    if let Ok((coder, meta)) = trainer::checkpoint::parse_coder(meta, cfg, tensors, dir) {
        let c = &coder.cfg;
        assert_eq!(c, &meta.config);
        assert_eq!(coder.w_enc.len(), c.num_latents * c.d_in);
        assert_eq!(coder.w_dec.len(), c.num_latents * c.d_out);
        assert!(c.k >= 1 && c.k <= c.num_latents);
    }
});
