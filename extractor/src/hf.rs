//! Hugging Face model folders: `config.json`, safetensors weights (one file or a sharded
//! `model.safetensors.index.json`, memory-mapped; f32, f16 or bf16) and `tokenizer.json`.
//!
//! Reads both config layouts in use: transformers 5 (`rope_parameters` holding theta, scaling and the partial
//! rotary factor) and the older one of the hub checkpoints (`rope_theta`, `rope_scaling`, `rotary_pct`,
//! `rotary_emb_base`). What each architecture reads from them is in [`crate::arch`].

use crate::arch::{self, llama_family, Block, Descriptor};
use crate::llama::Llama;
use crate::model::LanguageModel;
use crate::ops::{RopeScaling, RopeSpec};
use anyhow::{anyhow, bail, Context, Result};
use half::{bf16, f16};
use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// `config.json`, with errors that name the file and the field.
pub struct HfConfig {
    pub(crate) path: PathBuf,
    json: Value,
}

impl HfConfig {
    pub fn parse(path: &Path, text: &[u8]) -> Result<HfConfig> {
        let json: Value = serde_json::from_slice(text)
            .with_context(|| format!("{}: not valid JSON", path.display()))?;
        if !json.is_object() {
            bail!("{}: expected a JSON object", path.display());
        }
        Ok(HfConfig {
            path: path.to_path_buf(),
            json,
        })
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.json.get(key).filter(|v| !v.is_null())
    }

    /// A field of `rope_parameters` (transformers 5) or, failing that, the given top-level legacy field.
    pub(crate) fn rope_field(&self, key: &str, legacy: &str) -> Option<&Value> {
        self.get("rope_parameters")
            .and_then(|r| r.get(key))
            .filter(|v| !v.is_null())
            .or_else(|| self.get(legacy))
    }

    pub(crate) fn usize(&self, key: &str) -> Result<usize> {
        let v = self
            .get(key)
            .ok_or_else(|| anyhow!("{}: field {key:?} is missing", self.path.display()))?;
        v.as_u64().map(|v| v as usize).ok_or_else(|| {
            anyhow!(
                "{}: field {key:?}: expected a non-negative integer, found {v}",
                self.path.display()
            )
        })
    }

    pub(crate) fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.get(key).is_some() {
            self.usize(key)
        } else {
            Ok(default)
        }
    }

    pub(crate) fn number(&self, key: &str, v: Option<&Value>) -> Result<Option<f64>> {
        v.map(|v| {
            v.as_f64().ok_or_else(|| {
                anyhow!(
                    "{}: field {key:?}: expected a number, found {v}",
                    self.path.display()
                )
            })
        })
        .transpose()
    }

    pub(crate) fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.number(key, self.get(key))?.unwrap_or(default))
    }

    pub(crate) fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| {
                anyhow!(
                    "{}: field {key:?}: expected true or false, found {v}",
                    self.path.display()
                )
            }),
        }
    }

    pub(crate) fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// The architecture the file declares, among those of [`crate::arch`].
    pub fn architecture(&self) -> Result<&'static Descriptor> {
        let declared = self
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str);
        let model_type = self.str("model_type");
        arch::find(declared, model_type).ok_or_else(|| {
            anyhow!(
                "{}: architecture {} (model_type {}) is not supported; supported: {}",
                self.path.display(),
                declared.unwrap_or("(none)"),
                model_type.unwrap_or("(none)"),
                arch::supported()
            )
        })
    }

    /// Rotary settings: theta, scaling type (`default` or `llama3`) and the rotary fraction of each head.
    pub(crate) fn rope(
        &self,
        head_dim: usize,
        legacy_theta: &str,
        legacy_fraction: &str,
    ) -> Result<RopeSpec> {
        let base = self
            .number("rope_theta", self.rope_field("rope_theta", legacy_theta))?
            .unwrap_or(10000.0);
        let fraction = self
            .number(
                "partial_rotary_factor",
                self.rope_field("partial_rotary_factor", legacy_fraction),
            )?
            .unwrap_or(1.0);
        // Scaling parameters live in `rope_parameters` (transformers 5) or `rope_scaling` (older configs).
        let params = self
            .get("rope_parameters")
            .filter(|p| p.get("rope_type").is_some())
            .or_else(|| self.get("rope_scaling"));
        let kind = params
            .and_then(|p| p.get("rope_type").or_else(|| p.get("type")))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let scaling = match kind {
            "default" => RopeScaling::None,
            "llama3" => {
                let p = params.unwrap();
                let field = |k: &str| -> Result<f64> {
                    p.get(k).and_then(Value::as_f64).ok_or_else(|| {
                        anyhow!(
                            "{}: llama3 rope scaling needs a number in {k:?}",
                            self.path.display()
                        )
                    })
                };
                RopeScaling::Llama3 {
                    factor: field("factor")?,
                    low_freq_factor: field("low_freq_factor")?,
                    high_freq_factor: field("high_freq_factor")?,
                    original_max_positions: field("original_max_position_embeddings")?,
                }
            }
            other => bail!(
                "{}: rope scaling type {other:?} is not supported (supported: default, llama3)",
                self.path.display()
            ),
        };
        Ok(RopeSpec {
            rotary_dims: (head_dim as f64 * fraction) as usize,
            base,
            scaling,
        })
    }
}

/// One memory-mapped safetensors file and its validated header.
struct WeightFile {
    path: PathBuf,
    map: Mmap,
    data_start: usize,
    header: safetensors::tensor::Metadata,
}

/// A model folder, opened: its config and where each tensor lives. Weights are read on demand.
pub struct HfFolder {
    pub dir: PathBuf,
    pub config: HfConfig,
    pub architecture: &'static Descriptor,
    files: Vec<WeightFile>,
    tensor_file: HashMap<String, usize>,
}

impl HfFolder {
    pub fn open(dir: &Path) -> Result<HfFolder> {
        let config_path = dir.join("config.json");
        let text = std::fs::read(&config_path).with_context(|| {
            format!(
                "{}: cannot read the model's config (a Hugging Face model folder needs config.json)",
                config_path.display()
            )
        })?;
        let config = HfConfig::parse(&config_path, &text)?;
        let architecture = config.architecture()?;
        let index_path = dir.join("model.safetensors.index.json");
        let names: Vec<String> = if index_path.exists() {
            let index: Value = serde_json::from_slice(
                &std::fs::read(&index_path)
                    .with_context(|| format!("{}: cannot read", index_path.display()))?,
            )
            .with_context(|| format!("{}: not valid JSON", index_path.display()))?;
            let map = index
                .get("weight_map")
                .and_then(Value::as_object)
                .ok_or_else(|| anyhow!("{}: no \"weight_map\" object", index_path.display()))?;
            let files: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
            files.into_iter().map(str::to_string).collect()
        } else if dir.join("model.safetensors").exists() {
            vec!["model.safetensors".to_string()]
        } else {
            bail!(
                "{}: no model.safetensors or model.safetensors.index.json (only safetensors weights are read)",
                dir.display()
            );
        };
        let mut files = Vec::new();
        let mut tensor_file = HashMap::new();
        for name in names {
            if name.contains('/') || name.contains("..") {
                bail!(
                    "{}: weight file {name:?} is outside the folder",
                    index_path.display()
                );
            }
            let path = dir.join(&name);
            let file = std::fs::File::open(&path)
                .with_context(|| format!("{}: cannot open weights", path.display()))?;
            // SAFETY: read-only map of a file we do not modify; concurrent truncation by another process is
            // outside what any mmap reader can defend against.
            let map = unsafe { Mmap::map(&file) }
                .with_context(|| format!("{}: cannot map", path.display()))?;
            let (n, header) = SafeTensors::read_metadata(&map)
                .map_err(|e| anyhow!("{}: not a valid safetensors file: {e}", path.display()))?;
            for tensor in header.tensors().keys() {
                tensor_file.insert(tensor.clone(), files.len());
            }
            files.push(WeightFile {
                path,
                map,
                data_start: 8 + n,
                header,
            });
        }
        Ok(HfFolder {
            dir: dir.to_path_buf(),
            config,
            architecture,
            files,
            tensor_file,
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.tensor_file.contains_key(name)
    }

    /// Tensor `name` as f32, checked to have `shape`.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let &i = self.tensor_file.get(name).ok_or_else(|| {
            anyhow!(
                "{}: tensor {name:?} is missing from the weights",
                self.dir.display()
            )
        })?;
        let file = &self.files[i];
        let info = file.header.info(name).expect("indexed tensor");
        if info.shape != shape {
            bail!(
                "{}: tensor {name:?} has shape {:?}, expected {shape:?} from config.json",
                file.path.display(),
                info.shape
            );
        }
        let (s, e) = info.data_offsets;
        let raw = &file.map[file.data_start + s..file.data_start + e];
        let out: Vec<f32> = match info.dtype {
            Dtype::F32 => raw
                .par_chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::F16 => raw
                .par_chunks_exact(2)
                .map(|c| f16::from_le_bytes(c.try_into().unwrap()).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .par_chunks_exact(2)
                .map(|c| bf16::from_le_bytes(c.try_into().unwrap()).to_f32())
                .collect(),
            other => bail!(
                "{}: tensor {name:?} has type {other:?}; supported: F32, F16, BF16",
                file.path.display()
            ),
        };
        Ok(out)
    }

    pub fn num_layers(&self) -> Result<usize> {
        self.config.usize("num_hidden_layers")
    }

    pub fn d_model(&self) -> Result<usize> {
        self.config.usize("hidden_size")
    }

    /// Every file that defines the model, for its identity hash.
    pub fn identity_files(&self) -> Vec<PathBuf> {
        let mut v = vec![
            self.dir.join("config.json"),
            self.dir.join("tokenizer.json"),
        ];
        v.extend(self.files.iter().map(|f| f.path.clone()));
        v
    }

    pub fn name(&self) -> String {
        self.config
            .str("_name_or_path")
            .map(str::to_string)
            .unwrap_or_else(|| {
                self.dir
                    .canonicalize()
                    .unwrap_or(self.dir.clone())
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "model".into())
            })
    }

    /// Loads layers `0..=max_layer` (all when `None`), and the output head when `with_head`.
    pub fn load(
        &self,
        max_layer: Option<usize>,
        with_head: bool,
    ) -> Result<Box<dyn LanguageModel>> {
        let num_layers = self.num_layers()?;
        let last = max_layer.unwrap_or(num_layers.saturating_sub(1));
        if last >= num_layers {
            bail!(
                "layer {last} is out of range: {} has layers 0..={}",
                self.dir.display(),
                num_layers.saturating_sub(1)
            );
        }
        self.architecture.load(self, last, with_head)
    }

    /// Every layer and the head of a Llama-block folder (for generation).
    pub fn load_llama_with_head(&self) -> Result<Llama> {
        let Block::Llama(variant) = self.architecture.block else {
            bail!(
                "{}: generation supports the Llama family (Llama, Gemma 2), not {}",
                self.dir.display(),
                self.architecture.hf_class
            );
        };
        llama_family::load(self, variant, self.num_layers()?.saturating_sub(1), true)
    }

    /// The output head `name`, or the embeddings when they are tied (`tie_word_embeddings`, whose default
    /// is `tied_default`).
    pub(crate) fn output_head(
        &self,
        name: &str,
        tied_default: bool,
        embed: &[f32],
        vocab: usize,
        d: usize,
    ) -> Result<Vec<f32>> {
        if self.has(name) {
            self.tensor(name, &[vocab, d])
        } else if self.config.bool_or("tie_word_embeddings", tied_default)? {
            Ok(embed.to_vec())
        } else {
            bail!(
                "{}: tensor {name:?} is missing and config.json does not tie the embeddings",
                self.dir.display()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> HfConfig {
        HfConfig::parse(Path::new("config.json"), text.as_bytes()).unwrap()
    }

    #[test]
    fn legacy_hub_config_keys_are_read() {
        // Llama 3.2's hub config.json layout (rope_theta, rope_scaling).
        let c = config(
            r#"{"architectures":["LlamaForCausalLM"],"rope_theta":500000.0,
               "rope_scaling":{"factor":32.0,"high_freq_factor":4.0,"low_freq_factor":1.0,
               "original_max_position_embeddings":8192,"rope_type":"llama3"}}"#,
        );
        assert_eq!(c.architecture().unwrap().name, "llama");
        let rope = c.rope(64, "rope_theta", "partial_rotary_factor").unwrap();
        assert_eq!(rope.base, 500000.0);
        assert_eq!(rope.rotary_dims, 64);
        assert_eq!(
            rope.scaling,
            RopeScaling::Llama3 {
                factor: 32.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_positions: 8192.0
            }
        );
        // Pythia's (rotary_pct, rotary_emb_base).
        let c = config(
            r#"{"architectures":["GPTNeoXForCausalLM"],"rotary_pct":0.25,"rotary_emb_base":10000}"#,
        );
        let rope = c.rope(64, "rotary_emb_base", "rotary_pct").unwrap();
        assert_eq!(
            (rope.rotary_dims, rope.base, rope.scaling),
            (16, 10000.0, RopeScaling::None)
        );
    }

    #[test]
    fn unsupported_settings_are_named() {
        let err = config(r#"{"architectures":["MistralForCausalLM"],"model_type":"mistral"}"#)
            .architecture()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("MistralForCausalLM") && err.contains("supported"),
            "{err}"
        );
        let err = config(r#"{"rope_scaling":{"rope_type":"yarn","factor":4.0}}"#)
            .rope(64, "rope_theta", "partial_rotary_factor")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"yarn\"") && err.contains("llama3"), "{err}");
        let err = config(r#"{"hidden_size":"wide"}"#)
            .usize("hidden_size")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("hidden_size") && err.contains("\"wide\""),
            "{err}"
        );
    }
}
