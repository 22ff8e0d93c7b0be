//! A TopK sparse coder: SAE, transcoder (ST) or skip transcoder (SST), with its forward pass and exact gradients.
//!
//! ```text
//! encode(x) = TopK(ReLU(W_enc·x' + b_enc), k)      x' = x − b_dec (SAE), x (transcoders)
//! decode    = Σ_j acts_j · W_dec[idx_j] + b_dec (+ W_skip·x for the SST)
//! loss      = FVU = Σ (decode − y)² / Σ (y − mean_batch(y))²
//! ```
//! Layouts as sparsify's: `W_enc [latents × d_in]`, `W_dec [latents × d_out]` (row i = latent i's direction),
//! `W_skip [d_out × d_in]`. Only the k active latents per row touch the gradients of W_enc and W_dec.

use crate::fused_topk::{self, QuantizedEncoder};
use crate::huge_pages;
use crate::tensors::Tensors;
use crate::topk::{group_by_latent, topk_relu};
use compute::cpu::{axpy, dot, fetch_ahead, linear, matmul, prefetch, SendPtr};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Kind {
    Sae,
    #[cfg_attr(feature = "clap", value(alias = "st"))]
    Transcoder,
    #[cfg_attr(feature = "clap", value(alias = "sst"))]
    SkipTranscoder,
}

impl Kind {
    pub fn short(self) -> &'static str {
        match self {
            Kind::Sae => "sae",
            Kind::Transcoder => "st",
            Kind::SkipTranscoder => "sst",
        }
    }
    pub fn transcodes(self) -> bool {
        self != Kind::Sae
    }
}

/// The nonlinearity between a coder's encoder and decoder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// The k largest of ReLU(pre): what we train.
    #[default]
    TopK,
    /// pre where pre > the latent's threshold ([`crate::jump_relu`]): imported coders only.
    #[serde(rename = "jumprelu")]
    JumpRelu,
}

impl Activation {
    pub fn is_topk(&self) -> bool {
        *self == Activation::TopK
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoderConfig {
    pub kind: Kind,
    pub d_in: usize,
    pub d_out: usize,
    pub num_latents: usize,
    pub k: usize,
}

#[derive(Clone, Debug)]
pub struct SparseCoder {
    pub cfg: CoderConfig,
    pub w_enc: Vec<f32>,
    pub b_enc: Vec<f32>,
    pub w_dec: Vec<f32>,
    pub b_dec: Vec<f32>,
    pub w_skip: Option<Vec<f32>>,
    /// JumpReLU's per-latent thresholds, for an imported coder that uses it in place of TopK (then `cfg.k` is
    /// `num_latents`, a bound that never binds); None for TopK. Inference only: never trained.
    pub threshold: Option<Vec<f32>>,
}

/// Gradients, dense in shape; `touched` lists the latents whose W_enc/W_dec/b_enc rows are non-zero.
#[derive(Clone, Debug)]
pub struct Grads {
    pub w_enc: Vec<f32>,
    pub b_enc: Vec<f32>,
    pub w_dec: Vec<f32>,
    pub b_dec: Vec<f32>,
    pub w_skip: Option<Vec<f32>>,
    pub touched: Vec<u32>,
}

/// What one training step gave, on every backend (the GPU engine computes no AuxK or Multi-TopK term: 0).
#[derive(Clone, Copy, Debug, Default)]
pub struct StepStats {
    pub fvu: f64,
    /// Mean number of non-zero latents per row.
    pub l0: f64,
    /// The AuxK loss (before `auxk_alpha`), 0 when off or no latent is dead.
    pub auxk: f64,
    /// FVU of the 4k-latent decode, 0 when Multi-TopK is off.
    pub multi_topk_fvu: f64,
    /// Latents not fired for more than the dead threshold's tokens, as a fraction (set by the step, after
    /// the counters are updated).
    pub dead_fraction: f64,
}

/// The optional terms of the loss (both off by default, as in sparsify).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Losses {
    /// Weight of the AuxK loss; 0 turns it off.
    pub auxk_alpha: f32,
    /// Add the FVU of a 4k-latent decode at weight 1/8.
    pub multi_topk: bool,
}

/// What the optional loss terms share with the main one: the encoder's input, the batch's rows and the
/// FVU's denominator.
struct ExtraTerm<'a> {
    xc: &'a [f32],
    rows: usize,
    total_variance: f64,
}

/// A coder ready to encode many batches (see [`SparseCoder::encoder`]).
pub struct Encoder<'a> {
    coder: &'a SparseCoder,
    quantized: Option<QuantizedEncoder>,
}

impl Encoder<'_> {
    /// TopK of one batch of `rows` rows, as [`SparseCoder::encode`] gives it.
    pub fn encode(&self, x: &[f32], rows: usize) -> Encoded {
        self.coder.encode_with(x, rows, self.quantized.as_ref())
    }
}

/// The encoder's output for a batch: `rows × per_row` activations and latent indices (`per_row` = k for
/// TopK; for JumpReLU the most any row has, shorter rows padded with activation 0).
pub struct Encoded {
    pub acts: Vec<f32>,
    pub idx: Vec<u32>,
    pub per_row: usize,
}

impl Encoded {
    /// Appends this encoding's rows to `acts`/`idx`, each widened to `per_row` entries with activation 0 (to
    /// put several batches' encodings on one stride).
    pub fn append_padded(&self, per_row: usize, acts: &mut Vec<f32>, idx: &mut Vec<u32>) {
        assert!(per_row >= self.per_row);
        for (a, i) in self
            .acts
            .chunks(self.per_row)
            .zip(self.idx.chunks(self.per_row))
        {
            acts.extend_from_slice(a);
            idx.extend_from_slice(i);
            acts.resize(acts.len() + per_row - self.per_row, 0.0);
            idx.resize(idx.len() + per_row - self.per_row, 0);
        }
    }
}

impl SparseCoder {
    /// Initialisation as sparsify's: W_enc ~ U(±1/√d_in), b_enc = 0; SAE: W_dec = row-normalised W_enc;
    /// transcoders: W_dec = 0 and (SST) W_skip = 0; b_dec = 0 until [`SparseCoder::init_from_batch`].
    pub fn new(cfg: CoderConfig, seed: u64) -> SparseCoder {
        assert!(cfg.k >= 1 && cfg.k <= cfg.num_latents);
        assert!(
            cfg.kind.transcodes() || cfg.d_in == cfg.d_out,
            "an SAE reconstructs its input"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let bound = 1.0 / (cfg.d_in as f32).sqrt();
        let mut w_enc: Vec<f32> = huge_pages::zeros(cfg.num_latents * cfg.d_in);
        w_enc
            .iter_mut()
            .for_each(|w| *w = rng.random_range(-bound..bound));
        let w_dec = if cfg.kind.transcodes() {
            huge_pages::zeros(cfg.num_latents * cfg.d_out)
        } else {
            huge_pages::copy(&w_enc)
        };
        let mut coder = SparseCoder {
            b_enc: vec![0.0; cfg.num_latents],
            b_dec: vec![0.0; cfg.d_out],
            w_skip: (cfg.kind == Kind::SkipTranscoder)
                .then(|| huge_pages::zeros(cfg.d_out * cfg.d_in)),
            w_enc,
            w_dec,
            threshold: None,
            cfg,
        };
        coder.normalize_decoder();
        coder
    }

    /// Step-0 initialisation from the first batch: b_dec = mean target; transcoders: b_enc = −mean(x)·W_encᵀ,
    /// which centres the pre-activations as subtracting b_dec does for an SAE.
    pub fn init_from_batch(&mut self, x: &[f32], y: &[f32], rows: usize) {
        self.b_dec = column_means(y, rows, self.cfg.d_out);
        if self.cfg.kind.transcodes() {
            let mean_x = column_means(x, rows, self.cfg.d_in);
            self.b_enc = linear(&mean_x, 1, self.cfg.d_in, &self.w_enc, self.cfg.num_latents)
                .iter()
                .map(|v| -v)
                .collect();
        }
    }

    /// SAE only: decoder rows to unit norm (‖row‖ + ε, as sparsify).
    pub fn normalize_decoder(&mut self) {
        if self.cfg.kind.transcodes() {
            return;
        }
        self.w_dec.par_chunks_mut(self.cfg.d_out).for_each(|row| {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt() + f32::EPSILON;
            row.iter_mut().for_each(|v| *v /= norm);
        });
    }

    /// SAE only: removes from each decoder row's gradient its component along the row (rows are unit norm).
    pub fn project_decoder_grad(&self, g: &mut Grads) {
        if self.cfg.kind.transcodes() {
            return;
        }
        let d = self.cfg.d_out;
        for &l in &g.touched {
            let l = l as usize;
            let (w, gr) = (
                &self.w_dec[l * d..(l + 1) * d],
                &mut g.w_dec[l * d..(l + 1) * d],
            );
            let along = dot(w, gr);
            gr.iter_mut().zip(w).for_each(|(g, w)| *g -= along * w);
        }
    }

    /// The parameter tensors, by name.
    pub fn tensors(&self) -> Tensors<&[f32]> {
        Tensors {
            w_enc: &self.w_enc,
            b_enc: &self.b_enc,
            w_dec: &self.w_dec,
            b_dec: &self.b_dec,
            w_skip: self.w_skip.as_deref(),
        }
    }

    /// The shapes of [`SparseCoder::tensors`] (row-major, as in sparsify's `sae.safetensors`).
    pub fn shapes(&self) -> Tensors<Vec<usize>> {
        let c = &self.cfg;
        Tensors {
            w_enc: vec![c.num_latents, c.d_in],
            b_enc: vec![c.num_latents],
            w_dec: vec![c.num_latents, c.d_out],
            b_dec: vec![c.d_out],
            w_skip: self.w_skip.as_ref().map(|_| vec![c.d_out, c.d_in]),
        }
    }

    /// Replaces the parameter tensors.
    pub fn set_tensors(&mut self, t: Tensors<Vec<f32>>) {
        (self.w_enc, self.b_enc, self.w_dec, self.b_dec, self.w_skip) =
            (t.w_enc, t.b_enc, t.w_dec, t.b_dec, t.w_skip);
    }

    pub fn zero_grads(&self) -> Grads {
        let c = &self.cfg;
        Grads {
            w_enc: huge_pages::zeros(c.num_latents * c.d_in),
            b_enc: vec![0.0; c.num_latents],
            w_dec: huge_pages::zeros(c.num_latents * c.d_out),
            b_dec: vec![0.0; c.d_out],
            w_skip: self.w_skip.as_ref().map(|w| huge_pages::zeros(w.len())),
            touched: Vec::new(),
        }
    }

    /// The encoder's input: x − b_dec for an SAE, x for transcoders.
    fn encoder_input<'a>(&self, x: &'a [f32]) -> Cow<'a, [f32]> {
        if self.cfg.kind.transcodes() {
            return Cow::Borrowed(x);
        }
        let mut xc = x.to_vec();
        xc.par_chunks_mut(self.cfg.d_in)
            .for_each(|row| row.iter_mut().zip(&self.b_dec).for_each(|(v, b)| *v -= b));
        Cow::Owned(xc)
    }

    /// Encodes one batch. To encode many batches with an unchanged coder, use [`SparseCoder::encoder`].
    pub fn encode(&self, x: &[f32], rows: usize) -> Encoded {
        self.encode_with(x, rows, None)
    }

    /// The coder made ready to encode many batches: whatever the CPU path precomputes from W_enc (its rounded
    /// copy for the screened encoder) is made once here instead of once per batch.
    pub fn encoder(&self) -> Encoder<'_> {
        Encoder {
            coder: self,
            quantized: self.quantize_encoder(),
        }
    }

    /// W_enc rounded for the screened encoder, where this CPU runs it (else None). It must be remade (or its
    /// panels rounded again) whenever W_enc changes. Public for the trainer's own tests only: other callers
    /// use [`SparseCoder::encoder`].
    #[doc(hidden)]
    pub fn quantize_encoder(&self) -> Option<QuantizedEncoder> {
        (fused_topk::available() && self.threshold.is_none())
            .then(|| QuantizedEncoder::new(&self.w_enc, self.cfg.num_latents, self.cfg.d_in))
    }

    /// [`SparseCoder::encode`] with W_enc already rounded (`quantized`, from [`SparseCoder::quantize_encoder`]
    /// on this W_enc); with None it is rounded here.
    pub(crate) fn encode_with(
        &self,
        x: &[f32],
        rows: usize,
        quantized: Option<&QuantizedEncoder>,
    ) -> Encoded {
        self.encode_input(&self.encoder_input(x), rows, quantized)
    }

    /// TopK(ReLU(x'·W_encᵀ + b_enc), k) from the encoder's input x' (JumpReLU for a coder with thresholds:
    /// the dense pre-activations, then [`crate::jump_relu::select_above`]): screened in integers and fused with the
    /// selection where the CPU allows (`fused_topk`, exact all the same), else the dense pre-activations and then
    /// the selection.
    fn encode_input(
        &self,
        xc: &[f32],
        rows: usize,
        quantized: Option<&QuantizedEncoder>,
    ) -> Encoded {
        let c = &self.cfg;
        if let Some(threshold) = &self.threshold {
            let pre = self.pre_activations(xc, rows);
            let (acts, idx, per_row) =
                crate::jump_relu::select_above(&pre, &self.b_enc, threshold, c.num_latents);
            return Encoded { acts, idx, per_row };
        }
        let made;
        let w = match quantized {
            Some(w) => w,
            None => match self.quantize_encoder() {
                Some(w) => {
                    made = w;
                    &made
                }
                None => {
                    return self.select(&self.pre_activations(xc, rows), &self.b_enc, c.k, rows)
                }
            },
        };
        let mut enc = Encoded {
            acts: vec![0.0; rows * c.k],
            idx: vec![0; rows * c.k],
            per_row: c.k,
        };
        fused_topk::encode_topk(
            xc,
            rows,
            w,
            &self.w_enc,
            &self.b_enc,
            c.k,
            &mut enc.acts,
            &mut enc.idx,
        );
        enc
    }

    /// The dense pre-activations x'·W_encᵀ (without b_enc) from the encoder's input x'.
    fn pre_activations(&self, xc: &[f32], rows: usize) -> Vec<f32> {
        linear(xc, rows, self.cfg.d_in, &self.w_enc, self.cfg.num_latents)
    }

    /// The `kt` largest ReLU(pre + bias) per row.
    fn select(&self, pre: &[f32], bias: &[f32], kt: usize, rows: usize) -> Encoded {
        let mut enc = Encoded {
            acts: vec![0.0; rows * kt],
            idx: vec![0; rows * kt],
            per_row: kt,
        };
        topk_relu(
            pre,
            bias,
            self.cfg.num_latents,
            kt,
            &mut enc.acts,
            &mut enc.idx,
        );
        enc
    }

    pub fn decode(&self, enc: &Encoded, x: &[f32], rows: usize) -> Vec<f32> {
        let c = &self.cfg;
        let mut out = self.sparse_decode(&enc.acts, &enc.idx, enc.per_row, rows, true);
        if let Some(w_skip) = &self.w_skip {
            matmul(
                &mut out,
                x,
                w_skip,
                rows,
                c.d_in,
                c.d_out,
                (1, c.d_in),
                false,
                true,
            );
        }
        out
    }

    /// `Σ_j acts[r, j] · W_dec[idx[r, j]]` for `kt` latents per row, plus b_dec when `with_bias`.
    fn sparse_decode(
        &self,
        acts: &[f32],
        idx: &[u32],
        kt: usize,
        rows: usize,
        with_bias: bool,
    ) -> Vec<f32> {
        let d = self.cfg.d_out;
        let mut out: Vec<f32> = huge_pages::zeros(rows * d);
        out.par_chunks_mut(d).enumerate().for_each(|(r, o)| {
            if with_bias {
                o.copy_from_slice(&self.b_dec);
            }
            let (acts, idx) = (&acts[r * kt..(r + 1) * kt], &idx[r * kt..(r + 1) * kt]);
            for (j, (&a, &l)) in acts.iter().zip(idx).enumerate() {
                fetch_ahead(idx, j, |next| {
                    prefetch(&self.w_dec[next as usize * d..][..d])
                });
                if a != 0.0 {
                    let l = l as usize;
                    axpy(o, a, &self.w_dec[l * d..(l + 1) * d]);
                }
            }
        });
        out
    }

    /// Forward pass and gradients of the loss for one batch: FVU, plus `losses.multi_topk_fvu / 8` and
    /// `auxk_alpha · auxk` when enabled (`dead` marks the dead latents for AuxK). `grads` is zero (as
    /// `zero_grads` makes it) or holds an earlier batch's gradients; either way they are replaced by this batch's.
    /// `quantized`: as for [`SparseCoder::encode_with`].
    #[allow(clippy::too_many_arguments)]
    pub fn forward_backward(
        &self,
        x: &[f32],
        y: &[f32],
        rows: usize,
        grads: &mut Grads,
        losses: &Losses,
        dead: Option<&[bool]>,
        quantized: Option<&QuantizedEncoder>,
    ) -> (StepStats, Encoded) {
        let c = &self.cfg;
        assert!(
            self.threshold.is_none(),
            "JumpReLU coders are never trained"
        );
        let (k, d_in, d_out, n) = (c.k, c.d_in, c.d_out, c.num_latents);
        let xc = self.encoder_input(x);
        // Multi-TopK and AuxK select again from the same pre-activations, so they keep the dense matrix.
        let multi_topk = losses.multi_topk && 4 * k <= n;
        let pre = (multi_topk || (losses.auxk_alpha > 0.0 && dead.is_some()))
            .then(|| self.pre_activations(&xc, rows));
        let enc = match &pre {
            Some(pre) => self.select(pre, &self.b_enc, k, rows),
            None => self.encode_input(&xc, rows, quantized),
        };
        let total_variance = total_variance(y, rows, d_out);
        let mut touched = vec![false; n];
        // The rows the last batch wrote: those this batch leaves alone are zeroed after the main term.
        let stale = std::mem::take(&mut grads.touched);

        // Main term: FVU. The decode's buffer becomes the error ŷ − y, then its gradient.
        let mut dy = self.decode(&enc, x, rows);
        dy.par_chunks_mut(d_out)
            .zip(y.par_chunks(d_out))
            .for_each(|(p, t)| p.iter_mut().zip(t).for_each(|(p, t)| *p -= t));
        let sse = ordered_sum(&dy, 1 << 14, |b| {
            b.iter().map(|e| (*e as f64) * (*e as f64)).sum()
        });
        let residual = if losses.auxk_alpha > 0.0 {
            Some(dy.clone())
        } else {
            None
        };
        let scale = (2.0 / total_variance) as f32;
        dy.par_iter_mut().for_each(|e| *e *= scale);
        grads.b_dec = column_sums(&dy, rows, d_out);
        self.accumulate_term(
            &xc,
            &enc.acts,
            &enc.idx,
            k,
            &dy,
            rows,
            grads,
            &mut touched,
            true,
        );
        grads.zero_rows(&stale, &touched);
        if let Some(gs) = grads.w_skip.as_mut() {
            // dW_skip = dyᵀ · x
            matmul(gs, &dy, x, d_out, rows, d_in, (d_in, 1), true, false);
        }
        let mut stats = StepStats {
            fvu: sse / total_variance,
            ..Default::default()
        };

        let extra = ExtraTerm {
            xc: &xc,
            rows,
            total_variance,
        };
        if let (true, Some(pre)) = (multi_topk, &pre) {
            stats.multi_topk_fvu = self.multi_topk_term(&extra, pre, y, grads, &mut touched);
        }
        if let (Some(residual), Some(dead), Some(pre)) = (residual, dead, &pre) {
            stats.auxk = self.auxk_term(
                &extra,
                pre,
                &residual,
                dead,
                losses.auxk_alpha,
                grads,
                &mut touched,
            );
        }
        grads.touched = (0..n as u32).filter(|&l| touched[l as usize]).collect();
        stats.l0 = enc.acts.iter().filter(|&&a| a > 0.0).count() as f64 / rows as f64;
        (stats, enc)
    }

    /// Multi-TopK: the same coder decoding from 4k latents (with b_dec, without W_skip, as sparsify), at
    /// weight 1/8; its gradients are added to `grads`. Returns its FVU.
    fn multi_topk_term(
        &self,
        t: &ExtraTerm,
        pre: &[f32],
        y: &[f32],
        grads: &mut Grads,
        touched: &mut [bool],
    ) -> f64 {
        let (rows, d_out) = (t.rows, self.cfg.d_out);
        let k4 = 4 * self.cfg.k;
        let top4 = self.select(pre, &self.b_enc, k4, rows);
        let mut dy4: Vec<f32> = self
            .sparse_decode(&top4.acts, &top4.idx, k4, rows, true)
            .iter()
            .zip(y)
            .map(|(p, t)| p - t)
            .collect();
        let fvu = ordered_sum(&dy4, 1 << 14, |b| {
            b.iter().map(|e| (*e as f64).powi(2)).sum()
        }) / t.total_variance;
        let s4 = (2.0 / 8.0 / t.total_variance) as f32;
        dy4.par_iter_mut().for_each(|e| *e *= s4);
        column_sums(&dy4, rows, d_out)
            .iter()
            .zip(grads.b_dec.iter_mut())
            .for_each(|(g, b)| *b += g);
        self.accumulate_term(
            t.xc, &top4.acts, &top4.idx, k4, &dy4, rows, grads, touched, false,
        );
        fvu
    }

    /// AuxK: the top d_out/2 `dead` latents predict the residual ŷ − y (held fixed), without b_dec, at weight
    /// `alpha`; its gradients are added to `grads`. Returns the loss before `alpha` (0 when none is dead).
    #[allow(clippy::too_many_arguments)]
    fn auxk_term(
        &self,
        t: &ExtraTerm,
        pre: &[f32],
        residual: &[f32],
        dead: &[bool],
        alpha: f32,
        grads: &mut Grads,
        touched: &mut [bool],
    ) -> f64 {
        let (rows, d_out) = (t.rows, self.cfg.d_out);
        let num_dead = dead.iter().filter(|&&d| d).count();
        if num_dead == 0 {
            return 0.0;
        }
        let k_aux = (d_out / 2).min(num_dead).max(1);
        let weight = (num_dead as f64 / (d_out / 2).max(1) as f64).min(1.0);
        let dead_bias: Vec<f32> = self
            .b_enc
            .iter()
            .zip(dead)
            .map(|(&b, &d)| if d { b } else { f32::NEG_INFINITY })
            .collect();
        let aux = self.select(pre, &dead_bias, k_aux, rows);
        // Rows seeded with live columns carry ReLU(−∞) = 0: they decode nothing and get no gradient.
        let e_hat = self.sparse_decode(&aux.acts, &aux.idx, k_aux, rows, false);
        // residual = ŷ − y, so e = y − ŷ = −residual and e_hat − e = e_hat + residual.
        let mut d_aux: Vec<f32> = e_hat.iter().zip(residual).map(|(h, r)| h + r).collect();
        let sq = ordered_sum(&d_aux, 1 << 14, |b| {
            b.iter().map(|e| (*e as f64).powi(2)).sum()
        });
        let sa = (alpha as f64 * weight * 2.0 / t.total_variance) as f32;
        d_aux.par_iter_mut().for_each(|e| *e *= sa);
        self.accumulate_term(
            t.xc, &aux.acts, &aux.idx, k_aux, &d_aux, rows, grads, touched, false,
        );
        weight * sq / t.total_variance
    }

    /// Gradients of one sparse decode term `Σ_j acts[r,j] W_dec[idx[r,j]]` whose output gradient is `dy`: into
    /// W_dec rows, and through ReLU into W_enc rows, b_enc and (SAE) b_dec. Rows are grouped by latent so each
    /// latent's rows are summed by one task, parallel writes never overlap, and a latent's W_dec row is read
    /// once for all its rows. With `overwrite`, the latents' gradient rows are set rather than added to.
    #[allow(clippy::too_many_arguments)]
    fn accumulate_term(
        &self,
        xc: &[f32],
        acts: &[f32],
        idx: &[u32],
        kt: usize,
        dy: &[f32],
        rows: usize,
        grads: &mut Grads,
        touched: &mut [bool],
        overwrite: bool,
    ) {
        let (d_in, d_out) = (self.cfg.d_in, self.cfg.d_out);
        // Gradient reaching each selected latent's pre-activation (zero where ReLU clipped it).
        let mut g_pre = vec![0f32; rows * kt];
        let (order, starts) = group_by_latent(idx, self.cfg.num_latents);
        let active: Vec<u32> = (0..self.cfg.num_latents)
            .filter(|&l| starts[l + 1] > starts[l])
            .map(|l| l as u32)
            .collect();
        let gw_enc = SendPtr(grads.w_enc.as_mut_ptr());
        let gw_dec = SendPtr(grads.w_dec.as_mut_ptr());
        let gb_enc = SendPtr(grads.b_enc.as_mut_ptr());
        let g_pre_at = SendPtr(g_pre.as_mut_ptr());
        active.par_iter().for_each(|&l| {
            let l = l as usize;
            let w_dec = &self.w_dec[l * d_out..(l + 1) * d_out];
            // SAFETY: latent l's rows, and the g_pre entries of its (row, slot) positions, are written by this
            // task alone.
            let (we, wd, be) = unsafe {
                (
                    std::slice::from_raw_parts_mut(gw_enc.get().add(l * d_in), d_in),
                    std::slice::from_raw_parts_mut(gw_dec.get().add(l * d_out), d_out),
                    &mut *gb_enc.get().add(l),
                )
            };
            if overwrite {
                we.fill(0.0);
                wd.fill(0.0);
                *be = 0.0;
            }
            let entries = &order[starts[l]..starts[l + 1]];
            for (i, &e) in entries.iter().enumerate() {
                // Rows come in scattered order.
                fetch_ahead(entries, i, |next| {
                    let r = next as usize / kt;
                    prefetch(&dy[r * d_out..(r + 1) * d_out]);
                    prefetch(&xc[r * d_in..(r + 1) * d_in]);
                });
                let (r, a) = (e as usize / kt, acts[e as usize]);
                let dyr = &dy[r * d_out..(r + 1) * d_out];
                if a != 0.0 {
                    axpy(wd, a, dyr);
                }
                let g = if a > 0.0 { dot(dyr, w_dec) } else { 0.0 };
                // SAFETY: see above.
                unsafe { *g_pre_at.get().add(e as usize) = g };
                if g != 0.0 {
                    axpy(we, g, &xc[r * d_in..(r + 1) * d_in]);
                    *be += g;
                }
            }
        });
        for l in active {
            touched[l as usize] = true;
        }
        // SAE: b_dec also enters through x' = x − b_dec.
        if !self.cfg.kind.transcodes() {
            let g_xc: Vec<f32> = (0..rows)
                .into_par_iter()
                .flat_map_iter(|r| {
                    let mut g = vec![0f32; d_in];
                    for (&gp, &l) in g_pre[r * kt..(r + 1) * kt]
                        .iter()
                        .zip(&idx[r * kt..(r + 1) * kt])
                    {
                        if gp != 0.0 {
                            let l = l as usize;
                            g.iter_mut()
                                .zip(&self.w_enc[l * d_in..(l + 1) * d_in])
                                .for_each(|(v, w)| *v += gp * w);
                        }
                    }
                    g
                })
                .collect();
            let through_encoder = column_sums(&g_xc, rows, d_in);
            grads
                .b_dec
                .iter_mut()
                .zip(through_encoder)
                .for_each(|(b, g)| *b -= g);
        }
    }

    /// Active latent indices of the last encode, for dead-latent tracking.
    pub fn fired(enc: &Encoded) -> impl Iterator<Item = u32> + '_ {
        enc.idx
            .iter()
            .zip(&enc.acts)
            .filter(|(_, &a)| a > 0.0)
            .map(|(&i, _)| i)
    }
}

impl Grads {
    /// Zeroes the W_enc, W_dec and b_enc rows of the latents in `rows` that `keep` does not mark.
    /// Few rows at the usual batch sizes: the latents the last batch touched and this one does not.
    fn zero_rows(&mut self, rows: &[u32], keep: &[bool]) {
        let (d_in, d_out) = (
            self.w_enc.len() / self.b_enc.len(),
            self.w_dec.len() / self.b_enc.len(),
        );
        for l in rows.iter().map(|&l| l as usize).filter(|&l| !keep[l]) {
            self.w_enc[l * d_in..(l + 1) * d_in].fill(0.0);
            self.w_dec[l * d_out..(l + 1) * d_out].fill(0.0);
            self.b_enc[l] = 0.0;
        }
    }
}

/// Σ over rows and columns of (y − column mean)², in f64.
pub fn total_variance(y: &[f32], rows: usize, d: usize) -> f64 {
    let mean = column_means(y, rows, d);
    ordered_sum(&y[..rows * d], d * 64, |block| {
        block
            .chunks(d)
            .map(|row| {
                row.iter()
                    .zip(&mean)
                    .map(|(v, m)| ((v - m) as f64).powi(2))
                    .sum::<f64>()
            })
            .sum()
    })
}

/// Sum of `f` over fixed blocks, added in block order: parallel, yet the same bits on every run (a rayon
/// `reduce` associates differently from run to run, which would make resumed training diverge).
fn ordered_sum(v: &[f32], block: usize, f: impl Fn(&[f32]) -> f64 + Sync + Send) -> f64 {
    let parts: Vec<f64> = v.par_chunks(block).map(f).collect();
    parts.iter().sum()
}

fn column_sums(m: &[f32], rows: usize, d: usize) -> Vec<f32> {
    let parts: Vec<Vec<f64>> = m[..rows * d]
        .par_chunks(d * 64)
        .map(|block| {
            let mut s = vec![0f64; d];
            for row in block.chunks(d) {
                s.iter_mut().zip(row).for_each(|(a, v)| *a += *v as f64);
            }
            s
        })
        .collect();
    let mut sums = vec![0f64; d];
    for p in parts {
        sums.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    sums.into_iter().map(|v| v as f32).collect()
}

pub fn column_means(m: &[f32], rows: usize, d: usize) -> Vec<f32> {
    column_sums(m, rows, d)
        .into_iter()
        .map(|v| v / rows as f32)
        .collect()
}
