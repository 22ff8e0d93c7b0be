//! Text generation with the Llama forward pass: the offline language model behind `sparsecoder interp`.
//! A KV cache per layer, so each new token costs one row through the model; greedy or seeded sampling; the
//! chat template from the model's own metadata (GGUF `tokenizer.chat_template`, or `tokenizer_config.json`'s
//! `chat_template`), rendered with minijinja as transformers renders it with Jinja.

use crate::llama::{LayerRopes, Llama};
use crate::ops::cached_attention;
use crate::source::ModelSource;
use crate::tokenizer::TextTokenizer;
use anyhow::{anyhow, bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// Keys and values of every position seen so far, per layer, `[positions × kv_heads·head_dim]`.
pub struct KvCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
}

impl KvCache {
    /// Forgets every position from `len` on.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            for (k, v) in self.keys.iter_mut().zip(&mut self.values) {
                let width = k.len() / self.len;
                k.truncate(len * width);
                v.truncate(len * width);
            }
            self.len = len;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Llama {
    pub fn new_cache(&self) -> KvCache {
        let n = self.config.num_layers;
        KvCache {
            keys: vec![Vec::new(); n],
            values: vec![Vec::new(); n],
            len: 0,
        }
    }

    /// Runs `tokens` (one sequence) after the positions already in `cache`, appends their keys and values, and
    /// returns the logits of the last one.
    pub fn extend(&self, cache: &mut KvCache, tokens: &[u32]) -> Vec<f32> {
        let c = &self.config;
        assert!(!tokens.is_empty());
        assert_eq!(
            self.loaded_layers(),
            c.num_layers,
            "generation needs every layer"
        );
        let past = cache.len;
        let ropes = LayerRopes::new(c, past + tokens.len());
        let mut x = self.embed_tokens(tokens);
        for l in 0..c.num_layers {
            let rope = ropes.of(c, l);
            let (keys, values) = (&mut cache.keys[l], &mut cache.values[l]);
            self.layer(l, &mut x, &mut |_, _, _| {}, &mut |q, k, v, spec| {
                rope.apply_from(q, c.heads, c.head_dim, past);
                rope.apply_from(k, c.kv_heads, c.head_dim, past);
                keys.extend_from_slice(k);
                values.extend_from_slice(&v);
                cached_attention(q, keys, values, past, spec)
            });
        }
        cache.len += tokens.len();
        let d = c.d_model;
        self.logits(&x[x.len() - d..])
    }
}

/// A chat template and the special tokens it may refer to.
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    pub fn new(source: String, bos_token: String, eos_token: String) -> ChatTemplate {
        ChatTemplate {
            source,
            bos_token,
            eos_token,
        }
    }

    /// The prompt text for `messages` (each with `role` and `content`), ending with the assistant's turn
    /// opened (`add_generation_prompt`).
    pub fn render<M: Serialize>(&self, messages: &[M]) -> Result<String> {
        let mut env = minijinja::Environment::new();
        env.add_template("chat", &self.source)
            .map_err(|e| anyhow!("the chat template does not parse: {e}"))?;
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        env.get_template("chat")
            .and_then(|t| t.render(ctx))
            .map_err(|e| anyhow!("rendering the chat template: {e}"))
    }
}

/// How the next token is chosen: greedy at temperature 0, else sampled from softmax(logits / temperature).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub temperature: f32,
    pub seed: u64,
}

/// Probabilities from logits (in f64, shifted by the largest).
fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = logits.iter().map(|&v| ((v - max) as f64).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// Σ i · p[i]: the expected index under the probabilities `p` (the expected digit when p[d] is digit d's).
fn expected_index(p: &[f64]) -> f64 {
    p.iter().enumerate().map(|(i, p)| i as f64 * p).sum()
}

fn choose(logits: &[f32], sampling: &Sampling, rng: &mut ChaCha8Rng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 {
                    (i, v)
                } else {
                    best
                }
            })
            .0 as u32
    };
    if sampling.temperature <= 0.0 {
        return argmax();
    }
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits
        .iter()
        .map(|&v| (((v - max) / sampling.temperature) as f64).exp())
        .collect();
    let mut target = rng.random::<f64>() * weights.iter().sum::<f64>();
    for (i, w) in weights.iter().enumerate() {
        target -= w;
        if target <= 0.0 {
            return i as u32;
        }
    }
    argmax()
}

/// A chat model run locally: the whole Llama-family model with its head, its tokenizer and chat template.
pub struct LocalChat {
    pub model: Llama,
    pub tokenizer: TextTokenizer,
    pub template: ChatTemplate,
    /// Generation stops at any of these (EOS and the template's end-of-turn token).
    stop_ids: Vec<u32>,
    pub name: String,
    /// The tokens of the last call and their KV cache: a new prompt reuses the part of it they share
    /// (scoring prompts of one latent differ only after the explanation).
    last: Mutex<Option<(Vec<u32>, KvCache)>>,
}

impl LocalChat {
    pub fn open(source: &ModelSource) -> Result<LocalChat> {
        let (model, template) = source.chat_parts()?;
        let tokenizer = source.tokenizer()?;
        let mut stop_ids = vec![tokenizer.eos_id];
        for end_of_turn in ["<|im_end|>", "<|eot_id|>", "<end_of_turn>"] {
            if let Some(id) = tokenizer.inner.token_to_id(end_of_turn) {
                stop_ids.push(id);
            }
        }
        Ok(LocalChat {
            name: source.name(),
            model,
            tokenizer,
            template,
            stop_ids,
            last: Mutex::new(None),
        })
    }

    /// A KV cache holding `prompt` but its last token, reused from the previous call where they agree, and
    /// the logits after the whole prompt.
    fn prefill(&self, prompt: &[u32]) -> (KvCache, Vec<u32>, Vec<f32>) {
        let previous = self.last.lock().unwrap().take();
        let (mut cache, mut seen) = match previous {
            Some((tokens, mut cache)) => {
                let common = tokens
                    .iter()
                    .zip(prompt)
                    .take_while(|(a, b)| a == b)
                    .count();
                // At least the last prompt token is run again: its logits are needed.
                let keep = common.min(prompt.len() - 1);
                cache.truncate(keep);
                (cache, tokens[..keep].to_vec())
            }
            None => (self.model.new_cache(), Vec::new()),
        };
        let logits = self.model.extend(&mut cache, &prompt[seen.len()..]);
        seen.extend_from_slice(&prompt[seen.len()..]);
        (cache, seen, logits)
    }

    /// Drops the KV cache kept from the previous call, so the next prompt is computed whole (for measuring what
    /// the reuse of a shared prefix saves).
    pub fn forget_prefix(&self) {
        *self.last.lock().unwrap() = None;
    }

    fn keep(&self, tokens: Vec<u32>, cache: KvCache) {
        *self.last.lock().unwrap() = Some((tokens, cache));
    }

    /// Answers `messages` with a list of `n` zeros and ones, `[1, 0, …]`, decoding under that format (see
    /// [`LocalChat::choice_list`]). Also returns, per entry, the model's probability of `1` against `0`.
    pub fn binary_list<M: Serialize>(
        &self,
        messages: &[M],
        n: usize,
        sampling: &Sampling,
    ) -> Result<(String, Vec<f64>)> {
        let (text, p) = self.choice_list(messages, n, &["0", "1"], sampling)?;
        Ok((text, p.into_iter().map(|p| p[1]).collect()))
    }

    /// Answers `messages` with a list of `n` digits 0–9, `[3, 0, …]` (simulation's predicted activations).
    /// Also returns, per entry, the expected digit under the model's probabilities of the ten digit tokens
    /// (softmax over their logits): Σ d · p(d).
    pub fn digit_list<M: Serialize>(
        &self,
        messages: &[M],
        n: usize,
        sampling: &Sampling,
    ) -> Result<(String, Vec<f64>)> {
        const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
        let (text, p) = self.choice_list(messages, n, &DIGITS, sampling)?;
        Ok((text, p.iter().map(|p| expected_index(p)).collect()))
    }

    /// Answers `messages` with a list of `n` entries, each one of `choices` (single-token strings, the first
    /// being `"0"`), decoding under that format: the brackets and separators are given, and at each entry the
    /// model chooses among the choices' tokens (greedily, or sampled from them at `sampling.temperature`).
    /// Also returns, per entry, the model's probability of each choice (softmax over their logits).
    pub fn choice_list<M: Serialize>(
        &self,
        messages: &[M],
        n: usize,
        choices: &[&str],
        sampling: &Sampling,
    ) -> Result<(String, Vec<Vec<f64>>)> {
        if n == 0 {
            bail!("a list of no entries");
        }
        let token = |s: &str| -> Result<u32> {
            match self.tokenizer.encode(s)?.as_slice() {
                [id] => Ok(*id),
                other => bail!("the tokenizer splits {s:?} into {} tokens", other.len()),
            }
        };
        let ids = choices
            .iter()
            .map(|c| token(c))
            .collect::<Result<Vec<u32>>>()?;
        let zero = ids[0];
        // The format's tokens, with every entry the first choice; each choice is one token, so any entry may
        // become any choice.
        let template = format!(
            "[{}{}]",
            format!("{}, ", choices[0]).repeat(n - 1),
            choices[0]
        );
        let format_ids = self.tokenizer.encode(&template)?;
        let slots: Vec<usize> = (0..format_ids.len())
            .filter(|&i| format_ids[i] == zero)
            .collect();
        if slots.len() != n {
            bail!("the tokenizer does not keep the entries of {template:?} apart");
        }
        let mut prompt = self.prompt_ids(messages)?;
        prompt.extend_from_slice(&format_ids[..slots[0]]);
        let (mut cache, mut tokens, mut logits) = self.prefill(&prompt);
        let mut rng = ChaCha8Rng::seed_from_u64(sampling.seed);
        let mut answer = format_ids.clone();
        let mut probabilities = Vec::with_capacity(n);
        for (j, &slot) in slots.iter().enumerate() {
            let at: Vec<f32> = ids.iter().map(|&t| logits[t as usize]).collect();
            probabilities.push(softmax(&at));
            answer[slot] = ids[choose(&at, sampling, &mut rng) as usize];
            if j + 1 < n {
                let next = &answer[slot..slots[j + 1]];
                logits = self.model.extend(&mut cache, next);
                tokens.extend_from_slice(next);
            }
        }
        self.keep(tokens, cache);
        let text = self
            .tokenizer
            .inner
            .decode(&answer, false)
            .map_err(|e| anyhow!("decoding the answer: {e}"))?;
        Ok((text, probabilities))
    }

    /// The token ids of the prompt for `messages`.
    pub fn prompt_ids<M: Serialize>(&self, messages: &[M]) -> Result<Vec<u32>> {
        let text = self.template.render(messages)?;
        self.tokenizer.encode(&text)
    }

    /// The generated token ids (without the stop token), at most `max_tokens`.
    pub fn generate_ids(
        &self,
        prompt: &[u32],
        max_tokens: usize,
        sampling: &Sampling,
    ) -> Result<Vec<u32>> {
        if prompt.is_empty() {
            bail!("an empty prompt");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(sampling.seed);
        let (mut cache, mut tokens, mut logits) = self.prefill(prompt);
        let mut out = Vec::new();
        while out.len() < max_tokens {
            let next = choose(&logits, sampling, &mut rng);
            if self.stop_ids.contains(&next) {
                break;
            }
            out.push(next);
            tokens.push(next);
            logits = self.model.extend(&mut cache, &[next]);
        }
        self.keep(tokens, cache);
        Ok(out)
    }

    /// The assistant's answer to `messages`.
    pub fn chat<M: Serialize>(
        &self,
        messages: &[M],
        max_tokens: usize,
        sampling: &Sampling,
    ) -> Result<String> {
        let prompt = self.prompt_ids(messages)?;
        let ids = self.generate_ids(&prompt, max_tokens, sampling)?;
        self.tokenizer
            .inner
            .decode(&ids, true)
            .map_err(|e| anyhow!("decoding the answer: {e}"))
    }
}

impl ModelSource {
    /// The whole model with its head, and its chat template: for Llama-family GGUF files and folders.
    pub fn chat_parts(&self) -> Result<(Llama, ChatTemplate)> {
        let tokenizer = self.tokenizer()?;
        let token = |id: Option<u32>| {
            id.and_then(|i| tokenizer.inner.id_to_token(i))
                .unwrap_or_default()
        };
        let (bos, eos) = (token(tokenizer.bos_id), token(Some(tokenizer.eos_id)));
        match self {
            ModelSource::Gguf(g) => {
                let source = g
                    .get_str("tokenizer.chat_template")
                    .with_context(|| {
                        format!("{}: no chat template in the metadata", g.path().display())
                    })?
                    .to_string();
                Ok((
                    Llama::from_gguf(g, None, true)?,
                    ChatTemplate::new(source, bos, eos),
                ))
            }
            ModelSource::HfFolder(h) => {
                let path = h.dir.join("tokenizer_config.json");
                let cfg: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(&path)
                        .with_context(|| format!("{}: cannot read", path.display()))?,
                )
                .with_context(|| format!("{}: not JSON", path.display()))?;
                let source = cfg["chat_template"]
                    .as_str()
                    .ok_or_else(|| anyhow!("{}: no chat_template", path.display()))?
                    .to_string();
                Ok((
                    h.load_llama_with_head()?,
                    ChatTemplate::new(source, bos, eos),
                ))
            }
        }
    }
}
