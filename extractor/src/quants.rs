//! GGML's 5-bit blocks and K-quants (super-blocks of 256), dequantised as llama.cpp's reference Python code
//! (`gguf.quants`) does, in the same order of f32 operations, so the results are bitwise equal
//! (`extractor/tests/gguf.rs` on a fixture from scripts/make_gguf_fixture.py).
//!
//! Layouts (little-endian; `f16` is an IEEE half):
//! - Q5_0, 32 elements in 22 bytes: `d: f16`, `qh: u32`, `qs: [u8; 16]`. Element j's low 4 bits are the low
//!   nibble of `qs[j]` (j < 16) or the high nibble of `qs[j − 16]`; its fifth bit is bit j of `qh`.
//!   x = d · (q − 16).
//! - Q5_1, 32 in 24: `d: f16`, `m: f16`, `qh`, `qs` as Q5_0; x = d · q + m.
//! - Q4_K, 256 in 144: `d: f16`, `dmin: f16`, `scales: [u8; 12]` (eight 6-bit scales and eight 6-bit mins, see
//!   [`scale_min`]), `qs: [u8; 128]`: sub-block s (32 elements) holds the low nibbles of `qs[32·(s/2)..][..32]`
//!   for even s, the high nibbles for odd s. x = (d · scale_s) · q − dmin · min_s.
//! - Q5_K, 256 in 176: as Q4_K with `qh: [u8; 32]` before `qs`; element l of sub-block s has fifth bit
//!   `(qh[l] >> s) & 1`.
//! - Q6_K, 256 in 210: `ql: [u8; 128]`, `qh: [u8; 64]`, `scales: [i8; 16]`, `d: f16`. Element e (in half
//!   h = e/128, r = e mod 128) has low 4 bits from `ql[64h + e mod 64]` (high nibble when r ≥ 64) and top 2 bits
//!   `(qh[32h + e mod 32] >> 2·(r/32)) & 3`; x = (d · scales[e/16]) · (q − 32).

use half::f16;

fn f16_at(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Q5_0 and Q5_1's 5-bit value of element j from `qh` (as u32) and the 16 nibble bytes.
fn q5(qh: u32, qs: &[u8], j: usize) -> u32 {
    let low = if j < 16 {
        qs[j] & 0x0f
    } else {
        qs[j - 16] >> 4
    };
    low as u32 | (((qh >> j) & 1) << 4)
}

pub fn q5_0(raw: &[u8], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(32).zip(raw.chunks_exact(22)) {
        let d = f16_at(&b[0..2]);
        let qh = u32::from_le_bytes(b[2..6].try_into().unwrap());
        for (j, x) in o.iter_mut().enumerate() {
            *x = d * (q5(qh, &b[6..22], j) as i32 - 16) as f32;
        }
    }
}

pub fn q5_1(raw: &[u8], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(32).zip(raw.chunks_exact(24)) {
        let (d, m) = (f16_at(&b[0..2]), f16_at(&b[2..4]));
        let qh = u32::from_le_bytes(b[4..8].try_into().unwrap());
        for (j, x) in o.iter_mut().enumerate() {
            *x = d * q5(qh, &b[8..24], j) as f32 + m;
        }
    }
}

/// The 6-bit scale and min of sub-block `s` (0..8) from Q4_K/Q5_K's 12 packed bytes: for s < 4 the low six
/// bits of bytes s and s + 4; for s ≥ 4 a nibble of byte s + 4 (low for the scale, high for the min) below
/// the top two bits of bytes s − 4 and s.
pub fn scale_min(scales: &[u8], s: usize) -> (u8, u8) {
    if s < 4 {
        (scales[s] & 0x3f, scales[s + 4] & 0x3f)
    } else {
        (
            (scales[s + 4] & 0x0f) | ((scales[s - 4] >> 6) << 4),
            (scales[s + 4] >> 4) | ((scales[s] >> 6) << 4),
        )
    }
}

/// Q4_K and Q5_K: `fifth(s, l)` gives the fifth bit of element l of sub-block s (always 0 for Q4_K).
fn k_quant_4_or_5(out: &mut [f32], block: &[u8], qs: &[u8], fifth: impl Fn(usize, usize) -> u8) {
    let (d, dmin) = (f16_at(&block[0..2]), f16_at(&block[2..4]));
    for (s, sub) in out.chunks_exact_mut(32).enumerate() {
        let (scale, min) = scale_min(&block[4..16], s);
        let (ds, dm) = (d * scale as f32, dmin * min as f32);
        let nibbles = &qs[32 * (s / 2)..][..32];
        for (l, x) in sub.iter_mut().enumerate() {
            let low = if s % 2 == 0 {
                nibbles[l] & 0x0f
            } else {
                nibbles[l] >> 4
            };
            *x = ds * (low | (fifth(s, l) << 4)) as f32 - dm;
        }
    }
}

pub fn q4_k(raw: &[u8], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(256).zip(raw.chunks_exact(144)) {
        k_quant_4_or_5(o, b, &b[16..144], |_, _| 0);
    }
}

pub fn q5_k(raw: &[u8], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(256).zip(raw.chunks_exact(176)) {
        let qh = &b[16..48];
        k_quant_4_or_5(o, b, &b[48..176], |s, l| (qh[l] >> s) & 1);
    }
}

pub fn q6_k(raw: &[u8], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(256).zip(raw.chunks_exact(210)) {
        let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
        let d = f16_at(&b[208..210]);
        for (e, x) in o.iter_mut().enumerate() {
            let (h, r) = (e / 128, e % 128);
            let low = ql[64 * h + e % 64] >> (4 * (r / 64)) & 0x0f;
            let high = (qh[32 * h + e % 32] >> (2 * (r / 32))) & 0x03;
            let q = (low | (high << 4)) as i32 - 32;
            *x = (d * scales[e / 16] as i8 as f32) * q as f32;
        }
    }
}
