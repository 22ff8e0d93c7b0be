//! The architecture-independent face of a language model: what extraction and evaluation need from it.

/// How far a forward pass runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Stop right after this layer's MLP (nothing deeper is computed).
    AfterLayer(usize),
    /// Run every layer and return the logits.
    Logits,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub architecture: String,
    pub num_layers: usize,
    pub d_model: usize,
    pub vocab_size: usize,
}

/// Called after each layer's MLP with `(layer, mlp_in, mlp_out)`, both `[rows × d_model]`. It may read them
/// (extraction) or overwrite `mlp_out` (evaluation with a coder patched in); the pass continues with `mlp_out`.
pub type MlpHook<'a> = dyn FnMut(usize, &[f32], &mut [f32]) + 'a;

pub trait LanguageModel: Send + Sync {
    fn info(&self) -> &ModelInfo;

    /// Runs `tokens` (`n_seqs` sequences of `seq_len`, row-major). Returns logits `[rows × vocab]` for
    /// [`Stop::Logits`], nothing otherwise.
    fn forward(
        &self,
        tokens: &[u32],
        seq_len: usize,
        stop: Stop,
        hook: &mut MlpHook,
    ) -> Option<Vec<f32>>;

    /// Layer `layer`'s MLP alone on `x[rows × d_model]` (its input side, after the norm).
    fn mlp(&self, layer: usize, x: &[f32]) -> Vec<f32>;
}
