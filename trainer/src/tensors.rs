//! A coder's parameter tensors by name — for its parameters, their Adam moments, their copies on a device —
//! so that nothing is handled by its position in a list.

use anyhow::Result;

/// One value per parameter tensor of a coder. `w_skip` is there for skip transcoders only.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensors<T> {
    pub w_enc: T,
    pub b_enc: T,
    pub w_dec: T,
    pub b_dec: T,
    pub w_skip: Option<T>,
}

impl<T> Tensors<T> {
    /// Each tensor with its name in sparsify's `sae.safetensors`, in checkpoint order.
    pub fn named(&self) -> Vec<(&'static str, &T)> {
        let mut v = vec![
            ("encoder.weight", &self.w_enc),
            ("encoder.bias", &self.b_enc),
            ("W_dec", &self.w_dec),
            ("b_dec", &self.b_dec),
        ];
        v.extend(self.w_skip.as_ref().map(|w| ("W_skip", w)));
        v
    }

    /// The tensors in checkpoint order.
    pub fn list(&self) -> Vec<&T> {
        self.named().into_iter().map(|(_, t)| t).collect()
    }

    /// `f` of each tensor, with its name.
    pub fn try_map<U>(
        &self,
        mut f: impl FnMut(&'static str, &T) -> Result<U>,
    ) -> Result<Tensors<U>> {
        Ok(Tensors {
            w_enc: f("encoder.weight", &self.w_enc)?,
            b_enc: f("encoder.bias", &self.b_enc)?,
            w_dec: f("W_dec", &self.w_dec)?,
            b_dec: f("b_dec", &self.b_dec)?,
            w_skip: self.w_skip.as_ref().map(|w| f("W_skip", w)).transpose()?,
        })
    }

    /// Pairs of this and `other`'s tensors (both must have or lack `w_skip`).
    pub fn zip<U>(self, other: Tensors<U>) -> Tensors<(T, U)> {
        Tensors {
            w_enc: (self.w_enc, other.w_enc),
            b_enc: (self.b_enc, other.b_enc),
            w_dec: (self.w_dec, other.w_dec),
            b_dec: (self.b_dec, other.b_dec),
            w_skip: self.w_skip.zip(other.w_skip),
        }
    }

    /// `f` of each tensor, consuming them.
    pub fn into_map<U>(self, mut f: impl FnMut(T) -> U) -> Tensors<U> {
        Tensors {
            w_enc: f(self.w_enc),
            b_enc: f(self.b_enc),
            w_dec: f(self.w_dec),
            b_dec: f(self.b_dec),
            w_skip: self.w_skip.map(f),
        }
    }

    /// `f` of each tensor.
    pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> Tensors<U> {
        Tensors {
            w_enc: f(&self.w_enc),
            b_enc: f(&self.b_enc),
            w_dec: f(&self.w_dec),
            b_dec: f(&self.b_dec),
            w_skip: self.w_skip.as_ref().map(f),
        }
    }
}
