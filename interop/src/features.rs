//! circuit-tracer's feature files, the examples its graph frontend shows for a feature, made from `interp`'s
//! records (`<coder>/latents.jsonl`) of each layer's coder.
//!
//! ```text
//! features/index.json.gz       gzip'd JSON: per layer {filename, offsets[]} (offsets: latents + 1 byte positions)
//! features/layer_{i}.bin       per latent: u32 LE length, then zlib'd JSON of the feature (below)
//! features/{id}.json           the same JSON, one file per latent with examples (the frontend's other layout)
//! feature  {transcoder_id, index, layer, act_min, act_max, activation_frequency, explanation,
//!           examples_quantiles: [{quantile_name, examples: [{tokens[], tokens_acts_list[], train_token_ind,
//!           is_repeated_datapoint}]}], top_logits[], bottom_logits[], quantile_values[], histogram[]}
//! ```
//! The frontend (`frontend/assets/feature_examples/init-feature-examples.js`, `util.js`) names a feature by
//! the Cantor pairing of (layer, latent), fetches `index.json.gz` then the byte range of its record, and
//! inflates it (pako: zlib and gzip). The examples are interp's explainer examples grouped by quantile,
//! strongest first; top and bottom logits are left empty (interp records no unembedding), as are the
//! quantile values and histogram. Latents interp did not record get a record with no examples, so every
//! layer's offsets cover all its latents.

use anyhow::{anyhow, bail, Context, Result};
use cache_format::fsutil::write_atomic;
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use interp::run::ShownWindow;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// The feature id the frontend uses: the Cantor pairing of (layer, latent).
pub fn feature_id(layer: u64, latent: u64) -> u64 {
    (layer + latent) * (layer + latent + 1) / 2 + latent
}

/// `--features L=FILE`: a layer and its coder's interp records.
pub fn parse_arg(arg: &str) -> Result<(u32, PathBuf)> {
    let (layer, file) = arg
        .split_once('=')
        .ok_or_else(|| anyhow!("--features {arg}: expected LAYER=PATH/latents.jsonl"))?;
    let layer = layer
        .parse()
        .map_err(|_| anyhow!("--features {arg}: layer {layer:?} is not a number"))?;
    Ok((layer, PathBuf::from(file)))
}

/// What a feature file takes from one line of interp's latents.jsonl (`interp::run::LatentResult`; the
/// scores, which may be NaN, are not read).
#[derive(Deserialize)]
struct Record {
    latent: u32,
    frequency: f64,
    explanation: Option<String>,
    explain_examples: Vec<ShownWindow>,
}

fn read_records(path: &Path) -> Result<BTreeMap<u32, Record>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut out = BTreeMap::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}: cannot read", path.display()))?;
        let r: Record = serde_json::from_str(&line).with_context(|| {
            format!(
                "{}: line {}: not an interp latent record",
                path.display(),
                i + 1
            )
        })?;
        out.insert(r.latent, r);
    }
    Ok(out)
}

/// One feature's JSON, from its interp record when there is one.
fn feature_json(scan: &str, layer: u32, latent: u32, r: Option<&Record>) -> Value {
    let mut by_quantile: BTreeMap<u32, Vec<Value>> = BTreeMap::new();
    let mut act_max = 0f32;
    for w in r.map_or(&[][..], |r| &r.explain_examples) {
        let (at, top) =
            w.acts.iter().enumerate().fold(
                (0, f32::MIN),
                |best, (i, &a)| if a > best.1 { (i, a) } else { best },
            );
        act_max = act_max.max(top);
        by_quantile
            .entry(w.quantile.unwrap_or(0))
            .or_default()
            .push(json!({
                "tokens": w.tokens,
                "tokens_acts_list": w.acts,
                "train_token_ind": at,
                "is_repeated_datapoint": false,
            }));
    }
    let quantiles: Vec<Value> = by_quantile
        .into_iter()
        .rev()
        .map(
            |(q, examples)| json!({"quantile_name": format!("Quantile {q}"), "examples": examples}),
        )
        .collect();
    json!({
        "transcoder_id": scan,
        "index": latent,
        "layer": layer,
        "act_min": 0.0,
        "act_max": act_max,
        "activation_frequency": r.map_or(0.0, |r| r.frequency),
        "explanation": r.and_then(|r| r.explanation.clone()),
        "examples_quantiles": quantiles,
        "top_logits": [],
        "bottom_logits": [],
        "quantile_values": [],
        "histogram": [],
    })
}

fn deflate(bytes: &[u8], gzip: bool) -> Result<Vec<u8>> {
    Ok(if gzip {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes)?;
        e.finish()?
    } else {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes)?;
        e.finish()?
    })
}

/// Writes `set/features/` for layers 0…n−1 of widths `latents[layer]`, from the interp records given per
/// layer (`records`: layer → latents.jsonl). Returns the number of features with examples.
pub fn write(
    set: &Path,
    scan: &str,
    latents: &[usize],
    records: &[(u32, PathBuf)],
) -> Result<usize> {
    let mut by_layer = BTreeMap::new();
    for (layer, path) in records {
        if *layer as usize >= latents.len() {
            bail!(
                "--features {layer}=…: the set has layers 0…{}",
                latents.len() - 1
            );
        }
        if by_layer.insert(*layer, read_records(path)?).is_some() {
            bail!("--features: layer {layer} is given twice");
        }
    }
    let dir = set.join("features");
    std::fs::create_dir_all(&dir)?;
    let (mut index, mut with_examples) = (Vec::new(), 0);
    for (layer, &width) in latents.iter().enumerate() {
        let layer = layer as u32;
        let records = by_layer.get(&layer);
        let (mut bin, mut offsets) = (Vec::new(), vec![0u64]);
        for latent in 0..width as u32 {
            let r = records.and_then(|m| m.get(&latent));
            let text = serde_json::to_vec(&feature_json(scan, layer, latent, r))?;
            if r.is_some_and(|r| !r.explain_examples.is_empty()) {
                with_examples += 1;
                let id = feature_id(layer as u64, latent as u64);
                write_atomic(&dir.join(format!("{id}.json")), |w| w.write_all(&text))?;
            }
            let packed = deflate(&text, false)?;
            bin.extend_from_slice(&(packed.len() as u32).to_le_bytes());
            bin.extend_from_slice(&packed);
            offsets.push(bin.len() as u64);
        }
        let filename = format!("layer_{layer}.bin");
        write_atomic(&dir.join(&filename), |w| w.write_all(&bin))?;
        index.push(json!({"filename": filename, "offsets": offsets}));
    }
    let packed = deflate(&serde_json::to_vec(&index)?, true)?;
    write_atomic(&dir.join("index.json.gz"), |w| w.write_all(&packed))?;
    Ok(with_examples)
}
