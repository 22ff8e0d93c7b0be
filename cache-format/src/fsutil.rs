//! Atomic file replacement: write a temp file beside the target, fsync it, rename it over the target, fsync the
//! directory. A reader sees either the old file or the complete new one, never a partial write. And the
//! output folder's lock, so that two runs never write into one folder.

use crate::error::{CacheError, Result};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Suffix of files being written; `CacheWriter` removes leftovers of a crash.
pub const TEMP_SUFFIX: &str = ".tmp";

pub fn temp_path(target: &Path) -> PathBuf {
    let mut name = target
        .file_name()
        .expect("target has a file name")
        .to_os_string();
    name.push(TEMP_SUFFIX);
    target.with_file_name(name)
}

/// Writes `target` atomically; `fill` receives a buffered writer over the temp file.
pub fn write_atomic(
    target: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = temp_path(target);
    let result = (|| {
        let file = File::create(&tmp)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        fill(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, target)?;
        sync_dir(target.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| CacheError::io(target, e))
}

/// Makes a rename durable: fsync on the directory holding it.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// Creates `dir` (and its parents) and proves it writable with a probe file, so a run fails on an unusable
/// output directory before any long work.
pub fn prepare_output_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CacheError::invalid(dir, format!("cannot create output directory: {e}")))?;
    // Named for this process: two runs started together into one folder must not remove each other's probe.
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| CacheError::invalid(dir, format!("output directory is not writable: {e}")))
}

/// The lock file every writing command holds in its output folder.
pub const LOCK_FILE: &str = ".sparsecoder.lock";

/// An exclusive lock on an output folder, held until dropped (which removes the lock file). The kernel
/// releases the lock when the process ends, kill -9 included, so a lock file left by a dead run never blocks
/// the next one (no stale-lock guessing).
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Removed while still held: a process that opened the old file finds, after locking it, that the
        // path no longer names it, and starts over.
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// Prepares `dir` as [`prepare_output_dir`] does and takes its lock; a folder another process holds is
/// refused naming its PID.
pub fn lock_dir(dir: &Path) -> Result<DirLock> {
    use std::os::unix::fs::MetadataExt;
    prepare_output_dir(dir)?;
    let path = dir.join(LOCK_FILE);
    loop {
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| CacheError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                return Err(CacheError::invalid(
                    dir,
                    format!(
                        "in use by another sparsecoder process (PID {}); wait for it to finish or choose another output folder",
                        holder.trim()
                    ),
                ));
            }
            Err(fs::TryLockError::Error(e)) => return Err(CacheError::io(&path, e)),
        }
        let same = match (file.metadata(), fs::metadata(&path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if !same {
            continue; // the holder removed this file as we locked it: lock the new one
        }
        file.set_len(0)
            .and_then(|_| write!(file, "{}", std::process::id()))
            .map_err(|e| CacheError::io(&path, e))?;
        return Ok(DirLock { file, path });
    }
}
