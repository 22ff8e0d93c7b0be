//! Finding trained coders on disk and what they read from a cache: shared by `eval` and `interp`.

use anyhow::{bail, Context, Result};
use cache_format::CacheSpec;
use cache_format::Section;
use std::path::Path;
use std::path::PathBuf;
use trainer::checkpoint::{load_coder, CoderMeta};
use trainer::coder::{Kind, SparseCoder};

/// Every coder folder at or directly below each path, in sorted order.
pub fn find_coders(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for p in paths {
        if p.join("sparsecoder.json").exists() {
            found.push(p.clone());
            continue;
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(p)
            .with_context(|| format!("{}: cannot read checkpoints folder", p.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|d| d.join("sparsecoder.json").exists())
            .collect();
        if subs.is_empty() {
            bail!(
                "{}: holds no coder (no sparsecoder.json in it or its subfolders)",
                p.display()
            );
        }
        subs.sort();
        found.extend(subs);
    }
    Ok(found)
}

/// Input and target of a coder among a row's two sides.
pub fn sides(meta: &CoderMeta) -> (Section, Section) {
    match (meta.config.kind, meta.sae_on.as_deref()) {
        (Kind::Sae, Some("mlp_in")) => (Section::MlpIn, Section::MlpIn),
        (Kind::Sae, _) => (Section::MlpOut, Section::MlpOut),
        _ => (Section::MlpIn, Section::MlpOut),
    }
}

/// A coder folder's name, coder and metadata, refused unless it was trained on the cache's layer and width.
pub fn load_for_cache(dir: &Path, spec: &CacheSpec) -> Result<(String, SparseCoder, CoderMeta)> {
    let (coder, meta) = load_coder(dir)?;
    if meta.layer != spec.layer || coder.cfg.d_in != spec.d_in as usize {
        bail!(
            "{}: trained on layer {} width {}, but the cache holds layer {} width {}",
            dir.display(),
            meta.layer,
            coder.cfg.d_in,
            spec.layer,
            spec.d_in
        );
    }
    let name = dir
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    Ok((name, coder, meta))
}
