//! Automated interpretability of sparse-coder latents, the method of Paulo et al. 2024 ("Automatically
//! interpreting millions of features in large language models", EleutherAI's delphi) that the transcoder
//! paper scores coders with. It knows nothing of models or coders: the CLI feeds it token sequences with
//! each token's top-k latents, token text, and a chat model.
//!
//! - [`records`]: per latent, sampled activating windows (with quantiles) and silent windows, in bounded memory;
//! - [`prompts`]: the explainer, detection, fuzzing and simulation prompts, and the parsers of their answers;
//! - [`chat`]: the language model behind them (an OpenAI-compatible server, or one the caller supplies) behind
//!   an on-disk answer cache;
//! - [`score`]: accuracy, balanced accuracy, false-positive rate, per-quantile accuracy;
//! - [`simulation`]: simulation scoring (Bills et al.), the correlation of predicted with true activations;
//! - [`run`]: explain then score one coder's latents, with the shuffled-explanation sanity floor;
//! - [`summary`]: a coder's means, their spread over latents, the sanity floor, the score columns;
//! - [`report`]: JSONL per latent, summary JSON/CSV, the static HTML report.

pub mod chat;
pub mod prompts;
pub mod records;
pub mod report;
pub mod run;
pub mod score;
pub mod simulation;
pub mod summary;
