//! Writes a synthetic cache of random rows: `synthetic_cache DIR ROWS WIDTH SHARD_ROWS [DTYPE]`.
//! For I/O benchmarks and fuzz seeds; real caches come from `sparsecoder extract`.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: synthetic_cache DIR ROWS WIDTH SHARD_ROWS [f32|f16|bf16]");
        std::process::exit(2);
    }
    let num = |i: usize| args[i].parse::<u64>().expect("a number");
    let dtype = cache_format::DType::parse(args.get(5).map_or("bf16", |s| s))
        .expect("dtype f32, f16 or bf16");
    let spec = cache_format::synthetic::spec(num(3) as u32, num(3) as u32, dtype, 256, num(4));
    cache_format::synthetic::write_cache(
        std::path::Path::new(&args[1]),
        spec,
        num(2) as usize,
        4096,
        1,
    )
    .unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
}
