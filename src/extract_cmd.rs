//! `sparsecoder extract`: flags → `extractor::extract::run`, then a summary.

use crate::flags::{one_of, PartFlags};
use anyhow::{bail, Result};
use cache_format::DType;
use clap::Args;
use extractor::extract::{run, ExtractArgs};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
// A negative number is a (refused) value, not an unknown flag: the error then names the flag.
#[command(allow_negative_numbers = true)]
pub struct ExtractCli {
    /// The model: a GGUF file (Llama architecture), or a Hugging Face model folder (config.json, safetensors
    /// weights, tokenizer.json) of a Llama, Llama 3, Gemma 2 or GPT-NeoX (Pythia) model.
    #[arg(long)]
    model: PathBuf,
    /// The text: a file (.txt or any text is one document; .jsonl one per line; .parquet one per row) or a
    /// directory (every file below it, recursively, in sorted order; hidden files skipped). Files that are not
    /// UTF-8 are skipped and counted in the summary.
    #[arg(long)]
    text: PathBuf,
    /// Field of .jsonl lines / column of .parquet files holding the text.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Layers to cache, comma-separated (0-based). One layer writes the cache into --out itself; several write
    /// --out/layer-L/ for each, all from one forward pass that stops after the deepest.
    #[arg(long, value_delimiter = ',', required = true)]
    layers: Vec<usize>,
    /// Tokens per sequence. Documents are joined with EOS and cut into sequences of this length, as sparsify's
    /// chunk_and_tokenize does; a final short remainder is dropped.
    #[arg(long, default_value_t = 256)]
    ctx_len: usize,
    /// Stop after this many tokens (whole sequences; default: the whole corpus).
    #[arg(long)]
    max_tokens: Option<u64>,
    /// Output directory. Re-running the same command resumes an interrupted extraction; a run with different
    /// arguments into the same directory is refused.
    #[arg(long)]
    out: PathBuf,
    /// Storage type of the cached activations: bf16, f16 or f32.
    #[arg(long, default_value = "bf16", value_parser = one_of::<DType>("--dtype"))]
    dtype: DType,
    /// Rows (tokens) per shard file: 16384 rows of SmolLM2 (d=576) in bf16 are 36 MiB.
    #[arg(long, default_value_t = 16384)]
    shard_rows: u64,
    /// Seed of the sequence shuffle.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_seqs: usize,
    /// Sequences held by the shuffle buffer (a corpus with fewer sequences is shuffled globally).
    #[arg(long, default_value_t = 65536)]
    shuffle_buffer: usize,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// One part of an extraction split over N tasks, into --out/part-I-of-N (and --out/layer-L/part-I-of-N for
    /// several layers); when all N are done, `sparsecoder merge --out` makes them one cache.
    #[command(flatten)]
    part: PartFlags,
}

pub fn extract(cli: ExtractCli) -> Result<ExitCode> {
    let dtype = cli.dtype;
    // Lower bounds are what the flags mean; upper ones keep a typo from buffering a whole corpus in memory
    // (a batch of sequences, or a shard's rows, is held before it is written).
    for (flag, value, least, most) in [
        ("--ctx-len", cli.ctx_len as u64, 2, u64::MAX),
        ("--batch-seqs", cli.batch_seqs as u64, 1, 4096),
        ("--shard-rows", cli.shard_rows, 1, 1 << 24),
        ("--shuffle-buffer", cli.shuffle_buffer as u64, 1, u64::MAX),
    ] {
        if value < least || value > most {
            bail!("{flag} must be between {least} and {most}, found {value}");
        }
    }
    let part = cli.part.resolve()?;
    let args = ExtractArgs {
        model: cli.model,
        text: cli.text,
        text_field: cli.text_field,
        layers: cli.layers,
        ctx_len: cli.ctx_len,
        max_tokens: cli.max_tokens,
        out: cli.out,
        dtype,
        shard_rows: cli.shard_rows,
        seed: cli.seed,
        batch_seqs: cli.batch_seqs,
        shuffle_buffer: cli.shuffle_buffer,
        progress: !cli.quiet,
        part,
    };
    let s = run(&args)?;
    let skipped = if s.skipped_non_utf8 > 0 {
        format!(" ({} non-UTF-8 files skipped)", s.skipped_non_utf8)
    } else {
        String::new()
    };
    if s.already_complete {
        println!(
            "nothing to do: the cache is complete ({} tokens, {} sequences)",
            s.rows_total, s.sequences
        );
    } else {
        println!(
            "extracted {} tokens in {} sequences of {} from {} documents{skipped}: {} computed in {:.1} s \
             ({:.0} tokens/s; forward passes and writing alone {:.0} tokens/s)",
            s.rows_total,
            s.sequences,
            args.ctx_len,
            s.documents,
            s.rows_computed,
            s.seconds,
            s.rows_computed as f64 / s.seconds,
            s.rows_computed as f64 / s.forward_seconds
        );
    }
    for (layer, dir) in &s.caches {
        println!("layer {layer}: {}", dir.display());
    }
    if let Some(p) = part {
        println!(
            "this was part {} of {}: when all {} are done, run `sparsecoder merge {}`",
            p.index,
            p.count,
            p.count,
            args.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
