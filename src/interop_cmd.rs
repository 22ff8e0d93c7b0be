//! `sparsecoder export` and `sparsecoder import`: flags → the `interop` crate.

use anyhow::{bail, Result};
use clap::Args;
use interop::{
    circuit_tracer, delphi, fresh_out_dir, gemma_scope, llama_scope, model_name, open_source,
    saelens, ExportFormat, ImportFormat,
};
use std::path::PathBuf;
use std::process::ExitCode;
use trainer::checkpoint::find_coders;

#[derive(Args)]
pub struct ExportCli {
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Coder folders, or folders holding coder folders (a sweep's output).
    #[arg(required = true)]
    coders: Vec<PathBuf>,
    /// A new folder for the export.
    #[arg(long)]
    out: PathBuf,
    /// The cache the coders were trained on, or a multi-layer extraction holding one `layer-L` per coder's
    /// layer (default: the one each coder's sparsecoder.json names; imported coders name none).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// The model name written into the target's config (default: the cache's model name), e.g. the Hugging
    /// Face id the other tool should load.
    #[arg(long)]
    model_name: Option<String>,
    /// circuit-tracer's scan name (default: sparsecoder-<cache id>).
    #[arg(long)]
    scan: Option<String>,
    /// Held-out rows written beside the export with our coder's latents and output on them, to check the
    /// other tool against.
    #[arg(long, default_value_t = 64)]
    sample_rows: usize,
    /// circuit-tracer: the feature files its graph frontend shows, from interp's records of each layer's
    /// coder: LAYER=INTERP_OUT/<coder>/latents.jsonl, once per layer with records.
    #[arg(long, num_args = 1..)]
    features: Vec<String>,
    /// delphi: tokens of whole sequences to record (default: all of the cache).
    #[arg(long)]
    max_tokens: Option<u64>,
    /// delphi: files per hookpoint, each holding a range of latents.
    #[arg(long, default_value_t = 5)]
    splits: usize,
}

pub fn export(cli: ExportCli) -> Result<ExitCode> {
    let dirs = find_coders(&cli.coders)?;
    let sources = dirs
        .iter()
        .map(|d| open_source(d, cli.cache.as_deref()))
        .collect::<Result<Vec<_>>>()?;
    let name = model_name(&sources[0].cache.manifest().spec, cli.model_name.as_deref());
    if !cli.features.is_empty() && cli.format != ExportFormat::CircuitTracer {
        bail!("--features: feature files are circuit-tracer's; give --format circuit-tracer");
    }
    fresh_out_dir(&cli.out)?;
    match cli.format {
        ExportFormat::Saelens => {
            for s in &sources {
                // Several layers' sweeps share coder names: one folder per layer keeps them apart.
                let folder = cli
                    .out
                    .join(format!("layer_{}", s.loaded.meta.layer))
                    .join(&s.loaded.name);
                saelens::export(s, &folder, &name, cli.sample_rows)?;
                println!("{}", folder.display());
            }
        }
        ExportFormat::CircuitTracer => {
            let n = sources.len();
            let features = cli
                .features
                .iter()
                .map(|f| interop::features::parse_arg(f))
                .collect::<Result<Vec<_>>>()?;
            circuit_tracer::export(
                sources,
                &cli.out,
                &name,
                cli.scan.as_deref(),
                cli.sample_rows,
                &features,
            )?;
            println!("{} ({n} layers)", cli.out.display());
        }
        ExportFormat::Delphi => {
            let mut layers = std::collections::BTreeSet::new();
            for s in &sources {
                if !layers.insert(s.loaded.meta.layer) {
                    bail!(
                        "{}: a second coder of layer {}: delphi's cache holds one coder per hookpoint",
                        s.dir.display(),
                        s.loaded.meta.layer
                    );
                }
            }
            for s in &sources {
                let d = delphi::export(s, &cli.out, &name, cli.max_tokens, cli.splits)?;
                println!(
                    "{}: {} sequences, {} activations{}",
                    cli.out.join("latents").join(&d.hookpoint).display(),
                    d.sequences,
                    d.activations,
                    match d.partial_rows {
                        0 => String::new(),
                        n => format!(" ({n} rows of cut sequences left out)"),
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ImportCli {
    #[arg(long, value_enum)]
    format: ImportFormat,
    /// The published coder's folder.
    source: PathBuf,
    /// A new folder for our layout (one coder folder per layer for a transcoder set).
    #[arg(long)]
    out: PathBuf,
    /// TopK's k, for a circuit-tracer set whose config.yaml has none.
    #[arg(long)]
    k: Option<usize>,
    /// Gemma Scope: the layer, when the path has no `layer_L`.
    #[arg(long)]
    layer: Option<u32>,
    /// Gemma Scope: what the file codes, when its path does not say (a `transcoder` or `mlp` folder).
    #[arg(long, value_enum)]
    site: Option<gemma_scope::Site>,
}

pub fn import(cli: ImportCli) -> Result<ExitCode> {
    if cli.k.is_some() && cli.format != ImportFormat::CircuitTracer {
        bail!(
            "--k: only a circuit-tracer set lacks k; {:?} files carry it",
            cli.format
        );
    }
    if (cli.layer.is_some() || cli.site.is_some()) && cli.format != ImportFormat::GemmaScope {
        bail!(
            "--layer and --site are for --format gemma-scope; {:?} files say them",
            cli.format
        );
    }
    fresh_out_dir(&cli.out)?;
    match cli.format {
        ImportFormat::Saelens => {
            saelens::import(&cli.source, &cli.out)?;
            println!("{}", cli.out.display());
        }
        ImportFormat::CircuitTracer => {
            for dir in circuit_tracer::import(&cli.source, &cli.out, cli.k)? {
                println!("{}", dir.display());
            }
        }
        ImportFormat::LlamaScope => {
            llama_scope::import(&cli.source, &cli.out)?;
            println!("{}", cli.out.display());
        }
        ImportFormat::GemmaScope => {
            gemma_scope::import(&cli.source, &cli.out, cli.layer, cli.site)?;
            println!("{}", cli.out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
