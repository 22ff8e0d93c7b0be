//! Hugging Face model folders: `config.json`, safetensors weights (one file or a sharded
//! `model.safetensors.index.json`, memory-mapped; f32, f16 or bf16) and `tokenizer.json`.
//!
//! Reads both config layouts in use: transformers 5 (`rope_parameters` holding theta, scaling and the partial
//! rotary factor) and the older one of the hub checkpoints (`rope_theta`, `rope_scaling`, `rotary_pct`,
//! `rotary_emb_base`). Architectures: Llama (incl. Llama 3 rope scaling) and Gemma 2 through [`crate::llama`],
//! GPT-NeoX (Pythia) through [`crate::neox`].

use crate::llama::{GateActivation, Layer, Llama, LlamaConfig};
use crate::model::LanguageModel;
use crate::neox::{NeoX, NeoXConfig, NeoXLayer};
use crate::ops::{RopeScaling, RopeSpec};
use anyhow::{anyhow, bail, Context, Result};
use half::{bf16, f16};
use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Gemma2,
    GptNeoX,
}

impl Architecture {
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Gemma2 => "gemma2",
            Architecture::GptNeoX => "gpt_neox",
        }
    }
}

/// `config.json`, with errors that name the file and the field.
pub struct HfConfig {
    path: PathBuf,
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

    fn get(&self, key: &str) -> Option<&Value> {
        self.json.get(key).filter(|v| !v.is_null())
    }

    /// A field of `rope_parameters` (transformers 5) or, failing that, the given top-level legacy field.
    fn rope_field(&self, key: &str, legacy: &str) -> Option<&Value> {
        self.get("rope_parameters")
            .and_then(|r| r.get(key))
            .filter(|v| !v.is_null())
            .or_else(|| self.get(legacy))
    }

    fn usize(&self, key: &str) -> Result<usize> {
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

    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.get(key).is_some() {
            self.usize(key)
        } else {
            Ok(default)
        }
    }

    fn number(&self, key: &str, v: Option<&Value>) -> Result<Option<f64>> {
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

    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.number(key, self.get(key))?.unwrap_or(default))
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
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

    fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    pub fn architecture(&self) -> Result<Architecture> {
        let declared = self
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str);
        let model_type = self.str("model_type");
        match (declared, model_type) {
            (Some("LlamaForCausalLM"), _) | (None, Some("llama")) => Ok(Architecture::Llama),
            (Some("Gemma2ForCausalLM"), _) | (None, Some("gemma2")) => Ok(Architecture::Gemma2),
            (Some("GPTNeoXForCausalLM"), _) | (None, Some("gpt_neox")) => {
                Ok(Architecture::GptNeoX)
            }
            _ => bail!(
                "{}: architecture {} (model_type {}) is not supported; supported: LlamaForCausalLM, \
                 Gemma2ForCausalLM, GPTNeoXForCausalLM",
                self.path.display(),
                declared.unwrap_or("(none)"),
                model_type.unwrap_or("(none)")
            ),
        }
    }

    /// Rotary settings: theta, scaling type (`default` or `llama3`) and the rotary fraction of each head.
    fn rope(&self, head_dim: usize, legacy_theta: &str, legacy_fraction: &str) -> Result<RopeSpec> {
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
    pub architecture: Architecture,
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
        Ok(match self.architecture {
            Architecture::Llama | Architecture::Gemma2 => {
                Box::new(self.load_llama(last, with_head)?)
            }
            Architecture::GptNeoX => Box::new(self.load_neox(last, with_head)?),
        })
    }

    fn llama_config(&self) -> Result<LlamaConfig> {
        let c = &self.config;
        let gemma = self.architecture == Architecture::Gemma2;
        let d_model = c.usize("hidden_size")?;
        let heads = c.usize("num_attention_heads")?;
        let kv_heads = c.usize_or("num_key_value_heads", heads)?;
        if heads == 0 {
            bail!("{}: num_attention_heads is 0", c.path.display());
        }
        let head_dim = c.usize_or("head_dim", d_model / heads)?;
        let num_layers = c.usize("num_hidden_layers")?;
        for flag in ["attention_bias", "mlp_bias"] {
            if c.bool_or(flag, false)? {
                bail!(
                    "{}: {flag} = true is not supported for {}",
                    c.path.display(),
                    self.architecture.name()
                );
            }
        }
        let act = c
            .str("hidden_activation")
            .or_else(|| c.str("hidden_act"))
            .unwrap_or(if gemma { "gelu_pytorch_tanh" } else { "silu" });
        let mlp_activation = match act {
            "silu" | "swish" => GateActivation::Silu,
            "gelu_pytorch_tanh" | "gelu_tanh" => GateActivation::GeluTanh,
            other => bail!(
                "{}: MLP activation {other:?} is not supported (supported: silu, gelu_pytorch_tanh)",
                c.path.display()
            ),
        };
        // Gemma 2 alternates sliding-window and global layers, starting with a sliding one.
        let sliding_layers = match c.get("layer_types").and_then(Value::as_array) {
            Some(types) if types.len() == num_layers => types
                .iter()
                .map(|t| t.as_str() == Some("sliding_attention"))
                .collect(),
            Some(types) => bail!(
                "{}: layer_types lists {} layers, num_hidden_layers is {num_layers}",
                c.path.display(),
                types.len()
            ),
            None => (0..num_layers).map(|l| gemma && l % 2 == 0).collect(),
        };
        let softcap =
            |k: &str| -> Result<Option<f32>> { Ok(c.number(k, c.get(k))?.map(|v| v as f32)) };
        let config = LlamaConfig {
            architecture: self.architecture.name().into(),
            num_layers,
            d_model,
            d_ffn: c.usize("intermediate_size")?,
            heads,
            kv_heads,
            head_dim,
            rope: c.rope(head_dim, "rope_theta", "partial_rotary_factor")?,
            rms_eps: c.f64_or("rms_norm_eps", 1e-6)? as f32,
            vocab_size: c.usize("vocab_size")?,
            attn_scale: if gemma {
                (c.f64_or("query_pre_attn_scalar", head_dim as f64)?).powf(-0.5) as f32
            } else {
                1.0 / (head_dim as f32).sqrt()
            },
            attn_softcap: if gemma {
                softcap("attn_logit_softcapping")?
            } else {
                None
            },
            final_softcap: if gemma {
                softcap("final_logit_softcapping")?
            } else {
                None
            },
            sliding_window: if gemma {
                Some(c.usize("sliding_window")?)
            } else {
                None
            },
            sliding_layers,
            embed_scale: gemma.then(|| (d_model as f64).sqrt() as f32),
            mlp_activation,
        };
        config.check(&c.path.display().to_string())?;
        Ok(config)
    }

    /// Every layer and the head of a Llama-family folder (for generation).
    pub fn load_llama_with_head(&self) -> Result<Llama> {
        if self.architecture == Architecture::GptNeoX {
            bail!(
                "{}: generation supports the Llama family (Llama, Gemma 2), not GPT-NeoX",
                self.dir.display()
            );
        }
        self.load_llama(self.num_layers()?.saturating_sub(1), true)
    }

    fn load_llama(&self, last: usize, with_head: bool) -> Result<Llama> {
        let config = self.llama_config()?;
        let gemma = self.architecture == Architecture::Gemma2;
        let (d, f) = (config.d_model, config.d_ffn);
        let (qd, kvd) = (
            config.heads * config.head_dim,
            config.kv_heads * config.head_dim,
        );
        // Gemma's RMSNorm multiplies by (1 + weight); adding the 1 here is the same f32 operation.
        let norm = |name: &str| -> Result<Vec<f32>> {
            let mut w = self.tensor(name, &[d])?;
            if gemma {
                w.iter_mut().for_each(|v| *v += 1.0);
            }
            Ok(w)
        };
        let layers = (0..=last)
            .into_par_iter()
            .map(|l| -> Result<Layer> {
                let p = format!("model.layers.{l}");
                let t =
                    |name: &str, shape: &[usize]| self.tensor(&format!("{p}.{name}.weight"), shape);
                let n = |name: &str| norm(&format!("{p}.{name}.weight"));
                Ok(Layer {
                    attn_norm: n("input_layernorm")?,
                    wq: t("self_attn.q_proj", &[qd, d])?,
                    wk: t("self_attn.k_proj", &[kvd, d])?,
                    wv: t("self_attn.v_proj", &[kvd, d])?,
                    wo: t("self_attn.o_proj", &[d, qd])?,
                    post_attn_norm: if gemma {
                        Some(n("post_attention_layernorm")?)
                    } else {
                        None
                    },
                    ffn_norm: if gemma {
                        n("pre_feedforward_layernorm")?
                    } else {
                        n("post_attention_layernorm")?
                    },
                    w_gate: t("mlp.gate_proj", &[f, d])?,
                    w_up: t("mlp.up_proj", &[f, d])?,
                    w_down: t("mlp.down_proj", &[d, f])?,
                    post_ffn_norm: if gemma {
                        Some(n("post_feedforward_layernorm")?)
                    } else {
                        None
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embed = self.tensor("model.embed_tokens.weight", &[config.vocab_size, d])?;
        let head = if with_head {
            Some((
                norm("model.norm.weight")?,
                self.output_head(&embed, config.vocab_size, d)?,
            ))
        } else {
            None
        };
        Ok(Llama::new(self.name(), config, embed, layers, head))
    }

    /// `lm_head.weight` (`embed_out.weight` for NeoX), or the embeddings when they are tied.
    fn output_head(&self, embed: &[f32], vocab: usize, d: usize) -> Result<Vec<f32>> {
        let name = match self.architecture {
            Architecture::GptNeoX => "embed_out.weight",
            _ => "lm_head.weight",
        };
        let tied_default = self.architecture == Architecture::Gemma2;
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

    fn load_neox(&self, last: usize, with_head: bool) -> Result<NeoX> {
        let c = &self.config;
        let d = c.usize("hidden_size")?;
        let heads = c.usize("num_attention_heads")?;
        if heads == 0 || d % heads != 0 {
            bail!(
                "{}: {heads} heads do not divide hidden_size {d}",
                c.path.display()
            );
        }
        let head_dim = d / heads;
        let act = c.str("hidden_act").unwrap_or("gelu");
        if act != "gelu" {
            bail!(
                "{}: MLP activation {act:?} is not supported for gpt_neox (supported: gelu)",
                c.path.display()
            );
        }
        if !c.bool_or("attention_bias", true)? {
            bail!(
                "{}: attention_bias = false is not supported for gpt_neox",
                c.path.display()
            );
        }
        let config = NeoXConfig {
            num_layers: c.usize("num_hidden_layers")?,
            d_model: d,
            d_ffn: c.usize("intermediate_size")?,
            heads,
            head_dim,
            rope: c.rope(head_dim, "rotary_emb_base", "rotary_pct")?,
            eps: c.f64_or("layer_norm_eps", 1e-5)? as f32,
            vocab_size: c.usize("vocab_size")?,
            parallel_residual: c.bool_or("use_parallel_residual", true)?,
        };
        if config.rope.rotary_dims % 2 != 0 || config.rope.rotary_dims > head_dim {
            bail!(
                "{}: {} rotary dimensions do not fit head size {head_dim}",
                c.path.display(),
                config.rope.rotary_dims
            );
        }
        let f = config.d_ffn;
        let layers = (0..=last)
            .into_par_iter()
            .map(|l| -> Result<NeoXLayer> {
                let p = format!("gpt_neox.layers.{l}");
                let t = |name: &str, shape: &[usize]| self.tensor(&format!("{p}.{name}"), shape);
                let (qkv_w, qkv_b) = (
                    t("attention.query_key_value.weight", &[3 * d, d])?,
                    t("attention.query_key_value.bias", &[3 * d])?,
                );
                let [wq, wk, wv] = split_fused_qkv(&qkv_w, heads, head_dim, d);
                let [bq, bk, bv] = split_fused_qkv(&qkv_b, heads, head_dim, 1);
                Ok(NeoXLayer {
                    ln1: (
                        t("input_layernorm.weight", &[d])?,
                        t("input_layernorm.bias", &[d])?,
                    ),
                    wq,
                    bq,
                    wk,
                    bk,
                    wv,
                    bv,
                    wo: t("attention.dense.weight", &[d, d])?,
                    bo: t("attention.dense.bias", &[d])?,
                    ln2: (
                        t("post_attention_layernorm.weight", &[d])?,
                        t("post_attention_layernorm.bias", &[d])?,
                    ),
                    w_in: t("mlp.dense_h_to_4h.weight", &[f, d])?,
                    b_in: t("mlp.dense_h_to_4h.bias", &[f])?,
                    w_out: t("mlp.dense_4h_to_h.weight", &[d, f])?,
                    b_out: t("mlp.dense_4h_to_h.bias", &[d])?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embed = self.tensor("gpt_neox.embed_in.weight", &[config.vocab_size, d])?;
        let head = if with_head {
            Some((
                (
                    self.tensor("gpt_neox.final_layer_norm.weight", &[d])?,
                    self.tensor("gpt_neox.final_layer_norm.bias", &[d])?,
                ),
                self.output_head(&embed, config.vocab_size, d)?,
            ))
        } else {
            None
        };
        Ok(NeoX::new(self.name(), config, embed, layers, head))
    }
}

/// GPT-NeoX fuses Q, K and V into one projection whose output rows are grouped per head:
/// `[head 0: q(hd) k(hd) v(hd), head 1: …]`. Splits it into separate `[heads·hd × cols]` Q, K, V.
fn split_fused_qkv(w: &[f32], heads: usize, hd: usize, cols: usize) -> [Vec<f32>; 3] {
    let mut out: [Vec<f32>; 3] = std::array::from_fn(|_| Vec::with_capacity(w.len() / 3));
    for h in 0..heads {
        for (part, dst) in out.iter_mut().enumerate() {
            let start = (h * 3 + part) * hd * cols;
            dst.extend_from_slice(&w[start..start + hd * cols]);
        }
    }
    out
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
        assert_eq!(c.architecture().unwrap(), Architecture::Llama);
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

    #[test]
    fn fused_qkv_split_follows_the_per_head_layout() {
        // 2 heads of width 2, one column: rows q0 q0 k0 k0 v0 v0 q1 q1 k1 k1 v1 v1.
        let w: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let [q, k, v] = split_fused_qkv(&w, 2, 2, 1);
        assert_eq!(q, [0.0, 1.0, 6.0, 7.0]);
        assert_eq!(k, [2.0, 3.0, 8.0, 9.0]);
        assert_eq!(v, [4.0, 5.0, 10.0, 11.0]);
    }
}
