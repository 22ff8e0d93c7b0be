//! Golden fixtures written by the Python reference scripts: a JSON file of metadata and a safetensors file of
//! f32 tensors (and i64 `token_ids`).
#![allow(dead_code)]
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub struct Golden {
    pub meta: serde_json::Value,
    pub tensors: HashMap<String, Vec<f32>>,
    pub token_ids: Vec<u32>,
}

pub fn load_golden(json: &Path, tensors_file: &Path) -> Golden {
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    let bytes = std::fs::read(tensors_file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = HashMap::new();
    let mut token_ids = Vec::new();
    for (name, view) in st.tensors() {
        if name == "token_ids" {
            token_ids = view
                .data()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
                .collect();
        } else {
            tensors.insert(
                name,
                view.data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            );
        }
    }
    Golden {
        meta,
        tensors,
        token_ids,
    }
}

/// ‖ours − reference‖ / ‖reference‖.
pub fn rel_error(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    let num: f64 = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = reference.iter().map(|b| (*b as f64).powi(2)).sum();
    (num / den).sqrt()
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}
