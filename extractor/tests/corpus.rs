//! Corpus readers (text, directory, JSONL, Parquet) and sparsify-style chunking, with the real tokenizer.
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use extractor::corpus::for_each_document;
use extractor::gguf::GgufFile;
use extractor::sequences::{build_sequences, SequenceConfig};
use extractor::tokenizer::TextTokenizer;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn tokenizer() -> TextTokenizer {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch_default.sh first",
        p.display()
    );
    TextTokenizer::from_gguf(&GgufFile::open(&p).unwrap()).unwrap()
}

const DOCS: [&str; 3] = [
    "Lists are mutable sequences, typically used to store collections of homogeneous items.",
    "Tuples are immutable sequences, typically used to store collections of heterogeneous data like 2-tuples.",
    "Ranges represent an immutable sequence of numbers and are commonly used for looping a specific number of times.",
];

fn docs_of(path: &Path, field: &str) -> Vec<String> {
    let mut docs = Vec::new();
    for_each_document(path, field, |d| {
        docs.push(d);
        Ok(())
    })
    .unwrap();
    docs
}

#[test]
fn jsonl_parquet_and_directories_give_the_same_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("c.jsonl");
    let lines: Vec<String> = DOCS
        .iter()
        .map(|d| serde_json::json!({"body": d, "id": 1}).to_string())
        .collect();
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    assert_eq!(docs_of(&jsonl, "body"), DOCS);

    let parquet = tmp.path().join("c.parquet");
    let column: ArrayRef = Arc::new(StringArray::from(DOCS.to_vec()));
    let batch = RecordBatch::try_from_iter(vec![("body", column)]).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&parquet).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    assert_eq!(docs_of(&parquet, "body"), DOCS);

    let dir = tmp.path().join("dir");
    std::fs::create_dir_all(dir.join("b")).unwrap();
    std::fs::write(dir.join("b/2.txt"), DOCS[2]).unwrap();
    std::fs::write(dir.join("a.txt"), DOCS[0]).unwrap();
    std::fs::write(dir.join("b/1.rst"), DOCS[1]).unwrap();
    std::fs::write(dir.join(".hidden"), "never read").unwrap();
    assert_eq!(
        docs_of(&dir, "text"),
        DOCS,
        "recursive, sorted by path, hidden files skipped"
    );

    let err = for_each_document(&jsonl, "text", |_| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("c.jsonl:1") && err.contains("no string field \"text\""),
        "{err}"
    );
    let err = for_each_document(&parquet, "text", |_| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no column \"text\"") && err.contains("body"),
        "{err}"
    );
}

#[test]
fn sequences_follow_chunk_and_tokenize() {
    let tok = tokenizer();
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("c.jsonl");
    let lines: Vec<String> = DOCS
        .iter()
        .map(|d| serde_json::json!({"text": d}).to_string())
        .collect();
    std::fs::write(&jsonl, lines.join("\n")).unwrap();
    // The stream sparsify tokenizes: a leading EOS, then each document followed by the next EOS.
    let mut stream = Vec::new();
    for d in DOCS {
        stream.push(tok.eos_id);
        stream.extend(tok.encode(d).unwrap());
    }
    let ctx = 8;
    let mut chunks: Vec<Vec<u32>> = stream.chunks_exact(ctx).map(|c| c.to_vec()).collect();
    let cfg = SequenceConfig {
        ctx_len: ctx,
        seed: 1,
        max_tokens: None,
        shuffle_buffer: 1000,
    };
    let (flat, stats) = build_sequences(&jsonl, "text", &tok, &cfg).unwrap();
    assert_eq!(stats.tokens_in_corpus, stream.len() as u64);
    assert_eq!(
        stats.sequences as usize,
        stream.len() / ctx,
        "the short remainder is dropped"
    );
    let mut got: Vec<Vec<u32>> = flat.chunks(ctx).map(|c| c.to_vec()).collect();
    assert_ne!(got, chunks, "sequences are shuffled");
    got.sort();
    chunks.sort();
    assert_eq!(got, chunks, "a permutation of the chunks");

    let again = build_sequences(&jsonl, "text", &tok, &cfg).unwrap().0;
    assert_eq!(again, flat, "same seed, same order");
    let other = build_sequences(
        &jsonl,
        "text",
        &tok,
        &SequenceConfig {
            seed: 2,
            ..cfg.clone()
        },
    )
    .unwrap()
    .0;
    assert_ne!(other, flat);
    // A small shuffle buffer still delivers every sequence once.
    let mut small = build_sequences(
        &jsonl,
        "text",
        &tok,
        &SequenceConfig {
            shuffle_buffer: 2,
            ..cfg.clone()
        },
    )
    .unwrap()
    .0;
    let mut all = flat.chunks(ctx).map(|c| c.to_vec()).collect::<Vec<_>>();
    let mut small_seqs = small.chunks(ctx).map(|c| c.to_vec()).collect::<Vec<_>>();
    all.sort();
    small_seqs.sort();
    assert_eq!(all, small_seqs);
    small.clear();
    let bounded = build_sequences(
        &jsonl,
        "text",
        &tok,
        &SequenceConfig {
            max_tokens: Some(20),
            ..cfg
        },
    )
    .unwrap()
    .0;
    assert_eq!(
        bounded.len(),
        16,
        "--max-tokens 20 gives 2 whole sequences of 8"
    );
}
