//! The tasks of sparse probing: texts, each with one class. A task comes from a user's file (`.jsonl` or
//! `.parquet`, a text column and a label column) or is built from the embedded corpus (the Python 3.11 docs'
//! reStructuredText):
//!
//! - `docs-section`: which part of the documentation a passage comes from — the top-level folder `c-api`,
//!   `howto`, `library`, `reference` or `tutorial`. A passage is consecutive paragraphs of one file, joined
//!   until it holds at least [`PASSAGE_CHARS`] characters.
//! - `code-vs-prose`: a literal block (the indented block after a paragraph ending in `::` or after a
//!   `.. code-block::`-like directive, dedented, or a doctest paragraph starting with `>>>`) against a prose
//!   paragraph (unindented, not a directive, heading or table, at least [`PROSE_CHARS`] characters).
//!
//! Labels are kept as strings; the classes are their sorted distinct values.

use anyhow::{anyhow, bail, Context, Result};
use arrow_array::{Array, BooleanArray, Int64Array, LargeStringArray, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeMap;
use std::path::Path;

/// A passage of `docs-section` holds at least this many characters.
pub const PASSAGE_CHARS: usize = 400;
/// A prose paragraph of `code-vs-prose` holds at least this many characters.
pub const PROSE_CHARS: usize = 120;
/// A literal block of `code-vs-prose` holds at least this many characters.
pub const CODE_CHARS: usize = 40;
/// The built-in tasks, by name.
pub const BUILTIN: [&str; 2] = ["docs-section", "code-vs-prose"];
/// The documentation's parts, the classes of `docs-section`.
const SECTIONS: [&str; 5] = ["c-api", "howto", "library", "reference", "tutorial"];

/// One probing task: every example's text and class (an index into `classes`).
#[derive(Clone, Debug)]
pub struct ProbingTask {
    pub name: String,
    pub classes: Vec<String>,
    pub texts: Vec<String>,
    pub labels: Vec<usize>,
}

impl ProbingTask {
    /// Examples of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }

    /// From (text, label) pairs, the classes being the sorted distinct labels.
    fn from_pairs(name: String, pairs: Vec<(String, String)>) -> ProbingTask {
        let classes: Vec<String> = pairs
            .iter()
            .map(|(_, l)| l.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let index: BTreeMap<&str, usize> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let labels = pairs.iter().map(|(_, l)| index[l.as_str()]).collect();
        ProbingTask {
            name,
            texts: pairs.into_iter().map(|(t, _)| t).collect(),
            classes,
            labels,
        }
    }
}

/// The task `spec` names: a built-in task's name, or a `.jsonl`/`.parquet` file.
pub fn load_task(
    spec: &str,
    corpus: &Path,
    text_field: &str,
    label_field: &str,
) -> Result<ProbingTask> {
    match spec {
        "docs-section" => docs_section(corpus),
        "code-vs-prose" => code_vs_prose(corpus),
        path => from_file(Path::new(path), text_field, label_field),
    }
}

/// `docs-section`, from the corpus folder (the Python docs' `_sources`).
pub fn docs_section(corpus: &Path) -> Result<ProbingTask> {
    let mut pairs = Vec::new();
    for section in SECTIONS {
        let dir = corpus.join(section);
        if !dir.is_dir() {
            bail!(
                "{}: no folder {section:?}: the built-in task docs-section needs the Python docs' sources \
                 (scripts/fetch_default.sh)",
                corpus.display()
            );
        }
        for file in extractor::corpus::corpus_files(&dir)? {
            for passage in passages(&read_text(&file)?) {
                pairs.push((passage, section.to_string()));
            }
        }
    }
    Ok(ProbingTask::from_pairs("docs-section".into(), pairs))
}

/// `code-vs-prose`, from every file of the corpus folder.
pub fn code_vs_prose(corpus: &Path) -> Result<ProbingTask> {
    let mut pairs = Vec::new();
    for file in extractor::corpus::corpus_files(corpus)? {
        for (text, is_code) in code_and_prose(&read_text(&file)?) {
            pairs.push((text, if is_code { "code" } else { "prose" }.to_string()));
        }
    }
    Ok(ProbingTask::from_pairs("code-vs-prose".into(), pairs))
}

fn read_text(file: &Path) -> Result<String> {
    std::fs::read_to_string(file)
        .with_context(|| format!("{}: cannot read as UTF-8", file.display()))
}

/// The file's paragraphs (blocks of lines between blank lines), each a list of lines.
fn paragraphs(text: &str) -> Vec<Vec<&str>> {
    let mut out = vec![Vec::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            if !out.last().unwrap().is_empty() {
                out.push(Vec::new());
            }
        } else {
            out.last_mut().unwrap().push(line);
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

/// Consecutive paragraphs joined (by blank lines) until each passage holds [`PASSAGE_CHARS`] characters; a
/// shorter rest at the end of the file is dropped.
fn passages(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for p in paragraphs(text) {
        if !current.is_empty() {
            current.push_str("\n\n");
        }
        current.push_str(&p.join("\n"));
        if current.len() >= PASSAGE_CHARS {
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

fn indented(line: &str) -> bool {
    line.starts_with(' ') || line.starts_with('\t')
}

/// A directive whose indented body is code.
fn code_directive(line: &str) -> bool {
    let l = line.trim_start();
    [
        ".. code-block::",
        ".. code::",
        ".. sourcecode::",
        ".. testcode::",
        ".. doctest::",
        ".. testsetup::",
    ]
    .iter()
    .any(|d| l.starts_with(d))
}

/// A heading underline or overline: one punctuation character repeated.
fn is_rule(line: &str) -> bool {
    let t = line.trim();
    let mut chars = t.chars();
    match chars.next() {
        Some(c) if "=-~^*#\"'`+.".contains(c) => t.len() >= 3 && chars.all(|d| d == c),
        _ => false,
    }
}

/// A prose paragraph: unindented text, not markup (directive, comment, table, field list, heading).
fn is_prose(p: &[&str]) -> bool {
    let first = p[0];
    let text_len: usize = p.iter().map(|l| l.len() + 1).sum();
    !indented(first)
        && !first.starts_with("..")
        && !first.starts_with(':')
        && !first.starts_with('|')
        && !first.starts_with('+')
        && !first.starts_with(">>>")
        && !p.iter().any(|l| is_rule(l))
        && text_len >= PROSE_CHARS
}

/// Lines with their common leading whitespace removed.
fn dedent(lines: &[&str]) -> String {
    let cut = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| l.get(cut..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The file's literal blocks (true) and prose paragraphs (false), in order.
fn code_and_prose(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    // Lines of the literal block being read (its paragraphs joined with a blank line).
    let mut code: Vec<&str> = Vec::new();
    let mut in_code = false;
    let flush = |code: &mut Vec<&str>, out: &mut Vec<(String, bool)>| {
        let text = dedent(code);
        if text.len() >= CODE_CHARS {
            out.push((text, true));
        }
        code.clear();
    };
    for p in paragraphs(text) {
        if in_code && p.iter().all(|l| indented(l)) {
            if !code.is_empty() {
                code.push("");
            }
            code.extend(p.iter().copied());
            continue;
        }
        if in_code {
            flush(&mut code, &mut out);
            in_code = false;
        }
        let last = p.last().unwrap().trim_end();
        if code_directive(p[0]) {
            // The directive (and its options), then its body after a blank line.
            in_code = true;
        } else if p[0].starts_with(">>>") {
            let text = p.join("\n");
            if text.len() >= CODE_CHARS {
                out.push((text, true));
            }
        } else if is_prose(&p) {
            out.push((p.join("\n"), false));
            in_code = last.ends_with("::");
        } else {
            in_code = last.ends_with("::");
        }
    }
    if in_code {
        flush(&mut code, &mut out);
    }
    out
}

/// A user's task: `.jsonl` (one object per line) or `.parquet`, with a string text column and a label column
/// (string, integer or boolean).
pub fn from_file(path: &Path, text_field: &str, label_field: &str) -> Result<ProbingTask> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let pairs = match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl") => jsonl_pairs(path, text_field, label_field)?,
        Some("parquet") => parquet_pairs(path, text_field, label_field)?,
        _ => bail!(
            "{}: a probing task is {} or a .jsonl/.parquet file with a text and a label column",
            path.display(),
            BUILTIN.join(", ")
        ),
    };
    if pairs.is_empty() {
        bail!("{}: the probing task holds no examples", path.display());
    }
    Ok(ProbingTask::from_pairs(name, pairs))
}

/// A JSON label as a class name: a string, an integer or a boolean.
fn label_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn jsonl_pairs(path: &Path, text_field: &str, label_field: &str) -> Result<Vec<(String, String)>> {
    let text = read_text(path)?;
    let mut pairs = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = || format!("{}:{}", path.display(), n + 1);
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}: not valid JSON", at()))?;
        let t = v.get(text_field).and_then(|t| t.as_str()).ok_or_else(|| {
            anyhow!(
                "{}: no string field {text_field:?} (the text column; --probing-text-field)",
                at()
            )
        })?;
        let l = v.get(label_field).and_then(label_string).ok_or_else(|| {
            anyhow!(
                "{}: no label field {label_field:?} holding a string, integer or boolean (--probing-label-field); found {}",
                at(),
                v.get(label_field).map_or("nothing".to_string(), |x| x.to_string())
            )
        })?;
        pairs.push((t.to_string(), l));
    }
    Ok(pairs)
}

/// One parquet column's values as strings (text: Utf8/LargeUtf8; labels also Int64/Boolean).
fn column_strings(col: &dyn Array) -> Option<Vec<Option<String>>> {
    let any = col.as_any();
    let each = |i: usize, f: &dyn Fn(usize) -> String| (!col.is_null(i)).then(|| f(i));
    let n = col.len();
    if let Some(a) = any.downcast_ref::<StringArray>() {
        return Some(
            (0..n)
                .map(|i| each(i, &|i| a.value(i).to_string()))
                .collect(),
        );
    }
    if let Some(a) = any.downcast_ref::<LargeStringArray>() {
        return Some(
            (0..n)
                .map(|i| each(i, &|i| a.value(i).to_string()))
                .collect(),
        );
    }
    if let Some(a) = any.downcast_ref::<Int64Array>() {
        return Some(
            (0..n)
                .map(|i| each(i, &|i| a.value(i).to_string()))
                .collect(),
        );
    }
    if let Some(a) = any.downcast_ref::<BooleanArray>() {
        return Some(
            (0..n)
                .map(|i| each(i, &|i| a.value(i).to_string()))
                .collect(),
        );
    }
    None
}

fn parquet_pairs(
    path: &Path,
    text_field: &str,
    label_field: &str,
) -> Result<Vec<(String, String)>> {
    let f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .with_context(|| format!("{}: not a parquet file", path.display()))?
        .build()?;
    let mut pairs = Vec::new();
    for batch in reader {
        let batch =
            batch.with_context(|| format!("{}: cannot read a record batch", path.display()))?;
        let column = |field: &str, what: &str, flag: &str| -> Result<Vec<Option<String>>> {
            let col = batch.column_by_name(field).ok_or_else(|| {
                anyhow!(
                    "{}: no column {field:?} (the {what} column; {flag})",
                    path.display()
                )
            })?;
            column_strings(col.as_ref()).ok_or_else(|| {
                anyhow!(
                    "{}: column {field:?} is {}; expected a string{} column",
                    path.display(),
                    col.data_type(),
                    if what == "label" {
                        ", int64 or boolean"
                    } else {
                        ""
                    }
                )
            })
        };
        let texts = column(text_field, "text", "--probing-text-field")?;
        let labels = column(label_field, "label", "--probing-label-field")?;
        for (t, l) in texts.into_iter().zip(labels) {
            match (t, l) {
                (Some(t), Some(l)) => pairs.push((t, l)),
                _ => bail!("{}: a row has a null text or label", path.display()),
            }
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_blocks_and_prose_paragraphs_are_told_apart() {
        let rst = "Title\n=====\n\nThis paragraph explains what the loop below does, at some length and \
                   with enough words, so that it counts as prose for the task::\n\n    for i in range(10):\n        print(i)\n\n    \
                   print('done')\n\nAnother paragraph of plain prose that is long enough to count, talking \
                   about the example shown above in some detail and at some length.\n\n>>> sorted({'b': 1, 'a': 2}.items())\n[('a', 2), ('b', 1)]\n\n.. code-block:: python\n\n   \
                   import os\n   os.getcwd()\n";
        let got = code_and_prose(rst);
        let kinds: Vec<bool> = got.iter().map(|(_, c)| *c).collect();
        assert_eq!(kinds, [false, true, false, true], "{got:?}");
        assert_eq!(
            got[1].0,
            "for i in range(10):\n    print(i)\n\nprint('done')"
        );
        // The doctest paragraph is kept whole; the last block is dropped (shorter than CODE_CHARS).
        assert!(got[3].0.starts_with(">>> sorted"));
    }

    /// A parquet task with a string text column and an int64 or boolean label column reads as the same
    /// examples and classes as its .jsonl twin; a missing label column is refused naming it.
    #[test]
    fn parquet_and_jsonl_tasks_read_alike() {
        use arrow_array::{ArrayRef, RecordBatch};
        use std::sync::Arc;
        let tmp = tempfile::tempdir().unwrap();
        let texts = ["one text", "another", "a third", "and a fourth"];
        let write = |name: &str, label: ArrayRef| {
            let path = tmp.path().join(name);
            let text: ArrayRef = Arc::new(StringArray::from(texts.to_vec()));
            let batch = RecordBatch::try_from_iter(vec![("body", text), ("y", label)]).unwrap();
            let file = std::fs::File::create(&path).unwrap();
            let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            path
        };
        let ints = write("ints.parquet", Arc::new(Int64Array::from(vec![3, 1, 3, 1])));
        let bools = write(
            "bools.parquet",
            Arc::new(BooleanArray::from(vec![true, false, true, false])),
        );
        let jsonl = tmp.path().join("t.jsonl");
        let lines: Vec<String> = texts
            .iter()
            .zip([3, 1, 3, 1])
            .map(|(t, y)| serde_json::json!({"body": t, "y": y}).to_string())
            .collect();
        std::fs::write(&jsonl, lines.join("\n")).unwrap();
        let a = from_file(&ints, "body", "y").unwrap();
        let b = from_file(&jsonl, "body", "y").unwrap();
        assert_eq!(
            (&a.texts, &a.labels, &a.classes),
            (&b.texts, &b.labels, &b.classes)
        );
        assert_eq!(a.classes, ["1", "3"]);
        assert_eq!(a.labels, [1, 0, 1, 0]);
        let c = from_file(&bools, "body", "y").unwrap();
        assert_eq!(
            (c.classes, c.labels),
            (
                vec!["false".to_string(), "true".to_string()],
                vec![1, 0, 1, 0]
            )
        );
        let err = from_file(&ints, "body", "label").unwrap_err().to_string();
        assert!(err.contains("ints.parquet: no column \"label\""), "{err}");
    }

    #[test]
    fn passages_join_paragraphs_to_the_minimum_length() {
        let para = "word ".repeat(30);
        let text = format!("{para}\n\n{para}\n\n{para}\n\n{para}\n\nshort rest");
        let got = passages(&text);
        assert_eq!(got.len(), 1);
        assert!(got[0].len() >= PASSAGE_CHARS);
    }
}
