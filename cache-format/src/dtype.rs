//! Element types of shard sections and the conversions between stored activations and f32.
//!
//! Activations are converted a row at a time: a row of `width` elements takes [`DType::row_bytes`] bytes
//! (`width × size` for the plain types; `4 + width` for fp8, whose rows carry their scale, see [`crate::fp8`]).

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use serde::{Deserialize, Serialize};

/// The storage type of the activation sections (`mlp_in`, `mlp_out`). bf16 is the default; fp8 (E4M3 with a
/// per-row scale) halves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum DType {
    F32,
    F16,
    #[default]
    Bf16,
    Fp8,
}

impl DType {
    pub const ALL: [DType; 4] = [DType::F32, DType::F16, DType::Bf16, DType::Fp8];

    pub fn elem(self) -> ElemType {
        match self {
            DType::F32 => ElemType::F32,
            DType::F16 => ElemType::F16,
            DType::Bf16 => ElemType::Bf16,
            DType::Fp8 => ElemType::Fp8,
        }
    }

    /// Bytes of one stored row of `width` elements.
    pub fn row_bytes(self, width: usize) -> usize {
        match self {
            DType::Fp8 => crate::fp8::row_bytes(width),
            _ => width * self.elem().size(),
        }
    }

    pub fn name(self) -> &'static str {
        self.elem().name()
    }

    pub fn parse(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Appends `values` (whole rows of `width`) to `out` in this storage type (round-to-nearest-even).
    pub fn encode_rows_into(self, values: &[f32], width: usize, out: &mut Vec<u8>) {
        match self {
            DType::F32 => out.extend_from_slice(bytemuck::cast_slice(values)),
            DType::F16 => {
                let mut tmp = vec![f16::ZERO; values.len()];
                tmp.convert_from_f32_slice(values);
                out.extend_from_slice(bytemuck::cast_slice(&tmp));
            }
            DType::Bf16 => {
                let mut tmp = vec![bf16::ZERO; values.len()];
                tmp.convert_from_f32_slice(values);
                out.extend_from_slice(bytemuck::cast_slice(&tmp));
            }
            DType::Fp8 => {
                out.reserve(values.len() / width.max(1) * self.row_bytes(width));
                for row in values.chunks_exact(width) {
                    crate::fp8::encode_row(row, out);
                }
            }
        }
    }

    /// Converts stored rows (`out.len() / width` of them, their `row_bytes` each) to f32.
    pub fn decode_rows(self, bytes: &[u8], width: usize, out: &mut [f32]) {
        debug_assert_eq!(bytes.len(), out.len() / width * self.row_bytes(width));
        match self {
            DType::F32 => out.copy_from_slice(bytemuck::cast_slice(bytes)),
            DType::F16 => bytemuck::cast_slice::<u8, f16>(bytes).convert_to_f32_slice(out),
            DType::Bf16 => bytemuck::cast_slice::<u8, bf16>(bytes).convert_to_f32_slice(out),
            DType::Fp8 => {
                let stride = self.row_bytes(width);
                for (row, stored) in out.chunks_exact_mut(width).zip(bytes.chunks_exact(stride)) {
                    crate::fp8::decode_row(stored, row);
                }
            }
        }
    }

    /// What `values` (whole rows of `width`) read back as after storage in this type.
    pub fn round_trip(self, values: &[f32], width: usize) -> Vec<f32> {
        let mut bytes = Vec::new();
        self.encode_rows_into(values, width, &mut bytes);
        let mut out = vec![0f32; values.len()];
        self.decode_rows(&bytes, width, &mut out);
        out
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The element type code stored in a shard's section table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ElemType {
    F32 = 0,
    F16 = 1,
    Bf16 = 2,
    U32 = 3,
    U64 = 4,
    /// fp8 E4M3 rows, each led by its f32 scale (`crate::fp8`).
    Fp8 = 5,
}

impl ElemType {
    pub fn from_code(code: u32) -> Option<ElemType> {
        Some(match code {
            0 => ElemType::F32,
            1 => ElemType::F16,
            2 => ElemType::Bf16,
            3 => ElemType::U32,
            4 => ElemType::U64,
            5 => ElemType::Fp8,
            _ => return None,
        })
    }

    pub fn code(self) -> u32 {
        self as u32
    }

    /// Bytes per element (for fp8, not counting its rows' scales: see [`ElemType::row_bytes`]).
    pub fn size(self) -> usize {
        match self {
            ElemType::Fp8 => 1,
            ElemType::F16 | ElemType::Bf16 => 2,
            ElemType::F32 | ElemType::U32 => 4,
            ElemType::U64 => 8,
        }
    }

    /// Bytes of a row of `width` elements, or `None` on overflow.
    pub fn row_bytes(self, width: u64) -> Option<u64> {
        match self {
            ElemType::Fp8 => width.checked_add(4),
            _ => width.checked_mul(self.size() as u64),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ElemType::Fp8 => "fp8",
            ElemType::F32 => "f32",
            ElemType::F16 => "f16",
            ElemType::Bf16 => "bf16",
            ElemType::U32 => "u32",
            ElemType::U64 => "u64",
        }
    }

    pub fn as_activation(self) -> Option<DType> {
        match self {
            ElemType::F32 => Some(DType::F32),
            ElemType::F16 => Some(DType::F16),
            ElemType::Bf16 => Some(DType::Bf16),
            ElemType::Fp8 => Some(DType::Fp8),
            _ => None,
        }
    }
}
