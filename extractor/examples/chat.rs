//! `cargo run --release -p extractor --example chat -- MODEL "question"` (or a JSON file of messages): one
//! greedy answer from the local chat model, with timings.
use extractor::generate::{LocalChat, Sampling};
use extractor::source::ModelSource;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let source = ModelSource::open(std::path::Path::new(&args[1]))?;
    let t = Instant::now();
    let chat = LocalChat::open(&source)?;
    eprintln!("loaded in {:.2} s", t.elapsed().as_secs_f64());
    let messages: Vec<serde_json::Value> = if args[2].ends_with(".json") {
        serde_json::from_slice(&std::fs::read(&args[2])?)?
    } else {
        vec![serde_json::json!({"role": "user", "content": args[2]})]
    };
    let prompt = chat.prompt_ids(&messages)?;
    let t = Instant::now();
    let ids = chat.generate_ids(
        &prompt,
        64,
        &Sampling {
            temperature: 0.0,
            seed: 0,
        },
    )?;
    let dt = t.elapsed().as_secs_f64();
    println!("{}", chat.tokenizer.inner.decode(&ids, true).unwrap());
    eprintln!(
        "{} prompt tokens, {} generated, {dt:.2} s",
        prompt.len(),
        ids.len()
    );
    Ok(())
}
