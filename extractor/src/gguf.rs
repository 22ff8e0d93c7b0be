//! GGUF files (version 2 and 3): metadata, tensor directory, dequantisation to f32.
//!
//! Every count, length and offset read from the file is checked against the file size before use, so a
//! damaged or hostile file gives an error naming the field, never a panic or an out-of-bounds read.

use anyhow::{anyhow, bail, Context, Result};
use half::{bf16, f16};
use memmap2::Mmap;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        Some(match *self {
            Value::U8(v) => v as u64,
            Value::U16(v) => v as u64,
            Value::U32(v) => v as u64,
            Value::U64(v) => v,
            Value::I8(v) if v >= 0 => v as u64,
            Value::I16(v) if v >= 0 => v as u64,
            Value::I32(v) if v >= 0 => v as u64,
            Value::I64(v) if v >= 0 => v as u64,
            _ => return None,
        })
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
}

/// The `general.architecture` values the forward pass runs from GGUF: Llama, Qwen2 (Llama with Q/K/V biases)
/// and Gemma 3 (the Llama block with Gemma's switches, QK-norm and local/global layers).
pub const GGUF_ARCHITECTURES: [&str; 3] = ["llama", "qwen2", "gemma3"];

/// Tensor element types this reader can dequantise (GGML type codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
    Bf16,
    Q5_0,
    Q5_1,
    Q4K,
    Q5K,
    Q6K,
}

impl TensorType {
    fn from_code(code: u32) -> Option<TensorType> {
        Some(match code {
            0 => TensorType::F32,
            1 => TensorType::F16,
            2 => TensorType::Q4_0,
            3 => TensorType::Q4_1,
            6 => TensorType::Q5_0,
            7 => TensorType::Q5_1,
            8 => TensorType::Q8_0,
            12 => TensorType::Q4K,
            13 => TensorType::Q5K,
            14 => TensorType::Q6K,
            30 => TensorType::Bf16,
            _ => return None,
        })
    }

    /// (elements per block, bytes per block)
    fn block(self) -> (u64, u64) {
        match self {
            TensorType::F32 => (1, 4),
            TensorType::F16 | TensorType::Bf16 => (1, 2),
            TensorType::Q4_0 => (32, 18),
            TensorType::Q4_1 => (32, 20),
            TensorType::Q8_0 => (32, 34),
            TensorType::Q5_0 => (32, 22),
            TensorType::Q5_1 => (32, 24),
            TensorType::Q4K => (256, 144),
            TensorType::Q5K => (256, 176),
            TensorType::Q6K => (256, 210),
        }
    }
}

fn type_name(code: u32) -> String {
    const NAMES: [&str; 31] = [
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
        "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL",
        "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16",
    ];
    NAMES
        .get(code as usize)
        .map_or_else(|| format!("type code {code}"), |n| n.to_string())
}

#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions as GGUF lists them: `dims[0]` is the fastest-varying (the row length).
    pub dims: Vec<u64>,
    type_code: u32,
    /// Absolute offset in the file.
    offset: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
    pub fn type_name(&self) -> String {
        type_name(self.type_code)
    }
}

pub struct GgufFile {
    path: PathBuf,
    map: Mmap,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: BTreeMap<String, TensorInfo>,
}

/// Bounds-checked little-endian cursor over the mapped file.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let end = (self.at as u64)
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len() as u64)
            .ok_or_else(|| {
                anyhow!(
                    "{what}: needs {n} bytes at offset {}, file has {}",
                    self.at,
                    self.bytes.len()
                )
            })?;
        let s = &self.bytes[self.at..end as usize];
        self.at = end as usize;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| anyhow!("{what}: string is not UTF-8"))
    }
    fn value(&mut self, code: u32, what: &str, depth: u32) -> Result<Value> {
        Ok(match code {
            0 => Value::U8(self.take(1, what)?[0]),
            1 => Value::I8(self.take(1, what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap())),
            3 => Value::I16(i16::from_le_bytes(self.take(2, what)?.try_into().unwrap())),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(self.u32(what)? as i32),
            6 => Value::F32(f32::from_bits(self.u32(what)?)),
            7 => match self.take(1, what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => bail!("{what}: bool must be 0 or 1, found {b}"),
            },
            8 => Value::Str(self.string(what)?),
            9 => {
                if depth > 0 {
                    bail!("{what}: nested arrays are not supported");
                }
                let elem = self.u32(what)?;
                let n = self.u64(what)?;
                // Each element takes at least one byte: a count beyond the remaining bytes is corrupt.
                if n > (self.bytes.len() - self.at) as u64 {
                    bail!(
                        "{what}: array of {n} elements cannot fit in the {} bytes left",
                        self.bytes.len() - self.at
                    );
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem, what, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(self.u64(what)? as i64),
            12 => Value::F64(f64::from_bits(self.u64(what)?)),
            c => bail!("{what}: unknown metadata value type {c}"),
        })
    }
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<GgufFile> {
        let file = File::open(path)
            .with_context(|| format!("{}: cannot open model file", path.display()))?;
        // SAFETY: the model file is only read; we assume nobody truncates it while we run.
        let map = unsafe { Mmap::map(&file) }
            .with_context(|| format!("{}: cannot map model file", path.display()))?;
        Self::parse(path, map).with_context(|| format!("{}: not a valid GGUF file", path.display()))
    }

    fn parse(path: &Path, map: Mmap) -> Result<GgufFile> {
        let mut c = Cursor { bytes: &map, at: 0 };
        let magic = c.take(4, "magic")?;
        if magic != b"GGUF" {
            bail!(
                "magic expected \"GGUF\", found {:?}",
                String::from_utf8_lossy(magic)
            );
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            bail!("version expected 2 or 3, found {version}");
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key {i}"))?;
            let code = c.u32(&format!("metadata {key} type"))?;
            let value = c.value(code, &format!("metadata {key}"), 0)?;
            metadata.insert(key, value);
        }
        let alignment = metadata
            .get("general.alignment")
            .and_then(Value::as_u64)
            .unwrap_or(32);
        if alignment == 0 || !alignment.is_power_of_two() {
            bail!("general.alignment must be a power of two, found {alignment}");
        }
        let mut infos = Vec::new();
        for i in 0..n_tensors {
            let name = c.string(&format!("tensor {i} name"))?;
            let n_dims = c.u32(&format!("tensor {name} dimension count"))?;
            if n_dims == 0 || n_dims > 4 {
                bail!("tensor {name}: dimension count must be 1..=4, found {n_dims}");
            }
            let dims = (0..n_dims)
                .map(|_| c.u64(&format!("tensor {name} dims")))
                .collect::<Result<Vec<_>>>()?;
            let type_code = c.u32(&format!("tensor {name} type"))?;
            let offset = c.u64(&format!("tensor {name} offset"))?;
            infos.push((name, dims, type_code, offset));
        }
        let data_start = (c.at as u64).div_ceil(alignment) * alignment;
        let mut tensors = BTreeMap::new();
        for (name, dims, type_code, rel) in infos {
            let elements = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
            let info = TensorInfo {
                name: name.clone(),
                dims,
                type_code,
                offset: data_start.saturating_add(rel),
            };
            if let (Some(ty), Some(n)) = (TensorType::from_code(type_code), elements) {
                let (per, bytes) = ty.block();
                if n % per != 0 {
                    bail!(
                        "tensor {name}: {n} elements is not a multiple of the {}-element block",
                        per
                    );
                }
                let end = info.offset.checked_add(n / per * bytes);
                if end.is_none_or(|e| e > map.len() as u64) {
                    bail!(
                        "tensor {name}: data at offset {} runs past the end of the file ({} bytes)",
                        info.offset,
                        map.len()
                    );
                }
            }
            tensors.insert(name, info);
        }
        Ok(GgufFile {
            path: path.to_path_buf(),
            map,
            version,
            metadata,
            tensors,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, key: &str) -> Result<&Value> {
        self.metadata
            .get(key)
            .ok_or_else(|| anyhow!("{}: metadata key {key} is missing", self.path.display()))
    }

    /// `general.architecture`, refused (naming it) unless the forward pass runs it from GGUF.
    pub fn architecture(&self) -> Result<&str> {
        let arch = self.get_str("general.architecture")?;
        if !GGUF_ARCHITECTURES.contains(&arch) {
            bail!(
                "{}: general.architecture is {arch:?}, which sparsecoder does not run from GGUF (it runs {})",
                self.path.display(),
                GGUF_ARCHITECTURES.join(", ")
            );
        }
        Ok(arch)
    }

    /// Metadata `{architecture}.{key}` (e.g. `qwen2.block_count`).
    pub fn arch_key(&self, key: &str) -> Result<String> {
        Ok(format!("{}.{key}", self.architecture()?))
    }

    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.get(key)?
            .as_u64()
            .ok_or_else(|| anyhow!("{}: metadata {key} is not an integer", self.path.display()))
    }

    pub fn get_f64(&self, key: &str) -> Result<f64> {
        self.get(key)?
            .as_f64()
            .ok_or_else(|| anyhow!("{}: metadata {key} is not a number", self.path.display()))
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.get(key)?
            .as_str()
            .ok_or_else(|| anyhow!("{}: metadata {key} is not a string", self.path.display()))
    }

    pub fn get_strings(&self, key: &str) -> Result<Vec<&str>> {
        match self.get(key)? {
            Value::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_str().ok_or_else(|| {
                        anyhow!("{}: metadata {key} holds a non-string", self.path.display())
                    })
                })
                .collect(),
            _ => bail!("{}: metadata {key} is not an array", self.path.display()),
        }
    }

    pub fn get_f32s(&self, key: &str) -> Result<Vec<f32>> {
        match self.get(key)? {
            Value::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_f64().map(|x| x as f32).ok_or_else(|| {
                        anyhow!("{}: metadata {key} holds a non-number", self.path.display())
                    })
                })
                .collect(),
            _ => bail!("{}: metadata {key} is not an array", self.path.display()),
        }
    }

    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors
            .get(name)
            .ok_or_else(|| anyhow!("{}: tensor {name} is missing", self.path.display()))
    }

    /// Dequantises a tensor to f32, row-major with `dims[0]` fastest (so `[rows = dims[1], cols = dims[0]]`).
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.tensor(name)?;
        let ty = TensorType::from_code(info.type_code).ok_or_else(|| {
            anyhow!(
                "{}: tensor {name} has type {}, which is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)",
                self.path.display(),
                info.type_name()
            )
        })?;
        let n = info.elements() as usize;
        let (per, bytes) = ty.block();
        let raw = &self.map
            [info.offset as usize..info.offset as usize + n / per as usize * bytes as usize];
        let mut out = vec![0f32; n];
        dequantize(ty, raw, &mut out);
        Ok(out)
    }

    /// Checks that a tensor has the expected GGUF dims (fastest first).
    pub fn expect_dims(&self, name: &str, dims: &[u64]) -> Result<()> {
        let info = self.tensor(name)?;
        if info.dims != dims {
            bail!(
                "{}: tensor {name} has dims {:?}, expected {:?}",
                self.path.display(),
                info.dims,
                dims
            );
        }
        Ok(())
    }
}

fn f16_at(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Dequantisation as GGML defines each block type.
pub fn dequantize(ty: TensorType, raw: &[u8], out: &mut [f32]) {
    match ty {
        TensorType::F32 => {
            for (o, c) in out.iter_mut().zip(raw.chunks_exact(4)) {
                *o = f32::from_le_bytes(c.try_into().unwrap());
            }
        }
        TensorType::F16 => {
            for (o, c) in out.iter_mut().zip(raw.chunks_exact(2)) {
                *o = f16_at(c);
            }
        }
        TensorType::Bf16 => {
            for (o, c) in out.iter_mut().zip(raw.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        // d (f16), 32 × i8: x = d·q
        TensorType::Q8_0 => {
            for (o, b) in out.chunks_exact_mut(32).zip(raw.chunks_exact(34)) {
                let d = f16_at(&b[0..2]);
                for (x, &q) in o.iter_mut().zip(&b[2..34]) {
                    *x = d * (q as i8) as f32;
                }
            }
        }
        // d (f16), 16 bytes of nibbles: element j is the low nibble of byte j, element j+16 the high nibble;
        // x = d·(q − 8)
        TensorType::Q4_0 => {
            for (o, b) in out.chunks_exact_mut(32).zip(raw.chunks_exact(18)) {
                let d = f16_at(&b[0..2]);
                for j in 0..16 {
                    o[j] = d * ((b[2 + j] & 0x0f) as i32 - 8) as f32;
                    o[j + 16] = d * ((b[2 + j] >> 4) as i32 - 8) as f32;
                }
            }
        }
        // d (f16), m (f16), 16 bytes of nibbles as Q4_0; x = d·q + m
        TensorType::Q4_1 => {
            for (o, b) in out.chunks_exact_mut(32).zip(raw.chunks_exact(20)) {
                let d = f16_at(&b[0..2]);
                let m = f16_at(&b[2..4]);
                for j in 0..16 {
                    o[j] = d * (b[4 + j] & 0x0f) as f32 + m;
                    o[j + 16] = d * (b[4 + j] >> 4) as f32 + m;
                }
            }
        }
        TensorType::Q5_0 => crate::quants::q5_0(raw, out),
        TensorType::Q5_1 => crate::quants::q5_1(raw, out),
        TensorType::Q4K => crate::quants::q4_k(raw, out),
        TensorType::Q5K => crate::quants::q5_k(raw, out),
        TensorType::Q6K => crate::quants::q6_k(raw, out),
    }
}
