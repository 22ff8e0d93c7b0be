//! Element types of shard sections and the conversions between stored activations and f32.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use serde::{Deserialize, Serialize};

/// The storage type of the activation sections (`mlp_in`, `mlp_out`). bf16 is the default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum DType {
    F32,
    F16,
    #[default]
    Bf16,
}

impl DType {
    pub const ALL: [DType; 3] = [DType::F32, DType::F16, DType::Bf16];

    pub fn elem(self) -> ElemType {
        match self {
            DType::F32 => ElemType::F32,
            DType::F16 => ElemType::F16,
            DType::Bf16 => ElemType::Bf16,
        }
    }

    pub fn size(self) -> usize {
        self.elem().size()
    }

    pub fn name(self) -> &'static str {
        self.elem().name()
    }

    pub fn parse(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Appends `values` to `out` in this storage type (round-to-nearest-even for the 16-bit types).
    pub fn encode_into(self, values: &[f32], out: &mut Vec<u8>) {
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
        }
    }

    /// Converts stored bytes (`out.len()` elements, suitably aligned) to f32.
    pub fn decode(self, bytes: &[u8], out: &mut [f32]) {
        debug_assert_eq!(bytes.len(), out.len() * self.size());
        match self {
            DType::F32 => out.copy_from_slice(bytemuck::cast_slice(bytes)),
            DType::F16 => bytemuck::cast_slice::<u8, f16>(bytes).convert_to_f32_slice(out),
            DType::Bf16 => bytemuck::cast_slice::<u8, bf16>(bytes).convert_to_f32_slice(out),
        }
    }

    /// Rounds `v` to the nearest value representable in this storage type, as f32.
    pub fn quantize(self, v: f32) -> f32 {
        match self {
            DType::F32 => v,
            DType::F16 => f16::from_f32(v).to_f32(),
            DType::Bf16 => bf16::from_f32(v).to_f32(),
        }
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
}

impl ElemType {
    pub fn from_code(code: u32) -> Option<ElemType> {
        Some(match code {
            0 => ElemType::F32,
            1 => ElemType::F16,
            2 => ElemType::Bf16,
            3 => ElemType::U32,
            4 => ElemType::U64,
            _ => return None,
        })
    }

    pub fn code(self) -> u32 {
        self as u32
    }

    pub fn size(self) -> usize {
        match self {
            ElemType::F16 | ElemType::Bf16 => 2,
            ElemType::F32 | ElemType::U32 => 4,
            ElemType::U64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
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
            _ => None,
        }
    }
}
