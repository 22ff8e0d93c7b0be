//! `sparsecoder`: the command line. Each subcommand lives in its own module and only wires the crates together.

mod cache_cmds;
mod eval_cmd;
mod extract_cmd;
mod flags;
mod interop_cmd;
mod interp_cmd;
mod train_cmd;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sparsecoder",
    version,
    about = "Sparse coders (TopK SAEs, transcoders, skip transcoders) on language-model MLPs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per run
enum Command {
    /// Run a model over text and cache the MLP inputs and outputs of one or more layers.
    Extract(extract_cmd::ExtractCli),
    /// Train TopK sparse coders (SAE, transcoder, skip transcoder) from an activation cache, on the CPU or an
    /// NVIDIA GPU.
    Train(train_cmd::TrainCli),
    /// Compare trained coders on held-out data: FVU, L0, dead latents, and the model's CE loss with the coder
    /// patched in place of the MLP.
    Eval(eval_cmd::EvalCli),
    /// Explain and score coder latents (automated interpretability): explanations from activating examples,
    /// detection and fuzzing scores, an HTML report; with the local model (offline) or an OpenAI-compatible
    /// server.
    Interp(interp_cmd::InterpCli),
    /// Write coders in another tool's layout: SAELens `topk` SAEs, or a circuit-tracer transcoder set (one
    /// transcoder per layer), with where they came from and held-out rows to check that tool against.
    Export(interop_cmd::ExportCli),
    /// Read a published coder (SAELens `topk`, a circuit-tracer TopK transcoder set) into our layout, so that
    /// `eval` and `interp` take it.
    Import(interop_cmd::ImportCli),
    /// One report over several layers' evaluated sweeps (each a `train` output folder holding `eval`'s
    /// eval.json): the paper's Tables 1 and 3 layout, its orderings checked, time to quality, held-out FVU
    /// curves (report.md and PNGs).
    Report {
        /// Sweep folders, one per layer.
        #[arg(required = true)]
        sweeps: Vec<PathBuf>,
        /// Where report.md and the plots go.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print what an activation cache holds: its manifest and per-shard statistics.
    Inspect {
        /// Cache directory (the one holding manifest.json).
        dir: PathBuf,
    },
    /// Check every byte of a cache: headers, section and file checksums, manifest agreement, NaN/Inf rows.
    /// Exits non-zero naming each damaged shard and section. Never modifies anything.
    Validate { dir: PathBuf },
    /// Compress every shard to the zstd archival form (shard-NNNNNN.bin.zst); readers decompress on open.
    Compress {
        dir: PathBuf,
        /// zstd level (1-22).
        #[arg(long, default_value_t = 3)]
        level: i32,
    },
    /// Turn zstd-archived shards back into plain, memory-mappable shards.
    Decompress { dir: PathBuf },
    /// Make the parts of an extraction (`extract --part I/N` into DIR) one cache in DIR: checks that all N
    /// are present, complete and of one extraction, and writes DIR/manifest.json naming their shards where they
    /// are (nothing is copied). For several layers, merges each DIR/layer-L.
    Merge { dir: PathBuf },
    /// Write a cache of random rows (bf16) of any width: for benchmarks at shapes no local model has (e.g.
    /// d = 2048), never for results.
    #[command(allow_negative_numbers = true)]
    SynthCache {
        dir: PathBuf,
        #[arg(long)]
        d_in: u32,
        #[arg(long)]
        d_out: u32,
        #[arg(long)]
        rows: usize,
        #[arg(long, default_value_t = 16384)]
        shard_rows: u64,
    },
}

fn main() -> ExitCode {
    // Output piped into `head` ends quietly, as for any Unix tool, instead of a panic on a closed pipe.
    #[cfg(unix)]
    // SAFETY: called before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // The forward pass frees and reallocates the same large activation buffers every layer: keep them in
    // the heap instead of returning them to the kernel, which costs a page fault per page on every reuse.
    #[cfg(target_os = "linux")]
    // SAFETY: plain allocator tuning before any allocation-heavy work.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Extract(args) => extract_cmd::extract(args),
        Command::Train(args) => train_cmd::train(args),
        Command::Eval(args) => eval_cmd::eval(args),
        Command::Interp(args) => interp_cmd::interp(args),
        Command::Export(args) => interop_cmd::export(args),
        Command::Import(args) => interop_cmd::import(args),
        Command::Report { sweeps, out } => eval_cmd::paper_report(&sweeps, &out),
        Command::Inspect { dir } => cache_cmds::inspect(&dir),
        Command::Validate { dir } => cache_cmds::validate(&dir),
        Command::Compress { dir, level } => cache_cmds::archive(&dir, true, level),
        Command::Decompress { dir } => cache_cmds::archive(&dir, false, 0),
        Command::Merge { dir } => cache_cmds::merge(&dir),
        Command::SynthCache {
            dir,
            d_in,
            d_out,
            rows,
            shard_rows,
        } => cache_cmds::synth_cache(&dir, d_in, d_out, rows, shard_rows),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
