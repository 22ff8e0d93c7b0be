//! safetensors files as the other tools write them: reading any of their float types into f32 (widening
//! f16 and bf16 is exact), writing tensors atomically, and the one transpose the layouts need.

use anyhow::{anyhow, bail, Context, Result};
use cache_format::fsutil::write_atomic;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::Path;

/// The tensor `name` of `st` (read from `path`) as f32, refused unless its shape is `want`.
pub fn read_f32(st: &SafeTensors, name: &str, want: &[usize], path: &Path) -> Result<Vec<f32>> {
    let t = st
        .tensor(name)
        .map_err(|_| anyhow!("{}: tensor {name} is missing", path.display()))?;
    if t.shape() != want {
        bail!(
            "{}: tensor {name} has shape {:?}, expected {want:?}",
            path.display(),
            t.shape()
        );
    }
    let data = t.data();
    Ok(match t.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => bail!(
            "{}: tensor {name} is {other:?}, expected F32, F16 or BF16",
            path.display()
        ),
    })
}

/// The shape of tensor `name`, or None when the file has no such tensor.
pub fn shape_of(st: &SafeTensors, name: &str) -> Option<Vec<usize>> {
    st.tensor(name).ok().map(|t| t.shape().to_vec())
}

/// A tensor to write: its name, shape and values.
pub enum Values<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
    U32(&'a [u32]),
    U16(&'a [u16]),
    I64(&'a [i64]),
}

/// Writes `tensors` (name, shape, values) and `metadata` to `path` atomically (temp, fsync, rename).
pub fn write(
    path: &Path,
    tensors: &[(String, Vec<usize>, Values)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(name, shape, values)| {
            let (dtype, bytes): (Dtype, &[u8]) = match values {
                Values::F32(v) => (Dtype::F32, bytemuck::cast_slice(v)),
                Values::F16(v) => (Dtype::F16, bytemuck::cast_slice(v)),
                Values::U32(v) => (Dtype::U32, bytemuck::cast_slice(v)),
                Values::U16(v) => (Dtype::U16, bytemuck::cast_slice(v)),
                Values::I64(v) => (Dtype::I64, bytemuck::cast_slice(v)),
            };
            Ok((name.clone(), TensorView::new(dtype, shape.clone(), bytes)?))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let bytes = safetensors::serialize(views, Some(metadata))
        .with_context(|| format!("{}: cannot serialise", path.display()))?;
    Ok(write_atomic(path, |w| w.write_all(&bytes))?)
}

/// Reads and parses a safetensors file, keeping its bytes (the parsed view borrows them).
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
}

pub fn parse<'a>(bytes: &'a [u8], path: &Path) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes)
        .with_context(|| format!("{}: not a safetensors file", path.display()))
}

/// `m` (`rows × cols`, row-major) transposed to `cols × rows`.
pub fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}
