//! `sparsecoder interp`: automated interpretability of coder latents (explanations, detection and fuzzing
//! scores) on the held-out shards of a cache, with the offline local chat model or an OpenAI-compatible
//! server. Wires `interp` (the method) to the cache, the coders (`trainer`) and the model (`extractor`).

use crate::flags::one_of;
use anyhow::{bail, Result};
use cache_format::Cache;
use clap::Args;
use extractor::extract::{run as extract, ExtractArgs};
use extractor::generate::{LocalChat, Sampling};
use extractor::source::ModelSource;
use interp::chat::{
    Answer, CachedChat, ChatMessage, ChatModel, Completion, HttpChat, ResponseFormat,
};
use interp::records::{RecordConfig, Recorder};
use interp::report::{num, write_html, write_latents, write_summary};
use interp::run::{interpret, sample_latents, Explainer, InterpConfig, Scorer};
use interp::summary::{summarize, CoderSummary, SCORE_COLUMNS};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use trainer::checkpoint::{find_coders, load_coder, load_for_cache, CoderMeta, LoadedCoder};
use trainer::coder::SparseCoder;

#[derive(Args)]
// A negative number is a (refused) value, not an unknown flag: the error then names the flag.
#[command(allow_negative_numbers = true)]
pub struct InterpCli {
    /// The model the cache was extracted from: its tokenizer turns token ids into text, and with `--llm local`
    /// (and no --chat-model) it also explains and scores.
    #[arg(long)]
    model: PathBuf,
    /// The activation cache; its held-out shards are the token set.
    #[arg(long, required_unless_present = "text", conflicts_with = "text")]
    cache: Option<PathBuf>,
    /// Instead of a cache: text (a file or directory, as `extract --text` takes) run through the model to the
    /// coders' layer; the activations are cached in <out>/text-cache (bounded by --tokens, default 65536).
    #[arg(long)]
    text: Option<PathBuf>,
    /// Sequence length for --text.
    #[arg(long, default_value_t = 256)]
    ctx_len: usize,
    /// Coder folders, or folders holding coder folders (a sweep's output).
    #[arg(long, num_args = 1.., required = true)]
    checkpoints: Vec<PathBuf>,
    /// Latents per coder, drawn at random (with --seed) among those firing at least --min-firings times.
    #[arg(long, default_value_t = 20)]
    latents: usize,
    #[arg(long, default_value_t = 40)]
    min_firings: u64,
    /// The last N shards are held out (as in `train`) and are the token set.
    #[arg(long, default_value_t = 1)]
    holdout_shards: usize,
    /// The token set is every shard of --cache (a cache extracted for interpretation, not trained on).
    #[arg(long)]
    all_shards: bool,
    /// Read at most this many tokens of the token set.
    #[arg(long)]
    tokens: Option<u64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder: summary.json/.csv, index.html and a page per coder, <coder>/latents.jsonl, and the
    /// answer cache (llm-cache/) that makes a re-run free.
    #[arg(long)]
    out: PathBuf,
    /// local: a Llama-family chat model run here (--chat-model, default --model); http: an OpenAI-compatible
    /// chat-completions server (--api-base, --api-model).
    #[arg(long, default_value = "local", value_parser = one_of::<Llm>("--llm"))]
    llm: Llm,
    /// Who writes the explanations: llm (the chat model, from 40 marked examples, as the paper) or
    /// top-tokens (no model: "active on the tokens …", the 5 tokens with the most firings among the same
    /// examples; a baseline that shows whether the scorer can use an explanation at all).
    #[arg(long, default_value = "llm", value_parser = one_of::<Explainer>("--explainer"))]
    explainer: Explainer,
    #[arg(long)]
    chat_model: Option<PathBuf>,
    /// e.g. http://127.0.0.1:8080/v1
    #[arg(long)]
    api_base: Option<String>,
    #[arg(long)]
    api_model: Option<String>,
    /// The environment variable holding the API key (none sent when it is unset).
    #[arg(long, default_value = "OPENAI_API_KEY")]
    api_key_env: String,
    /// Requests in flight at once (http).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds per request (http).
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Retries of a failed request, with exponential back-off (http).
    #[arg(long, default_value_t = 4)]
    retries: u32,
    /// How the server is asked to keep scoring answers a list (http): free (parse what comes), json_schema
    /// (OpenAI's structured outputs: OpenAI, vLLM, llama.cpp's server) or json_object (llama-cpp-python).
    #[arg(long, default_value = "free", value_parser = one_of::<ResponseFormat>("--response-format"))]
    response_format: ResponseFormat,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Activating examples per quantile shown to the explainer (10 quantiles).
    #[arg(long, default_value_t = 4)]
    explain_per_quantile: usize,
    /// Activating examples per quantile for detection and fuzzing.
    #[arg(long, default_value_t = 5)]
    score_per_quantile: usize,
    /// Silent windows for detection.
    #[arg(long, default_value_t = 50)]
    non_activating: usize,
    /// Examples per scoring prompt (default: 1 with --llm local, as a small model judges one at a time
    /// best; 5 with --llm http).
    #[arg(long)]
    batch: Option<usize>,
    /// Skip the calibration prompts (every detection and fuzzing prompt asked again with the content-free
    /// explanation "N/A", for the calibrated AUROC). They are asked only with --llm local, whose yes
    /// probabilities they need, and cost 60 % more scoring calls.
    #[arg(long)]
    no_calibration: bool,
    /// The scorers to run: detection (with its shuffled-explanation control), fuzzing, simulation (each
    /// token's activation predicted from the explanation, correlated with the true one, and its control).
    #[arg(long, value_delimiter = ',', default_values = ["detection", "fuzzing"])]
    scorers: Vec<Scorer>,
    /// Simulation: activating windows simulated per latent (spread over the quantiles), and as many silent.
    #[arg(long, default_value_t = 5)]
    simulation_windows: usize,
    #[arg(long)]
    quiet: bool,
}

/// Who explains and scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Llm {
    /// A Llama-family chat model run here.
    Local,
    /// An OpenAI-compatible chat-completions server.
    Http,
}

/// The local chat model as `interp` sees it.
struct Local {
    chat: LocalChat,
    identity: String,
    sampling: Sampling,
}

impl ChatModel for Local {
    fn identity(&self) -> String {
        self.identity.clone()
    }
    fn complete(&self, messages: &[ChatMessage], answer: Answer) -> Result<Completion> {
        Ok(match answer {
            Answer::Text { max_tokens } => {
                Completion::text(self.chat.chat(messages, max_tokens, &self.sampling)?)
            }
            Answer::BinaryList { n } => {
                let (text, p) = self.chat.binary_list(messages, n, &self.sampling)?;
                Completion {
                    text,
                    yes_probability: Some(p),
                    ..Default::default()
                }
            }
            Answer::DigitList { n } => {
                let (text, expected) = self.chat.digit_list(messages, n, &self.sampling)?;
                Completion {
                    text,
                    expected_digits: Some(expected),
                    ..Default::default()
                }
            }
        })
    }
}

/// Each held-out shard's rows, encoded in chunks, fed to `rec` as runs of consecutive positions of a sequence.
fn record(
    cache: &Cache,
    held: &[usize],
    coder: &SparseCoder,
    meta: &CoderMeta,
    max_tokens: u64,
    rec: &mut Recorder,
) -> Result<()> {
    let input = meta.sides().0.section();
    let d = coder.cfg.d_in;
    let encoder = coder.encoder();
    let mut left = max_tokens;
    for &i in held {
        let shard = cache.open_shard(i)?;
        let n = (shard.rows().min(left)) as usize;
        left -= n as u64;
        const CHUNK: usize = 2048;
        let encoded: Vec<_> = (0..n)
            .step_by(CHUNK)
            .map(|first| {
                let rows = CHUNK.min(n - first);
                let mut x = vec![0f32; rows * d];
                shard.read_rows_f32(input, first, &mut x);
                encoder.encode(&x, rows)
            })
            .collect();
        // One stride for the shard: k for TopK, the most active latents of any row for JumpReLU.
        let k = encoded.iter().map(|e| e.per_row).max().unwrap_or(1);
        let (mut acts, mut idx) = (Vec::with_capacity(n * k), Vec::with_capacity(n * k));
        for enc in &encoded {
            enc.append_padded(k, &mut acts, &mut idx);
        }
        let (tokens, seqs, positions) = (shard.token_ids(), shard.seq_ids(), shard.positions());
        let mut start = 0;
        for r in 1..=n {
            if r == n || seqs[r] != seqs[r - 1] || positions[r] != positions[r - 1] + 1 {
                rec.add_sequence(
                    seqs[start],
                    positions[start],
                    &tokens[start..r],
                    &acts[start * k..r * k],
                    &idx[start * k..r * k],
                );
                start = r;
            }
        }
        if left == 0 {
            break;
        }
    }
    Ok(())
}

/// The token set's cache: `--cache`, or one extracted from `--text` at the coders' layer.
fn token_cache(cli: &InterpCli, coder_dirs: &[PathBuf]) -> Result<PathBuf> {
    if let Some(cache) = &cli.cache {
        return Ok(cache.clone());
    }
    let text = cli.text.clone().expect("clap requires --cache or --text");
    let (_, meta) = load_coder(&coder_dirs[0])?;
    let args = ExtractArgs {
        model: cli.model.clone(),
        text,
        text_field: "text".into(),
        layers: vec![meta.layer as usize],
        ctx_len: cli.ctx_len,
        max_tokens: Some(cli.tokens.unwrap_or(65536)),
        out: cli.out.join("text-cache"),
        dtype: cache_format::DType::Bf16,
        shard_rows: 16384,
        seed: cli.seed,
        batch_seqs: 8,
        shuffle_buffer: 65536,
        progress: !cli.quiet,
        part: None,
    };
    let s = extract(&args)?;
    eprintln!(
        "token set: {} tokens of --text at layer {}",
        s.rows_total, meta.layer
    );
    Ok(args.out)
}

/// Numeric flags outside what they mean, refused before anything is read or written.
fn check_numbers(cli: &InterpCli) -> Result<()> {
    let at_least_one = [
        ("--latents", cli.latents as u64),
        ("--min-firings", cli.min_firings),
        ("--concurrency", cli.concurrency as u64),
        ("--timeout", cli.timeout),
        ("--explain-per-quantile", cli.explain_per_quantile as u64),
        ("--score-per-quantile", cli.score_per_quantile as u64),
        ("--batch", cli.batch.unwrap_or(1) as u64),
        ("--ctx-len", cli.ctx_len as u64),
        ("--tokens", cli.tokens.unwrap_or(1)),
    ];
    for (flag, v) in at_least_one {
        if v == 0 {
            bail!("{flag} must be at least 1, found 0");
        }
    }
    if cli.concurrency > 1024 {
        bail!(
            "--concurrency must be at most 1024, found {}",
            cli.concurrency
        );
    }
    let t = cli.temperature;
    if !t.is_finite() || t < 0.0 {
        bail!("--temperature must be a finite number ≥ 0, found {t}");
    }
    Ok(())
}

pub fn interp(cli: InterpCli) -> Result<ExitCode> {
    check_numbers(&cli)?;
    let coder_dirs = find_coders(&cli.checkpoints)?;
    let _lock = cache_format::fsutil::lock_dir(&cli.out)?;
    let cache_dir = token_cache(&cli, &coder_dirs)?;
    let cache = Cache::open(&cache_dir)?;
    let spec = cache.manifest().spec.clone();
    let source = ModelSource::open_matching(&cli.model, &spec.model)?;
    let tokenizer = source.tokenizer()?;
    let held: Vec<usize> = if cli.all_shards || cli.text.is_some() {
        (0..cache.num_shards()).collect()
    } else {
        cache.split(cli.holdout_shards)?.1
    };

    let llm = chat_model(&cli)?;
    let chat = CachedChat::new(llm.as_ref(), cli.out.join("llm-cache"));
    let cfg = InterpConfig {
        explain_per_quantile: cli.explain_per_quantile,
        score_per_quantile: cli.score_per_quantile,
        non_activating: cli.non_activating,
        batch: cli
            .batch
            .unwrap_or(if cli.llm == Llm::Local { 1 } else { 5 }),
        seed: cli.seed,
        calibrate: cli.llm == Llm::Local && !cli.no_calibration,
        explainer: cli.explainer,
        scorers: cli.scorers.clone(),
        simulation_windows: cli.simulation_windows,
        ..Default::default()
    };
    let text = |ids: &[u32]| -> Vec<String> {
        ids.iter()
            .map(|&id| tokenizer.inner.decode(&[id], false).unwrap_or_default())
            .collect()
    };
    let quiet = cli.quiet;
    let started = Instant::now();
    let progress = |phase: &str, n: usize, total: usize| {
        if !quiet {
            eprint!(
                "\r  {phase} {n}/{total} ({:.0} s)   ",
                started.elapsed().as_secs_f64()
            );
            if n == total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        }
    };

    let token_set = TokenSet {
        cache: &cache,
        held: &held,
        max_tokens: cli.tokens.unwrap_or(u64::MAX),
    };
    let mut coders = Vec::new();
    for dir in &coder_dirs {
        let loaded = load_for_cache(dir, &spec)?;
        let (records, tokens) = latent_records(&cli, &token_set, &loaded)?;
        let results = interpret(&records, tokens, &text, &chat, &cfg, &progress);
        write_latents(&cli.out.join(&loaded.name), &results)?;
        coders.push((summarize(&loaded.name, &results), results));
    }
    let summaries: Vec<_> = coders.iter().map(|(s, _)| s.clone()).collect();
    write_summary(&cli.out, &summaries)?;
    let title = format!(
        "Latent interpretability: {} layer {}{}",
        spec.model.name,
        spec.layer,
        match cfg.explainer {
            Explainer::Llm => "",
            Explainer::TopTokens => " (explanations: top tokens, no model)",
        }
    );
    write_html(&cli.out, &title, &coders)?;

    print_table(&summaries);
    let (hits, calls) = (
        chat.hits.load(std::sync::atomic::Ordering::Relaxed),
        chat.calls.load(std::sync::atomic::Ordering::Relaxed),
    );
    println!(
        "{calls} model calls, {hits} answers from the cache, {:.0} s; report: {}",
        started.elapsed().as_secs_f64(),
        cli.out.join("index.html").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The `--llm` chat model, opened.
fn chat_model(cli: &InterpCli) -> Result<Box<dyn ChatModel>> {
    Ok(match cli.llm {
        Llm::Local => {
            let path = cli.chat_model.clone().unwrap_or(cli.model.clone());
            let chat_source = ModelSource::open(&path)?;
            let sampling = Sampling {
                temperature: cli.temperature,
                seed: cli.seed,
            };
            let identity = format!(
                "local {} sha256={} temperature={} seed={}",
                chat_source.name(),
                chat_source.sha256()?,
                cli.temperature,
                cli.seed
            );
            Box::new(Local {
                chat: LocalChat::open(&chat_source)?,
                identity,
                sampling,
            })
        }
        Llm::Http => {
            let (Some(base), Some(model)) = (&cli.api_base, &cli.api_model) else {
                bail!(
                    "--llm http needs --api-base (e.g. http://127.0.0.1:8080/v1) and --api-model"
                );
            };
            let mut chat = HttpChat::new(
                base,
                model,
                &cli.api_key_env,
                cli.temperature,
                cli.seed,
                Duration::from_secs(cli.timeout),
                cli.retries,
                cli.concurrency,
            );
            chat.response_format = cli.response_format;
            Box::new(chat)
        }
    })
}

/// The rows latents are recorded on: shards of a cache, read up to `max_tokens`.
struct TokenSet<'a> {
    cache: &'a Cache,
    held: &'a [usize],
    max_tokens: u64,
}

/// The sampled latents' records of one coder, and the token set's size. Pass one counts every latent's
/// firings, pass two records examples of the latents drawn among those firing often enough.
fn latent_records(
    cli: &InterpCli,
    set: &TokenSet,
    c: &LoadedCoder,
) -> Result<(Vec<interp::records::LatentRecord>, u64)> {
    let n = c.coder.cfg.num_latents;
    let mut counts = Recorder::new(n, &[], RecordConfig::default());
    record(
        set.cache,
        set.held,
        &c.coder,
        &c.meta,
        set.max_tokens,
        &mut counts,
    )?;
    let (_, fired, tokens) = counts.finish();
    let chosen = sample_latents(&fired, cli.latents, cli.min_firings, cli.seed);
    if chosen.is_empty() {
        bail!(
            "{}: no latent fired at least {} times (--min-firings) on the token set's {tokens} tokens",
            c.name,
            cli.min_firings
        );
    }
    let rcfg = RecordConfig {
        seed: cli.seed,
        ..Default::default()
    };
    let mut rec = Recorder::new(n, &chosen, rcfg);
    record(
        set.cache,
        set.held,
        &c.coder,
        &c.meta,
        set.max_tokens,
        &mut rec,
    )?;
    let (records, _, tokens) = rec.finish();
    eprintln!(
        "{}: {} latents of {n}, on a token set of {tokens} tokens",
        c.name,
        chosen.len()
    );
    Ok((records, tokens))
}

/// The per-coder score table on standard output: each coder's means, the spread over its latents below them,
/// then the sanity floor (own explanation against a shuffled one, paired by latent).
fn print_table(summaries: &[CoderSummary]) {
    let mut header = format!("{:<24} {:>7} {:>9}", "coder", "latents", "explained");
    for c in &SCORE_COLUMNS {
        header.push_str(&format!(" {:>8}", c.short));
    }
    println!("{header}");
    for s in summaries {
        let mut line = format!("{:<24} {:>7} {:>9}", s.coder, s.latents, s.explained);
        let mut spread = format!("{:<24} {:>7} {:>9}", "  sd over latents", "", "");
        for c in &SCORE_COLUMNS {
            line.push_str(&format!(" {:>8}", num((c.value)(s))));
            spread.push_str(&format!(" {:>8}", num(s.sd_of(c.name))));
        }
        println!("{line}\n{spread}");
    }
    for s in summaries {
        for fl in &s.floor {
            println!("{}", fl.describe(&s.coder));
        }
    }
}
