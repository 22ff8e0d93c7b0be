//! Documents from the user's text: a `.txt` (or any text) file is one document; a directory gives each file
//! below it (recursively, sorted by path, hidden files skipped); `.jsonl` gives one document per line's text
//! field; `.parquet` one per row of its text column. Files that are not UTF-8 are skipped and counted; entries
//! that are not regular files (FIFOs, sockets, devices) are skipped with a line saying so, never opened.
//! Everything streams: a corpus larger than memory works.

use anyhow::{anyhow, bail, Context, Result};
use arrow_array::{Array, LargeStringArray, StringArray, StringViewArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::io::BufRead;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CorpusStats {
    pub files: u64,
    pub documents: u64,
    pub bytes: u64,
    /// Files skipped because they are not UTF-8 text.
    pub skipped_non_utf8: u64,
}

/// Files of the corpus, in the order their documents are read.
pub fn corpus_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{}: cannot read text input", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)
            .with_context(|| format!("{}: cannot list directory", dir.display()))?
        {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                files.push(p);
            } else {
                // A FIFO, socket or device: opening one could block forever, and none holds a document.
                eprintln!("{}: skipped: not a regular file", p.display());
            }
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("{}: the text directory holds no files", path.display());
    }
    Ok(files)
}

/// Calls `each` with every document, in order.
pub fn for_each_document(
    path: &Path,
    text_field: &str,
    mut each: impl FnMut(String) -> Result<()>,
) -> Result<CorpusStats> {
    let mut stats = CorpusStats::default();
    for file in corpus_files(path)? {
        stats.files += 1;
        let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
        let mut emit = |doc: String| -> Result<()> {
            stats.documents += 1;
            stats.bytes += doc.len() as u64;
            each(doc)
        };
        match ext {
            "jsonl" => {
                let reader = std::io::BufReader::new(
                    std::fs::File::open(&file)
                        .with_context(|| format!("{}: cannot open", file.display()))?,
                );
                for (n, line) in reader.lines().enumerate() {
                    let line = line.with_context(|| {
                        format!(
                            "{}:{}: cannot read line (not UTF-8?)",
                            file.display(),
                            n + 1
                        )
                    })?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let value: serde_json::Value = serde_json::from_str(&line)
                        .with_context(|| format!("{}:{}: not valid JSON", file.display(), n + 1))?;
                    let text = value.get(text_field).and_then(|v| v.as_str()).ok_or_else(|| {
                        anyhow!("{}:{}: no string field {text_field:?} (choose another with --text-field)", file.display(), n + 1)
                    })?;
                    emit(text.to_string())?;
                }
            }
            "parquet" => read_parquet(&file, text_field, &mut emit)?,
            _ => {
                let bytes = std::fs::read(&file)
                    .with_context(|| format!("{}: cannot read", file.display()))?;
                match String::from_utf8(bytes) {
                    Ok(text) => emit(text)?,
                    Err(_) => stats.skipped_non_utf8 += 1,
                }
            }
        }
    }
    if stats.documents == 0 {
        bail!("{}: the corpus holds no documents", path.display());
    }
    Ok(stats)
}

fn read_parquet(
    file: &Path,
    field: &str,
    emit: &mut dyn FnMut(String) -> Result<()>,
) -> Result<()> {
    let f =
        std::fs::File::open(file).with_context(|| format!("{}: cannot open", file.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f)
        .with_context(|| format!("{}: not a Parquet file", file.display()))?;
    let schema = builder.schema().clone();
    let column = schema.index_of(field).map_err(|_| {
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().clone()).collect();
        anyhow!(
            "{}: no column {field:?} (columns: {names:?}; choose one with --text-field)",
            file.display()
        )
    })?;
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [column]);
    for batch in builder
        .with_projection(mask)
        .with_batch_size(1024)
        .build()?
    {
        let batch = batch.with_context(|| format!("{}: reading rows", file.display()))?;
        let col = batch.column(0);
        let mut push = |v: Option<&str>| emit(v.unwrap_or("").to_string());
        if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
            for i in 0..a.len() {
                push(a.is_valid(i).then(|| a.value(i)))?;
            }
        } else if let Some(a) = col.as_any().downcast_ref::<LargeStringArray>() {
            for i in 0..a.len() {
                push(a.is_valid(i).then(|| a.value(i)))?;
            }
        } else if let Some(a) = col.as_any().downcast_ref::<StringViewArray>() {
            for i in 0..a.len() {
                push(a.is_valid(i).then(|| a.value(i)))?;
            }
        } else {
            bail!(
                "{}: column {field:?} has type {}, expected a string type",
                file.display(),
                col.data_type()
            );
        }
    }
    Ok(())
}
