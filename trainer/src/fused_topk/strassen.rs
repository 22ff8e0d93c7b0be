//! One level of Strassen's scheme for the screen's integer product: seven half-depth products instead of eight.
//!
//! The unit is a pair of row tiles (top T, bottom U) against a panel of two latent tiles (left P, right Q), with
//! the depth in halves 1 and 2. In Strassen's notation `A11 = x[T, 1]`, `A12 = x[T, 2]`, `A21 = x[U, 1]`,
//! `A22 = x[U, 2]`, `B11 = W[P, 1]ᵀ`, `B12 = W[Q, 1]ᵀ`, `B21 = W[P, 2]ᵀ`, `B22 = W[Q, 2]ᵀ`, and the wanted
//! `C11 = C[T, P]`, `C12 = C[T, Q]`, `C21 = C[U, P]`, `C22 = C[U, Q]`, each a sum over both halves.
//!
//! In integers it is exact, not an approximation: the operand sums stay within i16 because the rounded values
//! have at most 14 bits of magnitude, and the half-depth products, which may exceed i32, wrap modulo 2³²; sums
//! and differences modulo 2³² give the true quarter products whenever those fit an i32, as the screen's bit
//! budget makes sure. So the screen's values are the same, bit for bit, as those of the plain integer product.

/// Half-depth products per unit.
pub const PRODUCTS: usize = 7;

/// The seven left operands of a pair of row tiles from their four quarters (equal lengths, any layout shared by
/// all four), written one after another into `out` (7 × the quarter's length).
pub fn left_operands(a11: &[i16], a12: &[i16], a21: &[i16], a22: &[i16], out: &mut [i16]) {
    let mut ops = out.chunks_exact_mut(a11.len());
    let mut next = || ops.next().expect("room for seven operands");
    add(next(), a11, a22); // M1 = (A11 + A22)(B11 + B22)
    add(next(), a21, a22); // M2 = (A21 + A22) B11
    next().copy_from_slice(a11); // M3 = A11 (B12 − B22)
    next().copy_from_slice(a22); // M4 = A22 (B21 − B11)
    add(next(), a11, a12); // M5 = (A11 + A12) B22
    sub(next(), a21, a11); // M6 = (A21 − A11)(B11 + B12)
    sub(next(), a12, a22); // M7 = (A12 − A22)(B21 + B22)
}

/// The seven right operands of a panel from the four quarters of its weights, as [`left_operands`].
pub fn right_operands(b11: &[i16], b12: &[i16], b21: &[i16], b22: &[i16], out: &mut [i16]) {
    let mut ops = out.chunks_exact_mut(b11.len());
    let mut next = || ops.next().expect("room for seven operands");
    add(next(), b11, b22);
    next().copy_from_slice(b11);
    sub(next(), b12, b22);
    sub(next(), b21, b11);
    next().copy_from_slice(b22);
    add(next(), b11, b12);
    add(next(), b21, b22);
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
pub fn combine<T: Wrapping>(m: [T; PRODUCTS]) -> [T; 4] {
    let [m1, m2, m3, m4, m5, m6, m7] = m;
    [
        m1.plus(m4).minus(m5).plus(m7),
        m3.plus(m5),
        m2.plus(m4),
        m1.minus(m2).plus(m3).plus(m6),
    ]
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

    /// Against the plain product, with values at the top of the 14-bit range and a depth at which the
    /// half-depth products overflow i32 while the quarter products do not.
    #[test]
    fn seven_products_give_the_plain_product() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (rows, latents, half) = (3, 4, 20);
        let top = (1 << 14) - 1;
        let (mut checked, mut wrapped) = (0, 0);
        for trial in 0..200 {
            // Quarters as [row][depth] and [latent][depth] (the layout only needs to be shared).
            let mut quarter = |n: usize| -> Vec<i16> {
                (0..n)
                    .map(|_| match trial % 3 {
                        0 => rng.random_range(-top..=top),
                        1 => top * if rng.random_bool(0.5) { 1 } else { -1 },
                        _ => rng.random_range(-3..=3),
                    })
                    .collect()
            };
            let a: Vec<Vec<i16>> = (0..4).map(|_| quarter(rows * half)).collect();
            let b: Vec<Vec<i16>> = (0..4).map(|_| quarter(latents * half)).collect();
            let (mut left, mut right) = (vec![0; 7 * rows * half], vec![0; 7 * latents * half]);
            left_operands(&a[0], &a[1], &a[2], &a[3], &mut left);
            right_operands(&b[0], &b[1], &b[2], &b[3], &mut right);
            // Plain: C[ti][tj] over both halves, in i64.
            let dot = |x: &[i16], y: &[i16]| -> i64 {
                x.iter().zip(y).map(|(&p, &q)| p as i64 * q as i64).sum()
            };
            for r in 0..rows {
                for l in 0..latents {
                    let row = |q: usize, x: &[i16]| x[q * half..][..half].to_vec();
                    let operands = |i: usize| {
                        (
                            row(r, &left[i * rows * half..]),
                            row(l, &right[i * latents * half..]),
                        )
                    };
                    // The products as the kernel forms them: i32 sums that wrap.
                    let m: [i32; 7] = std::array::from_fn(|i| {
                        let (x, y) = operands(i);
                        x.iter()
                            .zip(&y)
                            .fold(0i32, |s, (&p, &q)| s.wrapping_add(p as i32 * q as i32))
                    });
                    let overflows = (0..7).any(|i| {
                        let (x, y) = operands(i);
                        i32::try_from(dot(&x, &y)).is_err()
                    });
                    let want: [i64; 4] = [
                        dot(&row(r, &a[0]), &row(l, &b[0])) + dot(&row(r, &a[1]), &row(l, &b[2])),
                        dot(&row(r, &a[0]), &row(l, &b[1])) + dot(&row(r, &a[1]), &row(l, &b[3])),
                        dot(&row(r, &a[2]), &row(l, &b[0])) + dot(&row(r, &a[3]), &row(l, &b[2])),
                        dot(&row(r, &a[2]), &row(l, &b[1])) + dot(&row(r, &a[3]), &row(l, &b[3])),
                    ];
                    let got = combine(m);
                    for q in 0..4 {
                        if let Ok(w) = i32::try_from(want[q]) {
                            assert_eq!(got[q], w, "trial {trial} row {r} latent {l} quarter {q}");
                            checked += 1;
                            wrapped += overflows as usize;
                        }
                    }
                }
            }
        }
        // Most quarters fit an i32, and among them some came from products that wrapped.
        assert!(checked > 200 * rows * latents * 2, "{checked} checked");
        assert!(wrapped > 100, "{wrapped} wrapped");
    }
}
