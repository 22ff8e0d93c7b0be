//! fp8 storage: each row as one f32 scale followed by one OCP FP8 E4M3 byte per element (`float8_e4m3fn`:
//! sign, 4 exponent bits with bias 7, 3 mantissa bits; no infinities; 0x7F/0xFF are NaN; largest finite 448).
//!
//! A row's scale is `max|x| / 448` (1 for an all-zero row), so the row's largest element maps onto the
//! format's largest value and each element is stored as `e4m3(x / scale)`, rounded to nearest, ties to even
//! (as ml_dtypes and PyTorch cast). It reads back as `value(code) · scale`. The relative error of an element
//! whose scaled value is a normal number (|x / scale| ≥ 2⁻⁶) is at most 2⁻⁴ (half of the 3-bit mantissa's
//! step); smaller elements keep an absolute error of at most 2⁻¹⁰ · scale. Half the bytes of bf16 plus four
//! per row.

use std::sync::OnceLock;

/// The largest finite E4M3 value.
pub const MAX: f32 = 448.0;
/// Bytes of a row of `width` elements.
pub fn row_bytes(width: usize) -> usize {
    4 + width
}

/// The f32 value of every code (NaN for the two NaN codes).
fn values() -> &'static [f32; 256] {
    static TABLE: OnceLock<[f32; 256]> = OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|code| decode(code as u8)))
}

/// The value of one code, from the format's definition.
pub fn decode(code: u8) -> f32 {
    let sign = if code & 0x80 != 0 { -1.0 } else { 1.0 };
    let exponent = ((code >> 3) & 0x0f) as i32;
    let mantissa = (code & 0x07) as f32;
    if exponent == 0x0f && code & 0x07 == 0x07 {
        return f32::NAN;
    }
    let magnitude = if exponent == 0 {
        mantissa / 8.0 * 2f32.powi(-6) // subnormal
    } else {
        (1.0 + mantissa / 8.0) * 2f32.powi(exponent - 7)
    };
    sign * magnitude
}

/// The nearest code to `v` (ties to even), saturating at ±448; `v` must not be NaN.
pub fn encode(v: f32) -> u8 {
    let sign = if v.is_sign_negative() { 0x80 } else { 0 };
    let a = v.abs();
    if a >= MAX {
        return sign | 0x7e;
    }
    if a < 2f32.powi(-6) {
        // Subnormals are multiples of 2⁻⁹: scaling by 2⁹ is exact and f32 rounding does ties-to-even; 8 is
        // the smallest normal, whose code is 8 too.
        return sign | (a * 512.0).round_ties_even() as u8;
    }
    let bits = a.to_bits();
    let mut exponent = ((bits >> 23) as i32) - 127 + 7;
    let mut mantissa = (bits >> 20) & 0x7;
    let rest = bits & 0xf_ffff;
    if rest > 0x8_0000 || (rest == 0x8_0000 && mantissa & 1 == 1) {
        mantissa += 1;
        if mantissa == 8 {
            mantissa = 0;
            exponent += 1;
        }
    }
    if exponent > 15 || (exponent == 15 && mantissa == 7) {
        return sign | 0x7e; // rounded past 448
    }
    sign | ((exponent as u8) << 3) | mantissa as u8
}

/// The scale `encode_row` stores for `row`.
pub fn row_scale(row: &[f32]) -> f32 {
    let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max > 0.0 {
        max / MAX
    } else {
        1.0
    }
}

/// Appends `row` as its scale (little-endian f32) and one code per element.
pub fn encode_row(row: &[f32], out: &mut Vec<u8>) {
    let scale = row_scale(row);
    out.extend_from_slice(&scale.to_le_bytes());
    out.extend(row.iter().map(|&v| encode(v / scale)));
}

/// Decodes one stored row (`row_bytes(out.len())` bytes) into `out`: a table lookup and a product per element
/// (measured faster than building the f32 from the code's bits, which does not vectorise on baseline x86-64).
pub fn decode_row(bytes: &[u8], out: &mut [f32]) {
    debug_assert_eq!(bytes.len(), row_bytes(out.len()));
    let scale = f32::from_le_bytes(bytes[..4].try_into().unwrap());
    let table = values();
    for (o, &code) in out.iter_mut().zip(&bytes[4..]) {
        *o = table[code as usize] * scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_the_grid_is_the_formats() {
        for code in 0..=255u8 {
            let v = decode(code);
            if v.is_nan() {
                assert!(code & 0x7f == 0x7f, "only 0x7f and 0xff are NaN");
                continue;
            }
            // -0 encodes to 0x80, +0 to 0x00: both round-trip.
            assert_eq!(encode(v), code, "code {code:#04x} = {v}");
        }
        assert_eq!(decode(0x7e), 448.0);
        assert_eq!(decode(0x01), 2f32.powi(-9));
        assert_eq!(decode(0x08), 2f32.powi(-6));
        assert_eq!(decode(0x38), 1.0);
    }

    #[test]
    fn the_row_decoder_equals_the_definition_on_every_code() {
        for scale in [1.0f32, 0.0173, 3.5e3] {
            let mut row = scale.to_le_bytes().to_vec();
            row.extend(0..=255u8);
            let mut out = vec![0f32; 256];
            decode_row(&row, &mut out);
            for (code, got) in out.iter().enumerate() {
                let want = decode(code as u8) * scale;
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "code {code:#04x}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn rounds_to_nearest_with_ties_to_even_and_saturates() {
        // Between 1 (0x38) and 1.125 (0x39): the midpoint goes to the even code 0x38; above it to 0x39.
        assert_eq!(encode(1.0625), 0x38);
        assert_eq!(encode(1.0625f32.next_up()), 0x39);
        // Between 1.125 and 1.25 (0x3a): the midpoint 1.1875 goes to the even 0x3a.
        assert_eq!(encode(1.1875), 0x3a);
        // 15.5 lies between 15 (0x57) and 16 (0x58): ties to even, 0x58, carrying into the exponent.
        assert_eq!(encode(15.5), 0x58);
        assert_eq!(encode(1e9), 0x7e);
        assert_eq!(encode(-1e9), 0xfe);
        assert_eq!(encode(464.0), 0x7e);
        // Subnormal midpoint 1.5 · 2⁻⁹ goes to 2 · 2⁻⁹ (even).
        assert_eq!(encode(1.5 * 2f32.powi(-9)), 0x02);
        assert_eq!(encode(0.5 * 2f32.powi(-9)), 0x00);
    }

    #[test]
    fn a_row_keeps_its_largest_element_exactly_and_others_within_the_bound() {
        let row: Vec<f32> = (0..577)
            .map(|i| ((i as f32) * 0.37).sin() * 3.0 - 0.1)
            .collect();
        let mut bytes = Vec::new();
        encode_row(&row, &mut bytes);
        assert_eq!(bytes.len(), row_bytes(row.len()));
        let mut back = vec![0f32; row.len()];
        decode_row(&bytes, &mut back);
        let scale = row_scale(&row);
        let max_at = (0..row.len())
            .max_by(|&a, &b| row[a].abs().total_cmp(&row[b].abs()))
            .unwrap();
        assert!((back[max_at] - row[max_at]).abs() <= row[max_at].abs() * 1e-6);
        for (b, v) in back.iter().zip(&row) {
            let bound = (v.abs() / 16.0).max(2f32.powi(-10) * scale) * 1.0001;
            assert!((b - v).abs() <= bound, "{b} vs {v}");
        }
        let mut zeros = Vec::new();
        encode_row(&[0.0; 8], &mut zeros);
        let mut back = [1f32; 8];
        decode_row(&zeros, &mut back);
        assert_eq!(back, [0.0; 8]);
    }
}
