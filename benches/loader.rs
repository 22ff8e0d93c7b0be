//! Read throughput of the shuffled batch stream against a plain sequential read of the same shards.
//!
//! `cargo bench --bench loader -- [DIR] [ROWS] [DTYPE]`: writes a synthetic cache (DTYPE, default bf16; fp8 to
//! set its conversion against bf16's) with SmolLM2's width (576) into DIR (default target/bench-cache, or
//! target/bench-cache-DTYPE for another type) unless one is there, then measures rows/s for
//! - sequential: one thread reads shard after shard, 4096 contiguous rows at a time, converting to f32;
//! - shuffled: the training loader (window of 4 shards, batches of 4096, 1 and 2 conversion threads);
//!
//! - verify: the section checksums that readers compute the first time they open a shard (warm page cache),
//!   so its cost can be set against a training step's (docs/BENCHMARKS.md).
//!
//! Each is measured with the page cache warm, and cold (shards evicted with posix_fadvise(DONTNEED) before the pass).
use cache_format::loader::LoaderConfig;
use cache_format::shard::Section;
use cache_format::{synthetic, Batch, Cache, DType};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Instant;

const BATCH: usize = 4096;

fn evict(cache: &Cache) {
    for i in 0..cache.num_shards() {
        let f = std::fs::File::open(cache.shard_path(i)).unwrap();
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

fn sequential(cache: &Cache) -> u64 {
    let (d_in, d_out) = (cache.d_in(), cache.d_out());
    let mut b = Batch {
        mlp_in: vec![0.0; BATCH * d_in],
        mlp_out: vec![0.0; BATCH * d_out],
        ..Default::default()
    };
    let mut rows = 0;
    for i in 0..cache.num_shards() {
        let shard = cache.open_shard(i).unwrap();
        let n = shard.rows() as usize;
        for first in (0..n).step_by(BATCH) {
            let k = BATCH.min(n - first);
            shard.read_rows_f32(Section::MlpIn, first, &mut b.mlp_in[..k * d_in]);
            shard.read_rows_f32(Section::MlpOut, first, &mut b.mlp_out[..k * d_out]);
            b.token_ids.clear();
            b.token_ids
                .extend_from_slice(&shard.token_ids()[first..first + k]);
            b.seq_ids.clear();
            b.seq_ids
                .extend_from_slice(&shard.seq_ids()[first..first + k]);
            b.positions.clear();
            b.positions
                .extend_from_slice(&shard.positions()[first..first + k]);
            rows += k as u64;
            std::hint::black_box(&b);
        }
    }
    rows
}

fn shuffled(cache: &Cache, threads: usize, epoch: u64) -> u64 {
    let all: Vec<usize> = (0..cache.num_shards()).collect();
    let cfg = LoaderConfig {
        batch_rows: BATCH,
        threads,
        seed: 1,
        ..Default::default()
    };
    let mut stream = cache.batches(&all, epoch, &cfg);
    let mut rows = 0;
    while let Some(b) = stream.next() {
        let b = b.unwrap();
        rows += b.rows as u64;
        stream.recycle(b);
    }
    rows
}

/// Verifies every section checksum of every shard (what `Cache::open_shard` does once per shard).
fn verify(cache: &Cache) -> u64 {
    (0..cache.num_shards())
        .map(|i| {
            let shard = cache.open_shard_unverified(i).unwrap();
            shard.verify_sections().unwrap();
            shard.rows()
        })
        .sum()
}

fn rate(f: impl FnOnce() -> u64) -> f64 {
    let t = Instant::now();
    let rows = f();
    rows as f64 / t.elapsed().as_secs_f64()
}

fn best(n: usize, cold: bool, cache: &Cache, mut f: impl FnMut(usize) -> u64) -> f64 {
    (0..n)
        .map(|i| {
            if cold {
                evict(cache);
            }
            rate(|| f(i))
        })
        .fold(0.0, f64::max)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let dtype = args.get(2).map_or(DType::Bf16, |s| {
        DType::parse(s).unwrap_or_else(|| panic!("DTYPE: f32, f16, bf16 or fp8, found {s:?}"))
    });
    let dir = PathBuf::from(args.first().cloned().unwrap_or_else(|| match dtype {
        DType::Bf16 => "target/bench-cache".into(),
        other => format!("target/bench-cache-{other}"),
    }));
    let rows: usize = args.get(1).map_or(196_608, |s| s.parse().unwrap());
    if !dir.join("manifest.json").exists() {
        eprintln!(
            "writing a synthetic cache of {rows} rows to {}",
            dir.display()
        );
        synthetic::write_cache(
            &dir,
            synthetic::spec(576, 576, dtype, 256, 16384),
            rows,
            4096,
            1,
        )
        .unwrap();
    }
    let cache = Cache::open(&dir).unwrap();
    let dtype = cache.manifest().spec.dtype;
    let row_bytes = dtype.row_bytes(cache.d_in()) + dtype.row_bytes(cache.d_out());
    let mib = |r: f64| r * row_bytes as f64 / (1024.0 * 1024.0);
    sequential(&cache); // warm the page cache
    println!(
        "cache: {} rows of {dtype}, {} shards, d_in {} d_out {}",
        cache.manifest().total_rows,
        cache.num_shards(),
        cache.d_in(),
        cache.d_out()
    );
    let v = best(5, false, &cache, |_| verify(&cache));
    println!(
        "warm: verify sections {v:>10.0} rows/s ({:.0} MiB/s of {dtype})",
        mib(v)
    );
    if std::env::var_os("LOADER_BENCH_VERIFY_ONLY").is_some() {
        return;
    }
    for cold in [false, true] {
        let label = if cold { "cold" } else { "warm" };
        let seq = best(5, cold, &cache, |_| sequential(&cache));
        let sh1 = best(5, cold, &cache, |i| shuffled(&cache, 1, i as u64));
        let sh2 = best(5, cold, &cache, |i| shuffled(&cache, 2, i as u64));
        println!(
            "{label}: sequential {seq:>10.0} rows/s ({:.0} MiB/s of {dtype})",
            mib(seq)
        );
        println!(
            "{label}: shuffled 1 thread  {sh1:>10.0} rows/s  ratio {:.2}",
            sh1 / seq
        );
        println!(
            "{label}: shuffled 2 threads {sh2:>10.0} rows/s  ratio {:.2}",
            sh2 / seq
        );
    }
}
