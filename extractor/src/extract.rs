//! One extraction run: model + text → one activation cache per requested layer, from a single forward pass
//! that stops after the deepest requested layer. Resumable: batches sit on a fixed grid of sequences, so a
//! re-run recomputes exactly the batch it stopped in and writes byte-identical shards.

use crate::model::{LanguageModel, Stop};
use crate::sequences::{build_sequences, SequenceConfig, SequenceStats};
use crate::source::ModelSource;
use crate::tokenizer::TextTokenizer;
use anyhow::{bail, Result};
use cache_format::fsutil::lock_dir;
use cache_format::manifest::Hookpoints;
use cache_format::parts::{Part, PartInfo};
use cache_format::{
    CacheSpec, CacheWriter, DType, Manifest, ModelIdentity, TokenizerIdentity, WriterState,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct ExtractArgs {
    pub model: PathBuf,
    pub text: PathBuf,
    pub text_field: String,
    pub layers: Vec<usize>,
    pub ctx_len: usize,
    pub max_tokens: Option<u64>,
    pub out: PathBuf,
    pub dtype: DType,
    pub shard_rows: u64,
    pub seed: u64,
    /// Sequences per forward pass.
    pub batch_seqs: usize,
    pub shuffle_buffer: usize,
    pub progress: bool,
    /// This run's share of an extraction in parts (`--part I/N`), or the whole.
    pub part: Option<Part>,
}

impl ExtractArgs {
    /// The arguments that decide the cache's content (not where it goes, nor how fast it is made).
    fn content_args(&self) -> serde_json::Value {
        serde_json::json!({
            "text": self.text,
            "text_field": self.text_field,
            "layers": self.layers,
            "ctx_len": self.ctx_len,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "dtype": self.dtype,
            "shard_rows": self.shard_rows,
            "shuffle_buffer": self.shuffle_buffer,
        })
    }

    /// Where layer `layer`'s cache goes: `out` itself for one layer, `out/layer-L` for several.
    pub fn layer_dir(&self, layer: usize) -> PathBuf {
        if self.layers.len() == 1 {
            self.out.clone()
        } else {
            self.out.join(format!("layer-{layer}"))
        }
    }

    /// Where this run writes layer `layer`'s rows: its layer folder, or the part's folder inside it.
    pub fn write_dir(&self, layer: usize) -> PathBuf {
        match self.part {
            Some(p) => self.layer_dir(layer).join(p.dir_name()),
            None => self.layer_dir(layer),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ExtractSummary {
    pub caches: Vec<(usize, PathBuf)>,
    pub sequences: u64,
    /// Rows of the caches written (of this part, for a part).
    pub rows_total: u64,
    /// Rows computed in this run (less than the total after a resume).
    pub rows_computed: u64,
    pub seconds: f64,
    /// Seconds of the forward passes and shard writing alone (without loading and tokenizing).
    pub forward_seconds: f64,
    pub already_complete: bool,
    pub skipped_non_utf8: u64,
    pub documents: u64,
}

pub fn run(args: &ExtractArgs) -> Result<ExtractSummary> {
    let started = Instant::now();
    let source = ModelSource::open(&args.model)?;
    let layers = checked_layers(args, &source)?;
    let tok = source.tokenizer()?;
    let seq_cfg = SequenceConfig {
        ctx_len: args.ctx_len,
        seed: args.seed,
        max_tokens: args.max_tokens,
        shuffle_buffer: args.shuffle_buffer,
    };
    let (tokens, stats) = build_sequences(&args.text, &args.text_field, &tok, &seq_cfg)?;
    if let Some(p) = args.part {
        // Before any part folder exists: an empty one left by a refused run would block other splits.
        p.shards(stats.sequences * args.ctx_len as u64, args.shard_rows)
            .map_err(anyhow::Error::msg)?;
    }
    // Held to the end: a second extraction into this folder is refused rather than interleaved. The parts of
    // one extraction each lock their own folders, so they run at once.
    let _locks = match args.part {
        None => vec![lock_dir(&args.out)?],
        Some(_) => layers
            .iter()
            .map(|&l| lock_dir(&args.write_dir(l)))
            .collect::<Result<_, _>>()?,
    };
    let mut writers = open_writers(args, &source, &layers, &tok, &stats)?;
    let all_complete = writers.iter().all(|w| w.complete);
    let mut summary = ExtractSummary {
        caches: writers.iter().map(|w| (w.layer, w.dir.clone())).collect(),
        sequences: stats.sequences,
        rows_total: writers[0].rows.end - writers[0].rows.start,
        rows_computed: 0,
        seconds: 0.0,
        forward_seconds: 0.0,
        already_complete: all_complete,
        skipped_non_utf8: stats.corpus.skipped_non_utf8,
        documents: stats.corpus.documents,
    };
    if !all_complete {
        let deepest = *layers.last().unwrap();
        let model = source.load(Some(deepest), false)?;
        let forward_started = Instant::now();
        summary.rows_computed =
            forward_batches(args, model.as_ref(), deepest, &tokens, &mut writers)?;
        for w in writers {
            w.writer.finish()?;
        }
        summary.forward_seconds = forward_started.elapsed().as_secs_f64();
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The requested layers, sorted and deduplicated, each within the model and with an output directory that
/// is empty or holds a cache made with the same arguments.
fn checked_layers(args: &ExtractArgs, source: &ModelSource) -> Result<Vec<usize>> {
    if args.layers.is_empty() {
        bail!("--layers: give at least one layer");
    }
    let n_layers = source.num_layers()?;
    let mut layers = args.layers.clone();
    layers.sort_unstable();
    if let Some(twice) = layers.windows(2).find(|w| w[0] == w[1]) {
        bail!("--layers: layer {} is given twice", twice[0]);
    }
    if let Some(&bad) = layers.iter().find(|&&l| l >= n_layers) {
        bail!(
            "--layers: layer {bad} is out of range: {} has layers 0..={}",
            args.model.display(),
            n_layers.saturating_sub(1)
        );
    }
    for &l in &layers {
        if let Some(part) = args.part {
            refuse_other_split(&args.layer_dir(l), part)?;
        }
        // A part's own folder is made once its share is known to exist (by its lock).
        cache_format::fsutil::prepare_output_dir(&args.layer_dir(l))?;
        let dir = args.write_dir(l);
        if let Ok(m) = Manifest::load(&dir) {
            if m.spec.extraction_args != args.content_args() {
                bail!(
                    "{}: holds a cache made with different arguments ({} vs this run's {}); choose another --out or delete it",
                    dir.display(),
                    m.spec.extraction_args,
                    args.content_args()
                );
            }
        }
    }
    Ok(layers)
}

/// Part `part`'s layer folder must not hold a cache made in one part, nor parts of a split into another
/// number of parts.
fn refuse_other_split(layer_dir: &Path, part: Part) -> Result<()> {
    if Manifest::load(layer_dir).is_ok_and(|m| m.parts.is_none()) {
        bail!(
            "{}: holds a cache extracted in one part; extract parts into another --out",
            layer_dir.display()
        );
    }
    Ok(cache_format::parts::refuse_other_split(layer_dir, part)?)
}

/// One requested layer's cache being written.
struct LayerWriter {
    layer: usize,
    dir: PathBuf,
    writer: CacheWriter,
    /// The rows of the extraction's grid this writer holds: all, or its part's.
    rows: Range<u64>,
    /// The cache was already complete when opened.
    complete: bool,
}

/// A writer per layer (resuming what an interrupted run left), each with the manifest's description of the
/// model, tokenizer, corpus and arguments.
fn open_writers(
    args: &ExtractArgs,
    source: &ModelSource,
    layers: &[usize],
    tok: &TextTokenizer,
    stats: &SequenceStats,
) -> Result<Vec<LayerWriter>> {
    let d = source.d_model()? as u32;
    let model_id = ModelIdentity {
        name: source.name(),
        file: args.model.display().to_string(),
        sha256: source.sha256()?,
    };
    let corpus = serde_json::json!({
        "path": args.text,
        "text_field": args.text_field,
        "files": stats.corpus.files,
        "documents": stats.corpus.documents,
        "bytes": stats.corpus.bytes,
        "skipped_non_utf8_files": stats.corpus.skipped_non_utf8,
        "tokens": stats.tokens_in_corpus,
        "sequences_available": stats.sequences_available,
        "sequences": stats.sequences,
        "joining": "sparsify chunk_and_tokenize: groups of 2048 documents, EOS-joined with a leading EOS, remainder dropped",
    });
    let mut writers = Vec::new();
    let total_rows = stats.sequences * args.ctx_len as u64;
    for &l in layers {
        let dir = args.write_dir(l);
        let (mlp_in, mlp_out) = source.hookpoints(l);
        let spec = CacheSpec {
            model: model_id.clone(),
            layer: l as u32,
            hookpoints: Hookpoints { mlp_in, mlp_out },
            d_in: d,
            d_out: d,
            dtype: args.dtype,
            ctx_len: args.ctx_len as u32,
            tokenizer: TokenizerIdentity {
                source: tok.source.clone(),
                vocab_size: tok.vocab_size,
                hash: tok.hash.clone(),
            },
            corpus: corpus.clone(),
            extraction_args: args.content_args(),
            shard_rows: args.shard_rows,
        };
        let part = match args.part {
            Some(p) => Some(PartInfo::plan(&spec, p, total_rows).map_err(anyhow::Error::msg)?),
            None => None,
        };
        let rows = part
            .as_ref()
            .map_or(0..total_rows, |p| p.first_row..p.first_row + p.rows);
        let (writer, state) = CacheWriter::open_part(&dir, spec, part)?;
        writers.push(LayerWriter {
            layer: l,
            dir,
            writer,
            rows,
            complete: matches!(state, WriterState::Complete { .. }),
        });
    }
    Ok(writers)
}

/// Runs the batches of sequences from the one the least advanced writer stopped in to the end of the writers'
/// rows (the whole extraction, or one part's), each forward pass stopping after layer `deepest` and handing
/// every requested layer's MLP input and output to its writer. Batches stay on the extraction's grid of
/// `batch_seqs` sequences whatever part this is, so every row comes from the same batch as in a run in one
/// part. Returns the rows computed.
fn forward_batches(
    args: &ExtractArgs,
    model: &dyn LanguageModel,
    deepest: usize,
    tokens: &[u32],
    writers: &mut [LayerWriter],
) -> Result<u64> {
    let ctx = args.ctx_len;
    let n_seqs = tokens.len() / ctx;
    let d = model.info().d_model;
    // The next row (of the whole grid) each writer needs.
    let next_row = |w: &LayerWriter| w.rows.start + w.writer.rows_written();
    let start_row = writers.iter().map(next_row).min().unwrap_or(0);
    let end_row = writers.iter().map(|w| w.rows.end).max().unwrap_or(0);
    let batch_rows = (args.batch_seqs * ctx) as u64;
    let first_batch = start_row / batch_rows;
    let first_row = writers.iter().map(|w| w.rows.start).min().unwrap_or(0);
    let bar = progress_bar(args.progress, end_row - first_row);
    bar.set_position(start_row - first_row);
    bar.reset_eta();
    let mut rows_computed = 0;
    for b in first_batch..end_row.div_ceil(batch_rows) {
        let first_seq = b as usize * args.batch_seqs;
        let seqs = args.batch_seqs.min(n_seqs - first_seq);
        let batch_tokens = &tokens[first_seq * ctx..(first_seq + seqs) * ctx];
        let row0 = (first_seq * ctx) as u64;
        let seq_ids: Vec<u64> = (0..seqs * ctx)
            .map(|r| (first_seq + r / ctx) as u64)
            .collect();
        let positions: Vec<u32> = (0..seqs * ctx).map(|r| (r % ctx) as u32).collect();
        let mut failure = None;
        model.forward(
            batch_tokens,
            ctx,
            Stop::AfterLayer(deepest),
            &mut |l, mlp_in, mlp_out| {
                let Some(w) = writers.iter_mut().find(|w| w.layer == l) else {
                    return;
                };
                // The rows of this batch the writer still needs: after what it holds (a resume may have left
                // the batch's first rows on disk), before its part's end.
                let rows = seqs * ctx;
                let from = (next_row(w).saturating_sub(row0) as usize).min(rows);
                let to = (w.rows.end.saturating_sub(row0) as usize).min(rows);
                if from >= to {
                    return;
                }
                if let Err(e) = w.writer.push(
                    &mlp_in[from * d..to * d],
                    &mlp_out[from * d..to * d],
                    &batch_tokens[from..to],
                    &seq_ids[from..to],
                    &positions[from..to],
                ) {
                    failure.get_or_insert(e);
                }
            },
        );
        if let Some(e) = failure {
            return Err(e.into());
        }
        let batch_end = row0 + (seqs * ctx) as u64;
        let counted = batch_end.min(end_row) - row0.max(start_row);
        rows_computed += counted;
        bar.inc(counted);
    }
    bar.finish_and_clear();
    Ok(rows_computed)
}

fn progress_bar(visible: bool, rows_total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(rows_total),
        if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {human_pos}/{human_len} tokens, {per_sec}, ETA {eta}",
        )
        .unwrap()
        .progress_chars("=> "),
    );
    bar
}
