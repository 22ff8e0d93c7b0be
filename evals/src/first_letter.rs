//! The first-letter task of SAEBench's absorption eval (Chanin et al. 2024; `evals/absorption/vocab.py`,
//! `prompting.py`, `probing.py: create_dataset_probe_training`): its words, prompts and their activations.
//!
//! - Words: every token of the tokenizer that decodes to ASCII letters only, after at most one leading space
//!   (`get_alpha_tokens`), e.g. `" cat"` and `"cat"` are two words.
//! - Prompt: ten in-context examples from a word list (never the word itself), each `"{example} has the
//!   first letter: {X}"` with X its first letter in capitals, joined by newlines, preceded by one newline,
//!   then `"{word} has the first letter:"` (`create_icl_prompt` with `prepend_separator_to_first_example`).
//!   The model reads BOS (the tokenizer's, if it has one) then the prompt's tokens: HookedTransformer, which
//!   SAEBench runs the model in, prepends BOS whether or not the tokenizer itself adds one.
//! - The activation read is the token 6 from the end: the word's (last) token before `" has the first
//!   letter:"`. Each prompt's own position is read; SAEBench right-pads a batch and reads position −6 of the
//!   padded batch, which is a different token for a prompt shorter than its batch's longest.
//! - Split: the words shuffled, the first 80 % train, the rest test; a word's examples come from its own split.

use anyhow::{anyhow, Result};
use cache_format::Side;
use extractor::model::{LanguageModel, Stop};
use extractor::tokenizer::TextTokenizer;
use rand::seq::{index, SliceRandom};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const LETTERS: &str = "abcdefghijklmnopqrstuvwxyz";
/// What follows the word in every prompt (SAEBench's template `"{word} has the first letter:"`).
pub const TEMPLATE_TAIL: &str = " has the first letter:";
/// The read position, counted from the prompt's end (SAEBench's `prompt_token_pos = -6`).
pub const WORD_POS_FROM_END: usize = 6;
/// In-context examples per prompt.
pub const ICL_EXAMPLES: usize = 10;
/// Share of the words that are training words.
pub const TRAIN_FRACTION: f64 = 0.8;

/// The tokenizer's words (see the module doc), sorted.
pub fn alpha_words(tokenizer: &TextTokenizer) -> Result<Vec<String>> {
    let mut words = Vec::new();
    for id in 0..tokenizer.vocab_size {
        let Ok(s) = tokenizer.inner.decode(&[id], false) else {
            continue;
        };
        let body = s.strip_prefix(' ').unwrap_or(&s);
        if !body.is_empty() && body.chars().all(|c| c.is_ascii_alphabetic()) {
            words.push(s);
        }
    }
    words.sort();
    words.dedup();
    if words.is_empty() {
        return Err(anyhow!(
            "absorption: the tokenizer ({}) has no alphabetic token",
            tokenizer.source
        ));
    }
    Ok(words)
}

/// The word's first letter, 0 for a … 25 for z.
pub fn letter_of(word: &str) -> usize {
    let c = word
        .trim()
        .chars()
        .find(|c| c.is_ascii_alphabetic())
        .expect("alpha words only");
    (c.to_ascii_lowercase() as u8 - b'a') as usize
}

/// One prompt as the model reads it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Prompt {
    pub word: String,
    pub letter: usize,
    /// The in-context examples, in order.
    pub examples: Vec<String>,
    pub text: String,
    pub token_ids: Vec<u32>,
}

/// The prompt text for `word` after `examples`.
pub fn prompt_text(word: &str, examples: &[String]) -> String {
    let shots: Vec<String> = examples
        .iter()
        .map(|e| {
            let x = LETTERS.as_bytes()[letter_of(e)].to_ascii_uppercase() as char;
            format!("{e}{TEMPLATE_TAIL} {x}")
        })
        .collect();
    format!("\n{}\n{word}{TEMPLATE_TAIL}", shots.join("\n"))
}

/// A prompt for `word` with examples drawn from `pool` (re-drawn while they hold the word, as SAEBench).
pub fn make_prompt(
    word: &str,
    pool: &[String],
    tokenizer: &TextTokenizer,
    rng: &mut ChaCha8Rng,
) -> Result<Prompt> {
    let n = ICL_EXAMPLES.min(pool.len().saturating_sub(1));
    let examples: Vec<String> = loop {
        let drawn: Vec<String> = index::sample(rng, pool.len(), n)
            .into_iter()
            .map(|i| pool[i].clone())
            .collect();
        if !drawn.iter().any(|e| e == word) {
            break drawn;
        }
    };
    let text = prompt_text(word, &examples);
    let mut token_ids: Vec<u32> = tokenizer.bos_id.into_iter().collect();
    token_ids.extend(tokenizer.encode(&text)?);
    Ok(Prompt {
        word: word.to_string(),
        letter: letter_of(word),
        examples,
        text,
        token_ids,
    })
}

/// The probe's training and test prompts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Dataset {
    /// Words the tokenizer has; `used` of them (a seeded draw, with `--absorption-words`) make the prompts.
    pub vocabulary: usize,
    pub used: usize,
    pub train: Vec<Prompt>,
    pub test: Vec<Prompt>,
}

/// Shuffles `words`, keeps `max_words` of them, splits them and makes one prompt per word.
pub fn dataset(
    words: &[String],
    max_words: Option<usize>,
    tokenizer: &TextTokenizer,
    rng: &mut ChaCha8Rng,
) -> Result<Dataset> {
    let mut shuffled = words.to_vec();
    shuffled.shuffle(rng);
    shuffled.truncate(max_words.unwrap_or(usize::MAX));
    let split = (shuffled.len() as f64 * TRAIN_FRACTION) as usize;
    let (train_words, test_words) = shuffled.split_at(split);
    let prompts = |ws: &[String], rng: &mut ChaCha8Rng| {
        ws.iter()
            .map(|w| make_prompt(w, ws, tokenizer, rng))
            .collect::<Result<Vec<_>>>()
    };
    let train = prompts(train_words, rng)?;
    let test = prompts(test_words, rng)?;
    Ok(Dataset {
        vocabulary: words.len(),
        used: shuffled.len(),
        train,
        test,
    })
}

/// Each prompt's activation at its word token, on each of `sides` (`prompts × d`, row-major).
pub fn word_activations(
    model: &dyn LanguageModel,
    layer: usize,
    prompts: &[Prompt],
    sides: &[Side],
    batch: usize,
) -> Result<BTreeMap<Side, Vec<f32>>> {
    let d = model.info().d_model;
    let mut out: BTreeMap<Side, Vec<f32>> = sides
        .iter()
        .map(|&s| (s, vec![0f32; prompts.len() * d]))
        .collect();
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| prompts[i].token_ids.len());
    for chunk in order.chunks(batch.max(1)) {
        let t = prompts[*chunk.last().unwrap()].token_ids.len();
        // Right-padded with the first token: causal attention leaves the real positions untouched.
        let mut tokens = vec![prompts[chunk[0]].token_ids[0]; chunk.len() * t];
        for (b, &i) in chunk.iter().enumerate() {
            let ids = &prompts[i].token_ids;
            if ids.len() < WORD_POS_FROM_END {
                return Err(anyhow!(
                    "absorption: prompt for {:?} has {} tokens; expected at least {WORD_POS_FROM_END}",
                    prompts[i].word,
                    ids.len()
                ));
            }
            tokens[b * t..b * t + ids.len()].copy_from_slice(ids);
        }
        let mut ran = false;
        model.forward(&tokens, t, Stop::AfterLayer(layer), &mut |l, x, y| {
            if l != layer {
                return;
            }
            ran = true;
            for (side, acts) in out.iter_mut() {
                let src: &[f32] = if *side == Side::MlpIn { x } else { y };
                for (b, &i) in chunk.iter().enumerate() {
                    let row = b * t + prompts[i].token_ids.len() - WORD_POS_FROM_END;
                    acts[i * d..(i + 1) * d].copy_from_slice(&src[row * d..(row + 1) * d]);
                }
            }
        });
        if !ran {
            return Err(anyhow!("the model ran no layer {layer}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_as_saebench_writes_it() {
        let ex = vec![" cat".to_string(), "Dog".to_string()];
        assert_eq!(
            prompt_text(" apple", &ex),
            "\n cat has the first letter: C\nDog has the first letter: D\n apple has the first letter:"
        );
        assert_eq!(letter_of(" Zebra"), 25);
        assert_eq!(letter_of("a"), 0);
    }
}
