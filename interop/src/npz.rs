//! numpy's `.npz` (a zip archive of `.npy` arrays, stored or deflated), as Gemma Scope 1 publishes its
//! `params.npz`: each array read as f32 with its shape. `.npy` version 1–3 headers, little-endian `f4`, `f8`
//! or `f2`, C order; anything else is refused naming the array and what it holds.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// An array: its shape and values.
pub struct Array {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Every array of the archive at `path`, by name (the member name without `.npy`).
pub fn read(path: &Path) -> Result<BTreeMap<String, Array>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut zip = zip::ZipArchive::new(file)
        .with_context(|| format!("{}: not an npz (zip) archive", path.display()))?;
    let mut arrays = BTreeMap::new();
    for i in 0..zip.len() {
        let mut member = zip.by_index(i)?;
        let name = member.name()?.trim_end_matches(".npy").to_string();
        let mut bytes = Vec::new();
        member
            .read_to_end(&mut bytes)
            .with_context(|| format!("{}: cannot read {name}", path.display()))?;
        let array =
            parse_npy(&bytes).with_context(|| format!("{}: array {name}", path.display()))?;
        arrays.insert(name, array);
    }
    Ok(arrays)
}

/// One `.npy` file's bytes.
fn parse_npy(bytes: &[u8]) -> Result<Array> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("not a .npy array (no \\x93NUMPY magic)");
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into()?) as usize, 12),
        v => bail!(".npy version {v} (expected 1, 2 or 3)"),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or_else(|| anyhow!("header of {header_len} bytes is cut short"))?;
    let header = std::str::from_utf8(header)?;
    let descr = dict_value(header, "descr")?.trim_matches(|c| c == '\'' || c == '"');
    if dict_value(header, "fortran_order")?.trim() != "False" {
        bail!("fortran_order is True (expected C order)");
    }
    let shape_text = dict_value(header, "shape")?;
    let shape = shape_text
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| anyhow!("shape {shape_text} is not a tuple of sizes"))
        })
        .collect::<Result<Vec<_>>>()?;
    let data = &bytes[start + header_len..];
    let count: usize = shape.iter().product();
    let values: Vec<f32> = match descr {
        "<f4" => le_chunks::<4>(data, count)?
            .map(f32::from_le_bytes)
            .collect(),
        "<f8" => le_chunks::<8>(data, count)?
            .map(|c| f64::from_le_bytes(c) as f32)
            .collect(),
        "<f2" => le_chunks::<2>(data, count)?
            .map(|c| half::f16::from_le_bytes(c).to_f32())
            .collect(),
        other => bail!("dtype {other} (expected <f4, <f8 or <f2)"),
    };
    Ok(Array { shape, values })
}

/// The `count` little-endian elements of `N` bytes at the start of `data`.
fn le_chunks<const N: usize>(
    data: &[u8],
    count: usize,
) -> Result<impl Iterator<Item = [u8; N]> + '_> {
    if data.len() < count * N {
        bail!(
            "data is cut short: {} bytes for {count} elements of {N}",
            data.len()
        );
    }
    Ok(data[..count * N]
        .chunks_exact(N)
        .map(|c| c.try_into().unwrap()))
}

/// The text of `key`'s value in a .npy header (a Python dict literal): up to the next top-level comma.
fn dict_value<'a>(header: &'a str, key: &str) -> Result<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .ok_or_else(|| anyhow!("header has no {key}"))?;
    let rest = header[at + key.len() + 2..]
        .trim_start()
        .trim_start_matches(':')
        .trim_start();
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Ok(&rest[..i]),
            _ => {}
        }
    }
    bail!("header's {key} is not terminated")
}
