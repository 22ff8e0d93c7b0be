//! circuit-tracer transcoder sets: a folder with `config.yaml` and one `layer_{i}.safetensors` per layer,
//! which `load_transcoder_from_hub(<folder>)` loads offline (a folder holding config.yaml counts as cached).
//!
//! ```text
//! config.yaml   model_name, model_kind: transcoder_set, feature_input_hook: mlp.hook_in,
//!               feature_output_hook: mlp.hook_out, scan; ours: activation: topk, k, sparsecoder (provenance)
//! layer_i       W_enc [d_sae × d_model], b_enc [d_sae], W_dec [d_sae × d_model], b_dec [d_model],
//!               W_skip [d_model × d_model] (skip transcoders; applied as x·W_skipᵀ)
//! ```
//! Our tensors have these orientations already, so they are copied. circuit-tracer's loader builds every
//! layer with ReLU (JumpReLU when the file has `activation_function.threshold`) and reads no k; its `TopK`
//! class exists but keeps negative values, while ours applies ReLU first. The function is the same when the
//! activation function is set, after loading, to ReLU of that TopK: `relu(TopK(k)(pre))` keeps the k largest
//! pre-activations and zeroes the negative ones, as `TopK(ReLU(pre))` does. `scripts/check_exports.py` does
//! exactly this and compares on our held-out rows; the set needs layers 0…n−1 (the loader asserts it).
//!
//! Import reads such a set (ours or anyone's) into one coder folder per layer: JumpReLU where a layer has
//! `activation_function.threshold`, else TopK with `k` from config.yaml or `--k`. A plain ReLU set (no
//! threshold, no k) is refused: our coders cannot compute it.

use crate::tensors::{self, Values};
use crate::{sample, ExportSource};
use anyhow::{anyhow, bail, Context, Result};
use cache_format::fsutil::write_atomic;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use trainer::coder::{CoderConfig, Kind, SparseCoder};
use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

pub const CONFIG: &str = "config.yaml";
const INPUT_HOOK: &str = "mlp.hook_in";
const OUTPUT_HOOKS: [&str; 2] = ["mlp.hook_out", "hook_mlp_out"];

fn layer_file(layer: usize) -> String {
    format!("layer_{layer}.safetensors")
}

/// Refuses a set circuit-tracer could not load as one transcoder set: every coder a transcoder of one kind,
/// width and k, from one model, covering layers 0…n−1 once each. Returns the sources ordered by layer.
fn check_set(sources: Vec<ExportSource>) -> Result<Vec<ExportSource>> {
    let Some(first) = sources.first() else {
        bail!("no coder given");
    };
    let c0 = first.loaded.coder.cfg.clone();
    let model0 = first.cache.manifest().spec.model.sha256.clone();
    for s in &sources {
        let c = &s.loaded.coder.cfg;
        if c.kind == Kind::Sae {
            bail!(
                "{}: config.kind is sae: a circuit-tracer transcoder set maps each MLP's input to its output; \
                 export SAEs with --format saelens",
                s.dir.display()
            );
        }
        for (field, here, there) in [
            (
                "activation",
                format!("{:?}", s.loaded.meta.activation),
                format!("{:?}", first.loaded.meta.activation),
            ),
            (
                "kind",
                c.kind.short().to_string(),
                c0.kind.short().to_string(),
            ),
            (
                "num_latents",
                c.num_latents.to_string(),
                c0.num_latents.to_string(),
            ),
            ("k", c.k.to_string(), c0.k.to_string()),
            ("d_in", c.d_in.to_string(), c0.d_in.to_string()),
        ] {
            if here != there {
                bail!(
                    "{}: config.{field} is {here}, but {} has {there}; a transcoder set needs one value",
                    s.dir.display(),
                    first.dir.display()
                );
            }
        }
        if s.cache.manifest().spec.model.sha256 != model0 {
            bail!(
                "{}: its cache's model.sha256 differs from {}'s; a transcoder set is of one model",
                s.dir.display(),
                first.dir.display()
            );
        }
    }
    let mut sources = sources;
    sources.sort_by_key(|s| s.loaded.meta.layer);
    for (i, s) in sources.iter().enumerate() {
        if s.loaded.meta.layer as usize != i {
            bail!(
                "{}: layer {} where layer {i} was expected: circuit-tracer needs one transcoder for each of \
                 layers 0…{} (missing or repeated layer {i})",
                s.dir.display(),
                s.loaded.meta.layer,
                sources.len() - 1
            );
        }
    }
    Ok(sources)
}

/// Exports a transcoder set (one coder per layer) into `out`.
pub fn export(
    sources: Vec<ExportSource>,
    out: &Path,
    model_name: &str,
    scan: Option<&str>,
    sample_rows: usize,
    features: &[(u32, PathBuf)],
) -> Result<()> {
    let sources = check_set(sources)?;
    let c0 = &sources[0].loaded.coder.cfg;
    let scan = scan.map_or_else(
        || format!("sparsecoder-{}", sources[0].provenance.cache_id),
        str::to_string,
    );
    let mut samples = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        write_layer(s, &out.join(layer_file(i)))?;
        samples.push((format!("layer_{i}."), sample::take(s, sample_rows)?));
    }
    sample::write(out, &samples)?;
    let mut config = json!({
        "model_name": model_name,
        "model_kind": "transcoder_set",
        "feature_input_hook": INPUT_HOOK,
        "feature_output_hook": OUTPUT_HOOKS[0],
        "scan": scan,
        "sparsecoder": {
            "layers": sources.iter().map(|s| &s.provenance).collect::<Vec<_>>(),
        },
    });
    if sources[0].loaded.coder.threshold.is_some() {
        // circuit-tracer's loader makes a layer JumpReLU from its threshold tensor by itself.
        config["activation"] = json!("jumprelu");
    } else {
        config["activation"] = json!("topk");
        config["k"] = json!(c0.k);
        config["sparsecoder"]["note"] = json!(
            "TopK after ReLU: after loading, set each transcoder's activation_function to relu(TopK(k)(x)); \
             circuit-tracer's loader reads no k"
        );
    }
    if !features.is_empty() {
        let widths: Vec<usize> = sources
            .iter()
            .map(|s| s.loaded.coder.cfg.num_latents)
            .collect();
        crate::features::write(out, &scan, &widths, features)?;
    }
    let text = to_yaml(&config)?;
    write_atomic(&out.join(CONFIG), |w| w.write_all(text.as_bytes()))?;
    Ok(())
}

fn write_layer(s: &ExportSource, path: &Path) -> Result<()> {
    let c = &s.loaded.coder;
    let (d_in, d_out, latents) = (c.cfg.d_in, c.cfg.d_out, c.cfg.num_latents);
    let mut list = vec![
        ("W_enc", vec![latents, d_in], Values::F32(&c.w_enc)),
        ("b_enc", vec![latents], Values::F32(&c.b_enc)),
        ("W_dec", vec![latents, d_out], Values::F32(&c.w_dec)),
        ("b_dec", vec![d_out], Values::F32(&c.b_dec)),
    ];
    if let Some(w_skip) = &c.w_skip {
        list.push(("W_skip", vec![d_out, d_in], Values::F32(w_skip)));
    }
    if let Some(t) = &c.threshold {
        list.push((
            "activation_function.threshold",
            vec![latents],
            Values::F32(t),
        ));
    }
    let list: Vec<_> = list
        .into_iter()
        .map(|(n, shape, v)| (n.to_string(), shape, v))
        .collect();
    let meta = HashMap::from([(
        "sparsecoder".to_string(),
        serde_json::to_string(&s.provenance)?,
    )]);
    tensors::write(path, &list, meta)
}

/// A JSON value as YAML text (block style), as config.yaml is read with `yaml.safe_load`.
fn to_yaml(v: &Value) -> Result<String> {
    fn convert(v: &Value) -> Yaml {
        match v {
            Value::Null => Yaml::Null,
            Value::Bool(b) => Yaml::Boolean(*b),
            Value::Number(n) => n
                .as_i64()
                .map_or_else(|| Yaml::Real(n.to_string()), Yaml::Integer),
            Value::String(s) => Yaml::String(s.clone()),
            Value::Array(a) => Yaml::Array(a.iter().map(convert).collect()),
            Value::Object(o) => Yaml::Hash(
                o.iter()
                    .map(|(k, v)| (Yaml::String(k.clone()), convert(v)))
                    .collect(),
            ),
        }
    }
    let mut text = String::new();
    YamlEmitter::new(&mut text)
        .dump(&convert(v))
        .map_err(|e| anyhow!("cannot write YAML: {e:?}"))?;
    text.push('\n');
    Ok(text)
}

/// The transcoder files of a set: config.yaml's `transcoders` list (paths relative to the folder), else
/// `layer_0…` in the folder.
fn layer_paths(dir: &Path, config: &Yaml, cfg_path: &Path) -> Result<Vec<PathBuf>> {
    if let Some(list) = config["transcoders"].as_vec() {
        return list
            .iter()
            .map(|p| match p.as_str() {
                Some(p) if p.starts_with("hf://") => bail!(
                    "{}: transcoders lists {p}: a hub path; download the set and give its folder",
                    cfg_path.display()
                ),
                Some(p) => Ok(dir.join(p)),
                None => bail!("{}: transcoders must list paths", cfg_path.display()),
            })
            .collect();
    }
    let paths: Vec<PathBuf> = (0..)
        .map(|i| dir.join(layer_file(i)))
        .take_while(|p| p.exists())
        .collect();
    if paths.is_empty() {
        bail!("{}: holds no layer_0.safetensors", dir.display());
    }
    Ok(paths)
}

/// Reads a YAML string field, refusing a missing one.
fn yaml_str<'a>(config: &'a Yaml, name: &str, path: &Path) -> Result<&'a str> {
    config[name].as_str().ok_or_else(|| {
        anyhow!(
            "{}: field {name} is missing or not a string",
            path.display()
        )
    })
}

/// Imports the transcoder set in `dir` into `out/layer_{i}` (one coder folder per layer); `k` when
/// config.yaml has none.
pub fn import(dir: &Path, out: &Path, k: Option<usize>) -> Result<Vec<PathBuf>> {
    let cfg_path = dir.join(CONFIG);
    let text = std::fs::read_to_string(&cfg_path)
        .with_context(|| format!("{}: cannot read", cfg_path.display()))?;
    let docs = YamlLoader::load_from_str(&text)
        .map_err(|e| anyhow!("{}: not valid YAML: {e}", cfg_path.display()))?;
    let config = docs.first().cloned().unwrap_or(Yaml::Null);
    let kind = yaml_str(&config, "model_kind", &cfg_path)?;
    if kind != "transcoder_set" {
        bail!(
            "{}: model_kind is {kind:?}, expected \"transcoder_set\" (cross-layer transcoders are not coders of \
             one MLP)",
            cfg_path.display()
        );
    }
    let input = yaml_str(&config, "feature_input_hook", &cfg_path)?;
    if input != INPUT_HOOK {
        bail!(
            "{}: feature_input_hook is {input:?}, expected {INPUT_HOOK:?} (our transcoders read the MLP's input)",
            cfg_path.display()
        );
    }
    let output = yaml_str(&config, "feature_output_hook", &cfg_path)?;
    if !OUTPUT_HOOKS.contains(&output) {
        bail!(
            "{}: feature_output_hook is {output:?}, expected one of {OUTPUT_HOOKS:?}",
            cfg_path.display()
        );
    }
    let k = match (config["k"].as_i64(), k) {
        (_, Some(k)) => Some(k),
        (Some(k), None) if k > 0 => Some(k as usize),
        _ => None,
    };
    let hooks = format!("{input} → {output}");
    let mut made = Vec::new();
    for (layer, path) in layer_paths(dir, &config, &cfg_path)?.iter().enumerate() {
        let target = out.join(format!("layer_{layer}"));
        let coder = read_layer(path, k, &cfg_path)?;
        crate::save_imported(
            &target,
            crate::ImportedCoder {
                coder,
                layer: layer as u32,
                format: "circuit-tracer",
                source: path.clone(),
                hooks: Some(hooks.clone()),
            },
        )?;
        made.push(target);
    }
    Ok(made)
}

/// One layer's transcoder: JumpReLU when the file has `activation_function.threshold`, else TopK with `k`
/// (refused without one: circuit-tracer's loader would make it a ReLU transcoder, which ours cannot be).
fn read_layer(path: &Path, k: Option<usize>, cfg_path: &Path) -> Result<SparseCoder> {
    let bytes = tensors::read_file(path)?;
    let st = tensors::parse(&bytes, path)?;
    let shape = |name: &str| {
        tensors::shape_of(&st, name)
            .ok_or_else(|| anyhow!("{}: tensor {name} is missing", path.display()))
    };
    let (latents, d_out) = match shape("W_dec")?[..] {
        [l, d] => (l, d),
        ref s => bail!(
            "{}: tensor W_dec has shape {s:?}, expected [d_sae, d_model]",
            path.display()
        ),
    };
    let d_in = shape("W_enc")?.last().copied().unwrap_or(0);
    let threshold = match tensors::shape_of(&st, "activation_function.threshold") {
        Some(_) => Some(tensors::read_f32(
            &st,
            "activation_function.threshold",
            &[latents],
            path,
        )?),
        None => None,
    };
    let k = match (&threshold, k) {
        (Some(_), _) => latents,
        (None, Some(k)) if (1..=latents).contains(&k) => k,
        (None, Some(k)) => bail!("{}: k is {k}, expected 1…{latents}", path.display()),
        (None, None) => bail!(
            "{}: k is missing: circuit-tracer's files say nothing of TopK; give --k if the set is TopK",
            cfg_path.display()
        ),
    };
    let w_skip = match tensors::shape_of(&st, "W_skip") {
        Some(_) => Some(tensors::read_f32(&st, "W_skip", &[d_out, d_in], path)?),
        None => None,
    };
    let kind = if w_skip.is_some() {
        Kind::SkipTranscoder
    } else {
        Kind::Transcoder
    };
    Ok(SparseCoder {
        cfg: CoderConfig {
            kind,
            d_in,
            d_out,
            num_latents: latents,
            k,
        },
        w_enc: tensors::read_f32(&st, "W_enc", &[latents, d_in], path)?,
        b_enc: tensors::read_f32(&st, "b_enc", &[latents], path)?,
        w_dec: tensors::read_f32(&st, "W_dec", &[latents, d_out], path)?,
        b_dec: tensors::read_f32(&st, "b_dec", &[d_out], path)?,
        w_skip,
        threshold,
    })
}
