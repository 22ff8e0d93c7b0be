//! What `--model` names: a GGUF file (Llama architecture) or a Hugging Face model folder ([`crate::hf`]).
//! Both give the same things: sizes, the tokenizer, the model's identity, hookpoint names, and the
//! [`LanguageModel`] itself, loaded only as deep as needed.

use crate::gguf::GgufFile;
use crate::hf::HfFolder;
use crate::llama::Llama;
use crate::model::LanguageModel;
use crate::tokenizer::TextTokenizer;
use anyhow::{bail, Context, Result};
use cache_format::ModelIdentity;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

pub enum ModelSource {
    Gguf(GgufFile),
    HfFolder(HfFolder),
}

impl ModelSource {
    /// A directory is a Hugging Face folder; anything else is read as GGUF.
    pub fn open(path: &Path) -> Result<ModelSource> {
        if path.is_dir() {
            Ok(ModelSource::HfFolder(HfFolder::open(path)?))
        } else {
            Ok(ModelSource::Gguf(GgufFile::open(path)?))
        }
    }

    pub fn path(&self) -> PathBuf {
        match self {
            ModelSource::Gguf(g) => g.path().to_path_buf(),
            ModelSource::HfFolder(h) => h.dir.clone(),
        }
    }

    pub fn num_layers(&self) -> Result<usize> {
        match self {
            ModelSource::Gguf(g) => Ok(g.get_u64(&g.arch_key("block_count")?)? as usize),
            ModelSource::HfFolder(h) => h.num_layers(),
        }
    }

    pub fn d_model(&self) -> Result<usize> {
        match self {
            ModelSource::Gguf(g) => Ok(g.get_u64(&g.arch_key("embedding_length")?)? as usize),
            ModelSource::HfFolder(h) => h.d_model(),
        }
    }

    pub fn name(&self) -> String {
        match self {
            ModelSource::Gguf(g) => g.get_str("general.name").unwrap_or("unknown").to_string(),
            ModelSource::HfFolder(h) => h.name(),
        }
    }

    pub fn tokenizer(&self) -> Result<TextTokenizer> {
        match self {
            ModelSource::Gguf(g) => TextTokenizer::from_gguf(g),
            ModelSource::HfFolder(h) => TextTokenizer::from_hf_folder(&h.dir),
        }
    }

    /// Layers `0..=max_layer` (all when `None`), with the output head when `with_head`.
    pub fn load(
        &self,
        max_layer: Option<usize>,
        with_head: bool,
    ) -> Result<Box<dyn LanguageModel>> {
        match self {
            ModelSource::Gguf(g) => Ok(Box::new(Llama::from_gguf(g, max_layer, with_head)?)),
            ModelSource::HfFolder(h) => h.load(max_layer, with_head),
        }
    }

    /// Opens the model at `path`, refused unless it is the one `identity` names (by sha256): the model a cache
    /// was extracted from.
    pub fn open_matching(path: &Path, identity: &ModelIdentity) -> Result<ModelSource> {
        let source = ModelSource::open(path)?;
        let sha = source.sha256()?;
        if sha != identity.sha256 {
            bail!(
                "{}: sha256 {sha} is not that of the model the cache was extracted from ({})",
                path.display(),
                identity.sha256
            );
        }
        Ok(source)
    }

    /// The model's identity: sha256 of the GGUF file; for a folder, sha256 over the names and sha256s of
    /// config.json, tokenizer.json and every weight file.
    pub fn sha256(&self) -> Result<String> {
        match self {
            ModelSource::Gguf(g) => sha256_file(g.path()),
            ModelSource::HfFolder(h) => {
                let mut all = Sha256::new();
                for f in h.identity_files() {
                    let name = f
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    all.update(format!("{name} {}\n", sha256_file(&f)?));
                }
                Ok(format!("{:x}", all.finalize()))
            }
        }
    }

    /// What the MLP input and output hookpoints of `layer` are, in the model's own module names.
    pub fn hookpoints(&self, layer: usize) -> (String, String) {
        match self {
            // Gemma 3's names are Gemma 2's (transformers' Gemma3DecoderLayer has the same norms).
            ModelSource::Gguf(g)
                if g.get_str("general.architecture")
                    .is_ok_and(|a| a == "gemma3") =>
            {
                crate::arch::gemma2::hookpoints(layer)
            }
            ModelSource::Gguf(_) => crate::arch::llama::hookpoints(layer),
            ModelSource::HfFolder(h) => (h.architecture.hookpoints)(layer),
        }
    }
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}
