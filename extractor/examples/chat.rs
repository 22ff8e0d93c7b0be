//! `cargo run --release -p extractor --example chat -- MODEL "question"`: one greedy answer from the local
//! chat model, with timings (prefill and per-token decode).
use extractor::generate::{ChatMessage, LocalChat, Sampling};
use extractor::source::ModelSource;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let source = ModelSource::open(std::path::Path::new(&args[1]))?;
    let t = Instant::now();
    let chat = LocalChat::open(&source)?;
    eprintln!("loaded in {:.2} s", t.elapsed().as_secs_f64());
    let messages = [ChatMessage::new("user", args[2].clone())];
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
