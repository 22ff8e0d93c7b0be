//! `inspect`, `validate`, `compress`, `decompress`, `merge` and `synth-cache`: the cache-format subcommands.

use anyhow::Result;
use cache_format::stats::{shard_stats, NormStats};
use cache_format::validate::validate as validate_cache;
use cache_format::Cache;
use std::path::Path;
use std::process::ExitCode;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn norms(n: &NormStats) -> String {
    format!("{:>9.3} {:>9.3}", n.mean_l2, n.max_l2)
}

pub fn inspect(dir: &Path) -> Result<ExitCode> {
    let cache = Cache::open_any(dir)?;
    let m = cache.manifest();
    let spec = &m.spec;
    let bytes: u64 = m.shards.iter().map(|s| s.bytes).sum();
    let state = if m.complete {
        "complete"
    } else {
        "INCOMPLETE (extraction interrupted or still running)"
    };
    println!("cache        {}", dir.display());
    println!("format       {} v{}, {state}", m.format, m.format_version);
    println!(
        "model        {} ({}; sha256 {})",
        spec.model.name, spec.model.file, spec.model.sha256
    );
    println!("layer        {}", spec.layer);
    println!(
        "hookpoints   mlp_in = {}, mlp_out = {}",
        spec.hookpoints.mlp_in, spec.hookpoints.mlp_out
    );
    println!(
        "widths       d_in {}, d_out {}, stored as {}",
        spec.d_in, spec.d_out, spec.dtype
    );
    println!("context      {} tokens per sequence", spec.ctx_len);
    println!(
        "tokenizer    {} ({} tokens, hash {})",
        spec.tokenizer.source, spec.tokenizer.vocab_size, spec.tokenizer.hash
    );
    println!("corpus       {}", spec.corpus);
    println!("extraction   {}", spec.extraction_args);
    println!(
        "rows         {} in {} shards of up to {} rows, {:.1} MiB",
        m.total_rows,
        m.shards.len(),
        spec.shard_rows,
        mib(bytes)
    );
    println!();
    println!(
        "{:<22} {:>9} {:>10} {:>19} {:>19} {:>10}",
        "shard", "rows", "MiB", "mlp_in L2 mean/max", "mlp_out L2 mean/max", "non-finite"
    );
    for (i, entry) in m.shards.iter().enumerate() {
        let shard = cache.open_shard_unverified(i)?;
        let s = shard_stats(&shard);
        println!(
            "{:<22} {:>9} {:>10.2} {:>19} {:>19} {:>10}",
            entry.file,
            entry.rows,
            mib(entry.bytes),
            norms(&s.mlp_in),
            norms(&s.mlp_out),
            s.mlp_in.non_finite + s.mlp_out.non_finite
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn validate(dir: &Path) -> Result<ExitCode> {
    let report = validate_cache(dir)?;
    for shard in &report.shards {
        if shard.problems.is_empty() {
            println!(
                "ok     {} ({} rows)",
                shard.file,
                shard.stats.map_or(0, |s| s.rows)
            );
        }
        for p in &shard.problems {
            println!("error  {p}");
        }
    }
    let m = report.cache.manifest();
    let problems = report.problems().count();
    if problems == 0 {
        let state = if m.complete {
            ""
        } else {
            " (incomplete: extraction has not finished)"
        };
        println!(
            "valid: {} shards, {} rows{state}",
            m.shards.len(),
            m.total_rows
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {} has {problems} problem(s) in {} shard(s)",
            dir.display(),
            report
                .shards
                .iter()
                .filter(|s| !s.problems.is_empty())
                .count()
        );
        Ok(ExitCode::FAILURE)
    }
}

pub fn archive(dir: &Path, compress: bool, level: i32) -> Result<ExitCode> {
    let s = cache_format::archive::convert(dir, compress, level)?;
    if s.shards_changed == 0 {
        println!(
            "nothing to do: every shard is already {}",
            if compress { "compressed" } else { "plain" }
        );
    } else {
        println!(
            "{} {} shards: {:.1} MiB -> {:.1} MiB (ratio {:.3})",
            if compress {
                "compressed"
            } else {
                "decompressed"
            },
            s.shards_changed,
            mib(s.bytes_before),
            mib(s.bytes_after),
            s.bytes_after as f64 / s.bytes_before as f64
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn merge(dir: &Path) -> Result<ExitCode> {
    for (layer_dir, m) in cache_format::parts::merge_extraction(dir)? {
        println!(
            "{}: one cache of {} rows in {} shards from {} parts (layer {}); nothing copied",
            layer_dir.display(),
            m.total_rows,
            m.shards.len(),
            m.parts.unwrap_or(1),
            m.spec.layer
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn synth_cache(
    dir: &Path,
    d_in: u32,
    d_out: u32,
    rows: usize,
    shard_rows: u64,
) -> Result<ExitCode> {
    for (flag, v) in [
        ("--d-in", d_in as u64),
        ("--d-out", d_out as u64),
        ("--rows", rows as u64),
        ("--shard-rows", shard_rows),
    ] {
        if v == 0 {
            anyhow::bail!("{flag} must be at least 1, found 0");
        }
    }
    let spec =
        cache_format::synthetic::spec(d_in, d_out, cache_format::DType::Bf16, 256, shard_rows);
    let (_, m) = cache_format::synthetic::write_cache(dir, spec, rows, 1 << 14, 0)?;
    println!(
        "{}: {} random rows, widths {d_in} → {d_out}, {} shards",
        dir.display(),
        m.total_rows,
        m.shards.len()
    );
    Ok(ExitCode::SUCCESS)
}
