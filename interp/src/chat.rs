//! The language model behind the explainer and the scorers: a [`ChatModel`] is anything that answers a list of
//! chat messages. Two exist: [`HttpChat`], any OpenAI-compatible chat-completions server (vLLM, llama.cpp,
//! ollama, …), and the offline local model the CLI wires in. [`CachedChat`] puts either behind an on-disk
//! cache keyed by a hash of the model's identity and the messages, so a re-run or a crash loses nothing done,
//! and runs many prompts with bounded concurrency.

use anyhow::{anyhow, bail, Context, Result};
use cache_format::fsutil::write_atomic;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// What kind of answer a prompt wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Answer {
    /// Free text, at most this many tokens.
    Text { max_tokens: usize },
    /// A list of `n` zeros and ones, `[1, 0, …]`. A model may decode under that format (the local one does);
    /// a server generates freely and the answer is parsed.
    BinaryList { n: usize },
    /// A list of `n` digits 0–9, `[3, 0, …]`: simulation's predicted activation of each token. The local
    /// model decodes under that format and gives each entry's expected digit; a server asked for `logprobs`
    /// gives them too where its answer's digit tokens can be read off.
    DigitList { n: usize },
}

impl Answer {
    /// Tokens enough for the answer.
    pub fn max_tokens(self) -> usize {
        match self {
            Answer::Text { max_tokens } => max_tokens,
            Answer::BinaryList { n } | Answer::DigitList { n } => 4 * n + 16,
        }
    }
}

/// A model's answer: its text, and for list answers from a model that exposes them, each entry's probability
/// of `1` against `0` (which lets scores be computed without a decision threshold).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    #[serde(default)]
    pub yes_probability: Option<Vec<f64>>,
    /// For digit lists, each entry's expected digit Σ d · p(d) under the model's probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_digits: Option<Vec<f64>>,
}

impl Completion {
    pub fn text(text: String) -> Completion {
        Completion {
            text,
            ..Default::default()
        }
    }
}

pub trait ChatModel: Send + Sync {
    /// Everything that changes answers (server, model, sampling), for the cache key.
    fn identity(&self) -> String;
    fn complete(&self, messages: &[ChatMessage], answer: Answer) -> Result<Completion>;
    /// How many prompts may run at once.
    fn concurrency(&self) -> usize {
        1
    }
}

/// How a server is asked to keep a list answer in its format (servers differ in what they accept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ResponseFormat {
    /// Nothing asked: the answer is generated freely and parsed.
    Free,
    /// OpenAI's `{"type": "json_schema", "json_schema": {…}}` (OpenAI, vLLM, SGLang, llama.cpp's server).
    #[cfg_attr(feature = "clap", value(name = "json_schema"))]
    JsonSchema,
    /// `{"type": "json_object", "schema": {…}}` (llama-cpp-python, llama.cpp's server).
    #[cfg_attr(feature = "clap", value(name = "json_object"))]
    JsonObject,
}

impl ResponseFormat {
    /// The request's `response_format` for a list of `n` integers from 0 to `max`, as `{"answers": [...]}`.
    fn for_list(self, n: usize, max: u32) -> Option<serde_json::Value> {
        let values: Vec<u32> = (0..=max).collect();
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"answers": {"type": "array", "items": {"type": "integer", "enum": values},
                                       "minItems": n, "maxItems": n}},
            "required": ["answers"],
            "additionalProperties": false,
        });
        match self {
            ResponseFormat::Free => None,
            ResponseFormat::JsonSchema => Some(serde_json::json!({
                "type": "json_schema",
                "json_schema": {"name": "verdicts", "strict": true, "schema": schema},
            })),
            ResponseFormat::JsonObject => {
                Some(serde_json::json!({"type": "json_object", "schema": schema}))
            }
        }
    }
}

/// An OpenAI-compatible `/chat/completions` endpoint.
pub struct HttpChat {
    pub base_url: String,
    pub model: String,
    api_key: Option<String>,
    pub temperature: f32,
    pub seed: u64,
    pub retries: u32,
    pub concurrency: usize,
    pub response_format: ResponseFormat,
    agent: ureq::Agent,
}

impl HttpChat {
    /// `api_key_env` names the environment variable holding the key (unset: no Authorization header).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        base_url: &str,
        model: &str,
        api_key_env: &str,
        temperature: f32,
        seed: u64,
        timeout: Duration,
        retries: u32,
        concurrency: usize,
    ) -> HttpChat {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        HttpChat {
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key: std::env::var(api_key_env).ok().filter(|k| !k.is_empty()),
            temperature,
            seed,
            retries,
            concurrency: concurrency.max(1),
            response_format: ResponseFormat::Free,
            agent,
        }
    }

    fn url(&self) -> String {
        format!("{}/chat/completions", self.base_url)
    }

    /// One request: Ok(the answer's text, and its `choices[0].logprobs` where the server gave them), or
    /// Err((retryable, why)).
    fn attempt(
        &self,
        body: &serde_json::Value,
    ) -> std::result::Result<(String, serde_json::Value), (bool, String)> {
        let mut req = self
            .agent
            .post(&self.url())
            .header("Content-Type", "application/json");
        if let Some(key) = &self.api_key {
            req = req.header("Authorization", &format!("Bearer {key}"));
        }
        let mut resp = req
            .send_json(body)
            .map_err(|e| (true, format!("{}: {e}", self.url())))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| (true, format!("{}: reading the answer: {e}", self.url())))?;
        if status != 200 {
            let retry = status == 429 || status >= 500;
            let snippet: String = text.chars().take(300).collect();
            return Err((retry, format!("{}: HTTP {status}: {snippet}", self.url())));
        }
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            (
                false,
                format!("{}: the answer is not JSON ({e})", self.url()),
            )
        })?;
        v["choices"][0]["message"]["content"]
            .as_str()
            .map(|t| (t.to_string(), v["choices"][0]["logprobs"].clone()))
            .ok_or_else(|| {
                (
                    false,
                    format!("{}: no choices[0].message.content in {v}", self.url()),
                )
            })
    }
}

impl ChatModel for HttpChat {
    fn identity(&self) -> String {
        format!(
            "http {} model={} temperature={} seed={} format={:?}",
            self.base_url, self.model, self.temperature, self.seed, self.response_format
        )
    }

    fn complete(&self, messages: &[ChatMessage], answer: Answer) -> Result<Completion> {
        let mut body = serde_json::json!({
            "model": self.model,
            "messages": messages,
            "max_tokens": answer.max_tokens(),
            "temperature": self.temperature,
            "seed": self.seed,
        });
        let list = match answer {
            Answer::BinaryList { n } => Some((n, 1)),
            Answer::DigitList { n } => Some((n, 9)),
            Answer::Text { .. } => None,
        };
        if let Some(format) = list.and_then(|(n, max)| self.response_format.for_list(n, max)) {
            body["response_format"] = format;
        }
        if let Answer::DigitList { .. } = answer {
            // The ten digits' log-probabilities at each answer token (OpenAI's, vLLM's and llama.cpp's field).
            body["logprobs"] = true.into();
            body["top_logprobs"] = 10.into();
        }
        let mut delay = Duration::from_millis(500);
        for attempt in 0..=self.retries {
            match self.attempt(&body) {
                Ok((text, logprobs)) => {
                    let expected_digits = match answer {
                        Answer::DigitList { n } => expected_digits(&logprobs, n),
                        _ => None,
                    };
                    return Ok(Completion {
                        text,
                        expected_digits,
                        ..Default::default()
                    });
                }
                Err((true, why)) if attempt < self.retries => {
                    eprintln!("{why}; retrying in {:.1} s", delay.as_secs_f64());
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
                Err((_, why)) => bail!("{why}"),
            }
        }
        unreachable!()
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }
}

/// Each list entry's expected digit from a server's `logprobs` (`{"content": [{"token", "logprob",
/// "top_logprobs": [{"token", "logprob"}…]}…]}`): the answer's tokens that are one digit are its entries, in
/// order; at each, the digits among its top log-probabilities, renormalised, give Σ d · p(d) (the chosen digit
/// alone when there are none). `None` unless exactly `n` entries are found.
pub fn expected_digits(logprobs: &serde_json::Value, n: usize) -> Option<Vec<f64>> {
    let digit = |t: &serde_json::Value| -> Option<u32> {
        let s = t.as_str()?.trim();
        (s.len() == 1).then(|| s.chars().next()?.to_digit(10))?
    };
    let mut out = Vec::new();
    for entry in logprobs.get("content")?.as_array()? {
        let Some(chosen) = digit(&entry["token"]) else {
            continue;
        };
        let (mut sum, mut weight) = (0.0, 0.0);
        for alt in entry["top_logprobs"].as_array().into_iter().flatten() {
            if let (Some(d), Some(lp)) = (digit(&alt["token"]), alt["logprob"].as_f64()) {
                sum += d as f64 * lp.exp();
                weight += lp.exp();
            }
        }
        out.push(if weight > 0.0 {
            sum / weight
        } else {
            chosen as f64
        });
    }
    (out.len() == n).then_some(out)
}

/// What the cache stores per prompt.
#[derive(Serialize, Deserialize)]
struct CacheEntry {
    identity: String,
    answer_kind: Answer,
    messages: Vec<ChatMessage>,
    answer: Completion,
}

/// A model behind a disk cache: `dir/ab/abcdef….json` per prompt, written atomically.
pub struct CachedChat<'a> {
    pub model: &'a dyn ChatModel,
    dir: PathBuf,
    identity: String,
    pub hits: AtomicUsize,
    pub calls: AtomicUsize,
}

impl<'a> CachedChat<'a> {
    pub fn new(model: &'a dyn ChatModel, dir: PathBuf) -> CachedChat<'a> {
        CachedChat {
            identity: model.identity(),
            model,
            dir,
            hits: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
        }
    }

    fn path(&self, messages: &[ChatMessage], kind: Answer) -> PathBuf {
        let mut h = Sha256::new();
        h.update(self.identity.as_bytes());
        h.update(format!("\0{kind:?}\0"));
        h.update(serde_json::to_vec(messages).expect("messages serialise"));
        let key = format!("{:x}", h.finalize());
        self.dir.join(&key[..2]).join(format!("{key}.json"))
    }

    pub fn complete(&self, messages: &[ChatMessage], kind: Answer) -> Result<Completion> {
        let path = self.path(messages, kind);
        if let Ok(bytes) = std::fs::read(&path) {
            if let Ok(e) = serde_json::from_slice::<CacheEntry>(&bytes) {
                if e.identity == self.identity && e.answer_kind == kind && e.messages == messages {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(e.answer);
                }
            }
        }
        let answer = self.model.complete(messages, kind)?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        std::fs::create_dir_all(path.parent().unwrap())
            .with_context(|| format!("{}: cannot create the answer cache", self.dir.display()))?;
        let entry = CacheEntry {
            identity: self.identity.clone(),
            answer_kind: kind,
            messages: messages.to_vec(),
            answer: answer.clone(),
        };
        write_atomic(&path, |w| w.write_all(&serde_json::to_vec_pretty(&entry)?))?;
        Ok(answer)
    }

    /// Answers every prompt, at most `model.concurrency()` at a time, in order; `done` is called after each.
    pub fn complete_all(
        &self,
        prompts: &[(Vec<ChatMessage>, Answer)],
        done: &(dyn Fn() + Sync),
    ) -> Vec<Result<Completion>> {
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<Completion>>>> =
            Mutex::new((0..prompts.len()).map(|_| None).collect());
        let workers = self.model.concurrency().min(prompts.len()).max(1);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= prompts.len() {
                        break;
                    }
                    let (messages, kind) = &prompts[i];
                    let r = self.complete(messages, *kind);
                    results.lock().unwrap()[i] = Some(r);
                    done();
                });
            }
        });
        results
            .into_inner()
            .unwrap()
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(anyhow!("not answered"))))
            .collect()
    }
}
