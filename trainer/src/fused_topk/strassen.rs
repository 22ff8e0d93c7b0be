//! Strassen's scheme for the screen's integer product, two levels deep: 49 tile products instead of 64.
//!
//! One level takes a block of row tiles (top half T, bottom half U) against a block of latent tiles (left P,
//! right Q), with the depth in halves 1 and 2. In Strassen's notation `A11 = x[T, 1]`, `A12 = x[T, 2]`,
//! `A21 = x[U, 1]`, `A22 = x[U, 2]`, `B11 = W[P, 1]ᵀ`, `B12 = W[Q, 1]ᵀ`, `B21 = W[P, 2]ᵀ`, `B22 = W[Q, 2]ᵀ`, and
//! the wanted `C11 = C[T, P]`, `C12 = C[T, Q]`, `C21 = C[U, P]`, `C22 = C[U, Q]`, each a sum over both halves,
//! come from seven products of sums of quarters instead of eight. Each of those seven is again such a product,
//! half as wide and half as deep, and takes the second level. The screen's unit is 4 row tiles against 4
//! latent tiles, the depth in 4 parts: 49 products of one tile by one tile, a part deep.
//!
//! In integers it is exact, not an approximation: an operand is a sum of up to 4 rounded values, which stays
//! within i16 because those have at most 13 bits of magnitude; the products, which may exceed i32, wrap modulo
//! 2³², and sums and differences modulo 2³² give the true values whenever those fit an i32, as the screen's bit
//! budget makes sure. So the screen's values are the same, bit for bit, as those of the plain integer product.

/// Products per level of the scheme.
pub const PRODUCTS: usize = 7;
/// Levels of the scheme the screen uses: a unit is `SPLIT` row tiles against `SPLIT` latent tiles, the depth in
/// `SPLIT` parts, and takes `UNIT_PRODUCTS` tile products one part deep instead of `SPLIT³`.
pub const LEVELS: u32 = 2;
pub const SPLIT: usize = 1 << LEVELS;
pub const UNIT_PRODUCTS: usize = PRODUCTS.pow(LEVELS);

/// Which side of the product a matrix is: rows of x (left) or latents of W_enc (right).
#[derive(Clone, Copy)]
pub enum Side {
    Left,
    Right,
}

/// Strassen's operands `levels` (≥ 1) deep of one side. `m` holds `tiles` tiles over `pairs` pairs of input
/// positions, laid out `[tile][pair][lane_len]`. `out` receives `7^levels` operands one after another, each of
/// `tiles / 2^levels` tiles over `pairs / 2^levels` pairs in the same layout: operand `7·i + j` is operand `j`
/// of the level below, formed from the level-one operand `i`.
pub fn operands(
    side: Side,
    m: &[i16],
    tiles: usize,
    pairs: usize,
    lane_len: usize,
    levels: u32,
    out: &mut [i16],
) {
    assert!(levels >= 1 && tiles.is_multiple_of(2) && pairs.is_multiple_of(2));
    let (half_tiles, half_pairs) = (tiles / 2, pairs / 2);
    let run = half_pairs * lane_len;
    let quarter_len = half_tiles * run;
    // The last level writes into `out`; a level above it, into a buffer that the next level reads.
    let mut above = if levels > 1 {
        vec![0i16; PRODUCTS * quarter_len]
    } else {
        Vec::new()
    };
    let level: &mut [i16] = if levels > 1 { &mut above } else { &mut *out };
    for k in 0..half_tiles {
        // Tile k of a half of the tiles, over a half of the depth: one contiguous run of `m`.
        let at = |th: usize, dh: usize| {
            &m[((th * half_tiles + k) * pairs + dh * half_pairs) * lane_len..][..run]
        };
        let mut runs = level
            .chunks_exact_mut(quarter_len)
            .map(|operand| &mut operand[k * run..][..run]);
        let outs: [&mut [i16]; PRODUCTS] = std::array::from_fn(|_| runs.next().unwrap());
        match side {
            // A11 = top rows × first half of the depth, A12 = top × second, A21 = bottom × first, A22.
            Side::Left => left_operands(at(0, 0), at(0, 1), at(1, 0), at(1, 1), outs),
            // B11 = left latents × first half, B12 = right × first, B21 = left × second, B22.
            Side::Right => right_operands(at(0, 0), at(1, 0), at(0, 1), at(1, 1), outs),
        }
    }
    if levels > 1 {
        let below = out.len() / PRODUCTS;
        for (operand, out) in above
            .chunks_exact(quarter_len)
            .zip(out.chunks_exact_mut(below))
        {
            operands(
                side,
                operand,
                half_tiles,
                half_pairs,
                lane_len,
                levels - 1,
                out,
            );
        }
    }
}

/// The seven left operands (of M1 … M7) of a block of row tiles from its four quarters, elementwise.
fn left_operands(a11: &[i16], a12: &[i16], a21: &[i16], a22: &[i16], out: [&mut [i16]; PRODUCTS]) {
    let [m1, m2, m3, m4, m5, m6, m7] = out;
    add(m1, a11, a22); // M1 = (A11 + A22)(B11 + B22)
    add(m2, a21, a22); // M2 = (A21 + A22) B11
    m3.copy_from_slice(a11); // M3 = A11 (B12 − B22)
    m4.copy_from_slice(a22); // M4 = A22 (B21 − B11)
    add(m5, a11, a12); // M5 = (A11 + A12) B22
    sub(m6, a21, a11); // M6 = (A21 − A11)(B11 + B12)
    sub(m7, a12, a22); // M7 = (A12 − A22)(B21 + B22)
}

/// The seven right operands of a block of latent tiles from the four quarters of its weights, elementwise.
fn right_operands(b11: &[i16], b12: &[i16], b21: &[i16], b22: &[i16], out: [&mut [i16]; PRODUCTS]) {
    let [m1, m2, m3, m4, m5, m6, m7] = out;
    add(m1, b11, b22);
    m2.copy_from_slice(b11);
    sub(m3, b12, b22);
    sub(m4, b21, b11);
    m5.copy_from_slice(b22);
    add(m6, b11, b12);
    add(m7, b21, b22);
}

/// Integers that wrap modulo 2³², one or several lanes at a time.
pub trait Wrapping: Copy {
    fn plus(self, o: Self) -> Self;
    fn minus(self, o: Self) -> Self;
}

impl Wrapping for i32 {
    #[inline(always)]
    fn plus(self, o: i32) -> i32 {
        self.wrapping_add(o)
    }
    #[inline(always)]
    fn minus(self, o: i32) -> i32 {
        self.wrapping_sub(o)
    }
}

/// The four quarter products `[C11, C12, C21, C22]` from the seven products, modulo 2³².
#[inline(always)]
fn combine<T: Wrapping>(m: [T; PRODUCTS]) -> [T; 4] {
    let [m1, m2, m3, m4, m5, m6, m7] = m;
    [
        m1.plus(m4).minus(m5).plus(m7),
        m3.plus(m5),
        m2.plus(m4),
        m1.minus(m2).plus(m3).plus(m6),
    ]
}

/// The `SPLIT × SPLIT` tiles of a unit, `[row tile][latent tile]`, from its products as [`operands`] orders
/// them (two levels): each level-one product's four quarters first, then the unit's from those.
#[inline(always)]
pub fn combine_unit<T: Wrapping>(p: &[T; UNIT_PRODUCTS]) -> [[T; SPLIT]; SPLIT] {
    const { assert!(LEVELS == 2) };
    // m[i][q]: quarter q (row half · 2 + latent half, within the level-one block) of level-one product i.
    let m: [[T; 4]; PRODUCTS] =
        std::array::from_fn(|i| combine(std::array::from_fn(|j| p[PRODUCTS * i + j])));
    // c[q][b]: quarter q of the unit's block b.
    let c: [[T; 4]; 4] = std::array::from_fn(|q| combine(std::array::from_fn(|i| m[i][q])));
    std::array::from_fn(|t| std::array::from_fn(|u| c[t % 2 * 2 + u % 2][t / 2 * 2 + u / 2]))
}

fn add(out: &mut [i16], x: &[i16], y: &[i16]) {
    for ((o, &a), &b) in out.iter_mut().zip(x).zip(y) {
        *o = a + b;
    }
}

fn sub(out: &mut [i16], x: &[i16], y: &[i16]) {
    for ((o, &a), &b) in out.iter_mut().zip(x).zip(y) {
        *o = a - b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Against the plain product, with values at the top of the range the screen allows (13 bits for two
    /// levels) and a depth at which the one-part products overflow i32 while the unit's values do not.
    #[test]
    fn the_unit_products_give_the_plain_product() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        // Tiles of 2 rows and 3 latents, each lane two values per pair; the depth in 4 parts of 8 pairs.
        let (rows, latents, pairs) = (2, 3, 32);
        let top = (1 << (15 - LEVELS)) - 1;
        let (mut checked, mut wrapped) = (0, 0);
        for trial in 0..100 {
            let mut matrix = |lanes: usize| -> Vec<i16> {
                (0..SPLIT * pairs * lanes * 2)
                    .map(|_| match trial % 3 {
                        0 => rng.random_range(-top..=top),
                        1 => top * if rng.random_bool(0.5) { 1 } else { -1 },
                        _ => rng.random_range(-3..=3),
                    })
                    .collect()
            };
            let (a, b) = (matrix(rows), matrix(latents));
            let part = pairs / SPLIT;
            let (mut left, mut right) = (
                vec![0; UNIT_PRODUCTS * part * rows * 2],
                vec![0; UNIT_PRODUCTS * part * latents * 2],
            );
            operands(Side::Left, &a, SPLIT, pairs, rows * 2, LEVELS, &mut left);
            operands(
                Side::Right,
                &b,
                SPLIT,
                pairs,
                latents * 2,
                LEVELS,
                &mut right,
            );
            // Value e of lane `lane` of tile `t` at pair `q` of a `[tile][pair][lane][2]` matrix.
            let at =
                |m: &[i16],
                 lanes: usize,
                 pairs: usize,
                 t: usize,
                 q: usize,
                 lane: usize,
                 e: usize| { m[((t * pairs + q) * lanes + lane) * 2 + e] as i64 };
            for (r, l) in (0..rows).flat_map(|r| (0..latents).map(move |l| (r, l))) {
                // The products as the kernel forms them, in i32 that wrap; and whether any overflowed.
                let exact: Vec<i64> = (0..UNIT_PRODUCTS)
                    .map(|i| {
                        let (x, y) = (
                            &left[i * part * rows * 2..],
                            &right[i * part * latents * 2..],
                        );
                        (0..part)
                            .flat_map(|q| (0..2).map(move |e| (q, e)))
                            .map(|(q, e)| {
                                at(x, rows, part, 0, q, r, e) * at(y, latents, part, 0, q, l, e)
                            })
                            .sum()
                    })
                    .collect();
                let p: [i32; UNIT_PRODUCTS] = std::array::from_fn(|i| exact[i] as i32);
                let overflows = exact.iter().any(|&v| i32::try_from(v).is_err());
                let got = combine_unit(&p);
                for (t, u) in (0..SPLIT).flat_map(|t| (0..SPLIT).map(move |u| (t, u))) {
                    let want: i64 = (0..pairs)
                        .flat_map(|q| (0..2).map(move |e| (q, e)))
                        .map(|(q, e)| {
                            at(&a, rows, pairs, t, q, r, e) * at(&b, latents, pairs, u, q, l, e)
                        })
                        .sum();
                    if let Ok(w) = i32::try_from(want) {
                        assert_eq!(
                            got[t][u], w,
                            "trial {trial} row {r} latent {l} tiles {t} {u}"
                        );
                        checked += 1;
                        wrapped += overflows as usize;
                    }
                }
            }
        }
        // Most values fit an i32, and among them some came from products that wrapped.
        assert!(
            checked > 100 * rows * latents * SPLIT * SPLIT / 2,
            "{checked} checked"
        );
        assert!(wrapped > 100, "{wrapped} wrapped");
    }
}
