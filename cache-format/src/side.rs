//! The two sides of a cached row — the MLP's input and its output — as one type from the cache to the CLI.

use crate::shard::Section;
use serde::{Deserialize, Serialize};

/// One side of the MLP: what it reads (`mlp_in`) or what it returns (`mlp_out`). A transcoder maps one to the
/// other; an SAE reconstructs one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Side {
    #[serde(rename = "mlp_in")]
    #[cfg_attr(feature = "clap", value(name = "mlp_in"))]
    MlpIn,
    #[serde(rename = "mlp_out")]
    #[cfg_attr(feature = "clap", value(name = "mlp_out"))]
    MlpOut,
}

impl Side {
    /// The name used in files and flags, which is also the shard section's name.
    pub fn name(self) -> &'static str {
        self.section().name()
    }

    /// The shard section holding this side.
    pub fn section(self) -> Section {
        match self {
            Side::MlpIn => Section::MlpIn,
            Side::MlpOut => Section::MlpOut,
        }
    }
}

impl From<Side> for Section {
    fn from(side: Side) -> Section {
        side.section()
    }
}
