//! The closed-form affine map from one side of the cache to the other (`y ≈ W·x + b`): the linear baseline a
//! transcoder must beat, fit by ridge regression on streamed normal equations.
//!
//! Rows are summed in f64 into `A = Σ x̃ x̃ᵀ` and `B = Σ x̃ yᵀ` with `x̃ = [x, 1]`, plus `Σ |y|²` and `Σ y`, chunk by
//! chunk through `compute::cpu::matmul` (so memory is one chunk, whatever the cache's size). The map solves
//! `(A + λ·s·I′) W̃ = B` by Cholesky in f64, where `I′` is the identity without the bias entry (the bias is not
//! shrunk) and `s` the mean of `A`'s weight diagonal, which makes λ unitless. λ is chosen on a validation shard
//! from a fixed grid: the validation error of each candidate is exact from that shard's own sums,
//! `Σ|y − W̃ᵀx̃|² = Σ|y|² − 2⟨W̃, B⟩ + ⟨W̃, A W̃⟩`, so no second pass over its rows is needed. mlp_in after
//! RMSNorm is ill-conditioned: without the ridge term a fit on a few shards overfits.

use anyhow::{bail, Result};
use cache_format::{Cache, Side};
use compute::cpu::{linear, matmul};

/// The ridge weights tried, relative to the mean of `A`'s weight diagonal.
pub const LAMBDAS: [f64; 9] = [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];

/// Rows read and summed at a time.
const CHUNK: usize = 4096;

/// The sums of the normal equations over some rows.
#[derive(Clone, Debug)]
pub struct NormalEquations {
    pub d_in: usize,
    pub d_out: usize,
    /// `Σ x̃ x̃ᵀ`, `(d_in + 1)²`, row-major.
    pub a: Vec<f64>,
    /// `Σ x̃ yᵀ`, `(d_in + 1) × d_out`.
    pub b: Vec<f64>,
    pub y_sq: f64,
    pub y_sum: Vec<f64>,
    pub rows: u64,
}

/// `y = W·x + b` with PyTorch's layout: `w` is `[d_out × d_in]`.
#[derive(Clone, Debug)]
pub struct AffineMap {
    pub d_in: usize,
    pub d_out: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

impl AffineMap {
    pub fn predict(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut y = linear(x, rows, self.d_in, &self.w, self.d_out);
        for row in y.chunks_mut(self.d_out) {
            row.iter_mut().zip(&self.b).for_each(|(v, b)| *v += b);
        }
        y
    }
}

impl NormalEquations {
    pub fn new(d_in: usize, d_out: usize) -> NormalEquations {
        let p = d_in + 1;
        NormalEquations {
            d_in,
            d_out,
            a: vec![0.0; p * p],
            b: vec![0.0; p * d_out],
            y_sq: 0.0,
            y_sum: vec![0.0; d_out],
            rows: 0,
        }
    }

    /// Adds `rows` rows of `x` (`rows × d_in`) and `y` (`rows × d_out`).
    pub fn add(&mut self, x: &[f32], y: &[f32], rows: usize) {
        let (d_in, d_out, p) = (self.d_in, self.d_out, self.d_in + 1);
        let mut xt = Vec::with_capacity(rows * p);
        for row in x.chunks(d_in) {
            xt.extend(row.iter().map(|&v| v as f64));
            xt.push(1.0);
        }
        let yd: Vec<f64> = y.iter().map(|&v| v as f64).collect();
        matmul(&mut self.a, &xt, &xt, p, rows, p, (p, 1), true, true);
        matmul(
            &mut self.b,
            &xt,
            &yd,
            p,
            rows,
            d_out,
            (d_out, 1),
            true,
            true,
        );
        for row in yd.chunks(d_out) {
            for (s, v) in self.y_sum.iter_mut().zip(row) {
                *s += v;
                self.y_sq += v * v;
            }
        }
        self.rows += rows as u64;
    }

    /// Both sets of rows.
    pub fn merged(&self, other: &NormalEquations) -> NormalEquations {
        let add = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x + y).collect();
        NormalEquations {
            d_in: self.d_in,
            d_out: self.d_out,
            a: add(&self.a, &other.a),
            b: add(&self.b, &other.b),
            y_sq: self.y_sq + other.y_sq,
            y_sum: add(&self.y_sum, &other.y_sum),
            rows: self.rows + other.rows,
        }
    }

    /// `W̃` (`(d_in + 1) × d_out`: Wᵀ, then the bias row) at ridge weight `lambda`; None when the system is not
    /// positive definite.
    pub fn solve(&self, lambda: f64) -> Option<Vec<f64>> {
        let (d_in, p) = (self.d_in, self.d_in + 1);
        let scale = (0..d_in).map(|i| self.a[i * p + i]).sum::<f64>() / d_in.max(1) as f64;
        let mut a = self.a.clone();
        for i in 0..d_in {
            a[i * p + i] += lambda * scale;
        }
        let l = cholesky(&mut a, p)?;
        Some(cholesky_solve(l, p, &self.b, self.d_out))
    }

    /// FVU on these rows of the map `w̃` (from [`NormalEquations::solve`]), from the sums alone.
    pub fn fvu_of(&self, w: &[f64]) -> f64 {
        let (p, d_out) = (self.d_in + 1, self.d_out);
        let mut aw = vec![0f64; p * d_out];
        matmul(&mut aw, &self.a, w, p, p, d_out, (d_out, 1), false, false);
        let dot = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(a, b)| a * b).sum::<f64>();
        let sse = self.y_sq - 2.0 * dot(w, &self.b) + dot(w, &aw);
        let n = self.rows as f64;
        let total_variance = self.y_sq - self.y_sum.iter().map(|s| s * s / n).sum::<f64>();
        sse / total_variance
    }

    /// `w̃` as PyTorch's layout in f32.
    pub fn to_map(&self, w: &[f64]) -> AffineMap {
        let (d_in, d_out) = (self.d_in, self.d_out);
        AffineMap {
            d_in,
            d_out,
            w: (0..d_out * d_in)
                .map(|i| w[(i % d_in) * d_out + i / d_in] as f32)
                .collect(),
            b: w[d_in * d_out..].iter().map(|&v| v as f32).collect(),
        }
    }
}

/// In-place lower Cholesky factor of the symmetric `p × p` matrix `a` (only its lower triangle is read); None
/// unless positive definite.
pub fn cholesky(a: &mut [f64], p: usize) -> Option<&[f64]> {
    for j in 0..p {
        let mut d = a[j * p + j];
        for k in 0..j {
            d -= a[j * p + k] * a[j * p + k];
        }
        if d.is_nan() || d <= 0.0 {
            return None;
        }
        let d = d.sqrt();
        a[j * p + j] = d;
        for i in j + 1..p {
            let mut s = a[i * p + j];
            for k in 0..j {
                s -= a[i * p + k] * a[j * p + k];
            }
            a[i * p + j] = s / d;
        }
    }
    Some(a)
}

/// `X` with `L Lᵀ X = B` for `B` of `cols` columns, by forward then backward substitution.
pub fn cholesky_solve(l: &[f64], p: usize, b: &[f64], cols: usize) -> Vec<f64> {
    let mut x = b.to_vec();
    for c in 0..cols {
        for i in 0..p {
            let mut s = x[i * cols + c];
            for k in 0..i {
                s -= l[i * p + k] * x[k * cols + c];
            }
            x[i * cols + c] = s / l[i * p + i];
        }
        for i in (0..p).rev() {
            let mut s = x[i * cols + c];
            for k in i + 1..p {
                s -= l[k * p + i] * x[k * cols + c];
            }
            x[i * cols + c] = s / l[i * p + i];
        }
    }
    x
}

/// A fitted linear baseline and how it was chosen.
#[derive(Clone, Debug)]
pub struct LinearFit {
    pub map: AffineMap,
    pub lambda: f64,
    /// FVU of the chosen λ's fit (without the validation shard) on the validation shard.
    pub validation_fvu: f64,
    pub rows: u64,
}

/// Sums of the normal equations of `input → target` over `shards` of `cache`.
pub fn sums(cache: &Cache, shards: &[usize], input: Side, target: Side) -> Result<NormalEquations> {
    let mut eq = NormalEquations::new(cache.width(input), cache.width(target));
    cache.for_each_chunk(shards, (input, target), CHUNK, |x, y, rows| {
        eq.add(x, y, rows)
    })?;
    Ok(eq)
}

/// The ridge fit of `input → target` on the training shards `train` (at least two): λ from [`LAMBDAS`] by the
/// FVU on the last of them of a fit on the others, then the map refit on all of them with that λ.
pub fn fit(cache: &Cache, train: &[usize], input: Side, target: Side) -> Result<LinearFit> {
    let Some((&validation, fit_shards)) = train.split_last().filter(|(_, rest)| !rest.is_empty())
    else {
        bail!(
            "{}: the linear baseline needs two training shards (one to fit, one to choose the ridge term on), found {}",
            cache.dir().display(),
            train.len()
        );
    };
    let fit_eq = sums(cache, fit_shards, input, target)?;
    let val_eq = sums(cache, &[validation], input, target)?;
    let best = LAMBDAS
        .iter()
        .filter_map(|&l| fit_eq.solve(l).map(|w| (l, val_eq.fvu_of(&w))))
        .filter(|(_, fvu)| fvu.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let Some((lambda, validation_fvu)) = best else {
        bail!(
            "{}: no ridge weight in {LAMBDAS:?} gives a positive-definite system",
            cache.dir().display()
        );
    };
    let all = fit_eq.merged(&val_eq);
    let w = all
        .solve(lambda)
        .expect("adding rows keeps the system positive definite");
    Ok(LinearFit {
        map: all.to_map(&w),
        lambda,
        validation_fvu,
        rows: all.rows,
    })
}
