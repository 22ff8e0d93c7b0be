//! The one error type of the cache. Every message names the file and, where there is one, the field with the
//! expected and the found value, so a user can act on a single line.

use std::path::{Path, PathBuf};

pub type Result<T, E = CacheError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The file exists but its content is not what the format says it must be.
    #[error("{path}: {what}")]
    Corrupt { path: PathBuf, what: String },

    /// A checksum over a named part of a file does not match.
    #[error("{path}: checksum mismatch in {part}: expected {expected:016x}, found {found:016x}")]
    Checksum {
        path: PathBuf,
        part: String,
        expected: u64,
        found: u64,
    },

    /// The manifest and a shard (or the caller and the manifest) disagree about a field.
    #[error("{path}: {field} expected {expected}, found {found}")]
    Mismatch {
        path: PathBuf,
        field: String,
        expected: String,
        found: String,
    },

    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
}

impl CacheError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        CacheError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn corrupt(path: &Path, what: impl Into<String>) -> Self {
        CacheError::Corrupt {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }

    pub fn mismatch(
        path: &Path,
        field: impl Into<String>,
        expected: impl std::fmt::Display,
        found: impl std::fmt::Display,
    ) -> Self {
        CacheError::Mismatch {
            path: path.to_path_buf(),
            field: field.into(),
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }

    pub fn invalid(path: &Path, what: impl Into<String>) -> Self {
        CacheError::Invalid {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }
}
