//! Kernel sources to PTX with NVRTC, and an on-disk cache of the results.
//!
//! Compiling every kernel at start-up takes seconds; the PTX only changes with the source, the target
//! architecture and the compiler options, so it is kept under [`cache_dir`] in a file named by the SHA-256 of
//! those three. An entry is written atomically (temp file, then rename), so a killed process leaves either a
//! whole entry or none; a cache that cannot be written only costs the compile time.

use anyhow::{anyhow, Result};
use cudarc::nvrtc::Ptx;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The options every kernel is compiled with, besides the architecture.
const OPTIONS: &[&str] = &["--std=c++17"];

fn options(arch: &str) -> Vec<String> {
    std::iter::once(format!("--gpu-architecture={arch}"))
        .chain(OPTIONS.iter().map(|o| o.to_string()))
        .collect()
}

/// Compiles one kernel source to PTX for `arch` (e.g. `compute_90`). Errors carry NVRTC's log. Call only
/// where [`super::nvrtc_present`] is true.
pub fn compile(file: &str, source: &str, arch: &str) -> Result<Ptx> {
    let opts = cudarc::nvrtc::CompileOptions {
        options: options(arch),
        name: Some(file.to_string()),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(source, opts).map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { log, .. } => {
            anyhow!(
                "{file}: NVRTC failed for {arch}:\n{}",
                log.to_string_lossy()
            )
        }
        other => anyhow!("{file}: NVRTC failed for {arch}: {other:?}"),
    })
}

/// [`compile`] through the PTX cache in [`cache_dir`] (None: no cache).
pub fn compile_cached(file: &str, source: &str, arch: &str) -> Result<Ptx> {
    let text = cached(cache_dir().as_deref(), source, arch, || {
        compile(file, source, arch).map(|p| p.to_src())
    })?;
    Ok(Ptx::from_src(text))
}

/// Where PTX is cached: `$SPARSECODER_PTX_CACHE`, else `$XDG_CACHE_HOME/sparsecoder/ptx`, else
/// `$HOME/.cache/sparsecoder/ptx`; an empty `SPARSECODER_PTX_CACHE` turns the cache off.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SPARSECODER_PTX_CACHE") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("sparsecoder").join("ptx"))
}

/// The cache key of a source compiled for `arch`: SHA-256 of the options, the architecture and the source.
pub fn cache_key(source: &str, arch: &str) -> String {
    let mut h = Sha256::new();
    for part in options(arch) {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(source.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The PTX text for (`source`, `arch`) from `dir` when an entry is there, else from `make`, stored for the
/// next time (a failure to store is ignored: the cache only saves time).
pub fn cached(
    dir: Option<&Path>,
    source: &str,
    arch: &str,
    make: impl FnOnce() -> Result<String>,
) -> Result<String> {
    let Some(dir) = dir else { return make() };
    let path = dir.join(format!("{}-{arch}.ptx", cache_key(source, arch)));
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(text);
    }
    let text = make()?;
    let _ = store(&path, &text);
    Ok(text)
}

fn store(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().expect("a cache entry lies in a folder");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        path.file_name().unwrap().to_string_lossy()
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// The cache compiles once per (source, arch), keys on both, and works without a folder.
    #[test]
    fn compiles_once_per_source_and_arch() {
        let dir = tempfile::tempdir().unwrap();
        let calls = Cell::new(0);
        let make = |s: &str| {
            let s = s.to_string();
            let calls = &calls;
            move || {
                calls.set(calls.get() + 1);
                Ok(format!("ptx of {s}"))
            }
        };
        let at = Some(dir.path());
        assert_eq!(
            cached(at, "a", "compute_90", make("a")).unwrap(),
            "ptx of a"
        );
        assert_eq!(
            cached(at, "a", "compute_90", make("x")).unwrap(),
            "ptx of a"
        );
        assert_eq!(calls.get(), 1);
        assert_eq!(
            cached(at, "a", "compute_80", make("b")).unwrap(),
            "ptx of b"
        );
        assert_eq!(
            cached(at, "a2", "compute_90", make("c")).unwrap(),
            "ptx of c"
        );
        assert_eq!(calls.get(), 3);
        assert_eq!(
            cached(None, "a", "compute_90", make("d")).unwrap(),
            "ptx of d"
        );
        assert_eq!(calls.get(), 4);
        assert_ne!(cache_key("a", "compute_90"), cache_key("a", "compute_80"));
        let entries = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(entries, 3, "no temp file left behind");
    }

    /// A failed compile stores nothing.
    #[test]
    fn a_failed_compile_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let r = cached(Some(dir.path()), "bad", "compute_90", || {
            Err(anyhow!("NVRTC failed"))
        });
        assert!(r.is_err());
        assert_eq!(
            std::fs::read_dir(dir.path())
                .map(|d| d.count())
                .unwrap_or(0),
            0
        );
    }
}
