//! What reusing the KV cache of a shared prompt prefix saves the local chat model on interp's scoring prompts.
//!
//! `cargo bench --bench chat_prefix -- [MODEL] [PROMPTS]` (default: models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf,
//! 8 prompts): detection prompts as `interp --batch 1` makes them for one latent — the same instructions and
//! explanation, one documentation window each (from data/python-3.11-docs/tutorial) — answered as a one-entry
//! list, first with the prefix kept between calls (what interp does), then with it dropped before every call.
//! Prints calls/s and prompt tokens/s of each, and the tokens computed.
use extractor::generate::{LocalChat, Sampling};
use extractor::source::ModelSource;
use interp::prompts::detection_prompt;
use std::path::PathBuf;
use std::time::Instant;

fn windows(n: usize) -> Vec<String> {
    let dir = PathBuf::from("data/python-3.11-docs/tutorial");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("data/python-3.11-docs/tutorial (scripts/fetch_default.sh)")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let words: Vec<String> = files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    words
        .chunks(48)
        .skip(10)
        .step_by(7)
        .take(n)
        .map(|c| c.join(" "))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let model = PathBuf::from(
        args.first()
            .cloned()
            .unwrap_or_else(|| "models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf".into()),
    );
    let n: usize = args.get(1).map_or(8, |s| s.parse().unwrap());
    let t = Instant::now();
    let chat = LocalChat::open(&ModelSource::open(&model).unwrap()).unwrap();
    println!(
        "{}: loaded in {:.1} s",
        model.display(),
        t.elapsed().as_secs_f64()
    );
    let explanation = "Keywords that start a loop or a conditional block in Python code, such as for, while and if.";
    let prompts: Vec<_> = windows(n)
        .into_iter()
        .map(|w| detection_prompt(explanation, &[w]))
        .collect();
    let lengths: Vec<usize> = prompts
        .iter()
        .map(|p| chat.prompt_ids(p).unwrap().len())
        .collect();
    let greedy = Sampling {
        temperature: 0.0,
        seed: 0,
    };
    for reuse in [true, false] {
        chat.forget_prefix();
        let t = Instant::now();
        let mut previous: Option<Vec<u32>> = None;
        let mut computed = 0;
        for p in &prompts {
            if !reuse {
                chat.forget_prefix();
            }
            let ids = chat.prompt_ids(p).unwrap();
            let shared = previous.as_ref().map_or(0, |q| {
                q.iter().zip(&ids).take_while(|(a, b)| a == b).count()
            });
            computed += ids.len() - if reuse { shared.min(ids.len() - 1) } else { 0 };
            chat.binary_list(p, 1, &greedy).unwrap();
            previous = Some(ids);
        }
        let s = t.elapsed().as_secs_f64();
        let total: usize = lengths.iter().sum();
        println!(
            "prefix {}: {n} calls in {s:.1} s = {:.3} calls/s; {total} prompt tokens ({:.0}/s), {computed} computed ({:.0}/s)",
            if reuse { "reused " } else { "dropped" },
            n as f64 / s,
            total as f64 / s,
            computed as f64 / s
        );
    }
}
