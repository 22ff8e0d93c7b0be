//! The activation cache: everything about storing paired MLP activations on disk and reading them back.
//!
//! A cache is a directory holding `manifest.json` and shard files `shard-NNNNNN.bin` (or `.bin.zst`, the
//! archival form). The byte layout is specified in `docs/cache-format.md`; this crate is its only Rust
//! implementation. It owns:
//! - [`shard`]: the shard header, its defensive parser, zero-copy (mmap) section access;
//! - [`manifest`]: the JSON manifest describing the cache and each shard;
//! - [`side`]: the MLP's input or output, one type from the cache to the command line;
//! - [`writer`]: the crash-safe writer (temp file → fsync → rename, manifest replaced after each shard), resumable;
//! - [`validate`] and [`stats`]: full integrity checks and per-shard statistics;
//! - [`loader`]: the shuffled, prefetching f32 batch stream used for training, with a held-out split;
//! - [`archive`]: zstd compression of shards;
//! - [`parts`]: work split over a job array's tasks, and a cache extracted in parts, merged without copying.
//!
//! It depends on nothing else of this project.

#[cfg(target_endian = "big")]
compile_error!("the activation cache is little-endian and is read zero-copy; big-endian hosts are not supported");

pub mod archive;
pub mod cache;
pub mod dtype;
pub mod error;
pub mod fp8;
pub mod fsutil;
pub mod loader;
pub mod manifest;
pub mod parts;
pub mod shard;
pub mod side;
pub mod stats;
pub mod synthetic;
pub mod validate;
pub mod writer;

pub use cache::Cache;
pub use dtype::{DType, ElemType};
pub use error::{CacheError, Result};
pub use loader::{Batch, BatchStream, LoaderConfig};
pub use manifest::{CacheSpec, Manifest, ModelIdentity, ShardEntry, TokenizerIdentity};
pub use shard::{Section, Shard};
pub use side::Side;
pub use writer::{CacheWriter, WriterState};
