//! Encoder + TopK at the training benchmark's shapes, the plain route (`gemm`, then `topk_relu`) against the
//! fused one: `cargo run --release -p trainer --example encode_speed [ROWS LATENTS K [CACHE [CODER]]]`.
//! Random inputs and weights by default; with CACHE, real MLP inputs from its first shard, and with CODER, that
//! checkpoint's encoder (else sparsify's initialisation, b_enc = −mean(x)·W_encᵀ).
//! Each time is the best of REPS runs (default 5).
use compute::cpu::linear;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;
use trainer::fused_topk::{available, encode_topk, QuantizedEncoder};
use trainer::topk::topk_relu;

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<usize> = all
        .iter()
        .take(3)
        .map(|a| a.parse().expect("a number"))
        .collect();
    let (rows, n, k) = (
        *args.first().unwrap_or(&4096),
        *args.get(1).unwrap_or(&18432),
        *args.get(2).unwrap_or(&32),
    );
    let d = 576;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut x: Vec<f32> = (0..rows * d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut w: Vec<f32> = (0..n * d).map(|_| rng.random_range(-0.04..0.04)).collect();
    let mut b = vec![0f32; n];
    if let Some(cache) = all.get(3) {
        let shard = cache_format::Cache::open(std::path::Path::new(cache))
            .unwrap()
            .open_shard(0)
            .unwrap();
        shard.read_rows_f32(cache_format::Section::MlpIn, 0, &mut x);
        let coder = match all.get(4) {
            Some(dir) => {
                trainer::checkpoint::load_coder(std::path::Path::new(dir))
                    .unwrap()
                    .0
            }
            None => {
                let cfg = trainer::coder::CoderConfig {
                    kind: trainer::coder::Kind::Transcoder,
                    d_in: d,
                    d_out: d,
                    num_latents: n,
                    k,
                };
                let mut c = trainer::coder::SparseCoder::new(cfg, 0);
                c.init_from_batch(&x, &x, rows);
                c
            }
        };
        assert_eq!(
            (coder.cfg.num_latents, coder.cfg.k),
            (n, k),
            "LATENTS and K must be the coder's"
        );
        if !coder.cfg.kind.transcodes() {
            x.chunks_mut(d)
                .for_each(|r| r.iter_mut().zip(&coder.b_dec).for_each(|(v, b)| *v -= b));
        }
        (w, b) = (coder.w_enc, coder.b_enc);
    }
    let gflop = 2.0 * (rows * d * n) as f64 / 1e9;
    let (mut acts, mut idx) = (vec![0f32; rows * k], vec![0u32; rows * k]);
    // The best of REPS runs (default 5): on a shared host, noise only ever adds time.
    let reps: usize = std::env::var("REPS").map_or(5, |r| r.parse().expect("REPS: a number"));
    let best = |f: &mut dyn FnMut() -> f64| (0..reps).map(|_| f()).fold(f64::INFINITY, f64::min);
    let skip_plain = std::env::var_os("FUSED_ONLY").is_some();
    let t_gemm = if skip_plain {
        f64::NAN
    } else {
        best(&mut || {
            let t = Instant::now();
            std::hint::black_box(linear(&x, rows, d, &w, n));
            t.elapsed().as_secs_f64()
        })
    };
    let t_plain = if skip_plain {
        f64::NAN
    } else {
        best(&mut || {
            let t = Instant::now();
            let pre = linear(&x, rows, d, &w, n);
            topk_relu(&pre, &b, n, k, &mut acts, &mut idx);
            t.elapsed().as_secs_f64()
        })
    };
    println!(
        "plain: {t_plain:.3} s, of which gemm {t_gemm:.3} s ({:.0} GFLOP/s)",
        gflop / t_gemm
    );
    if available() {
        let t_pack = best(&mut || {
            let t = Instant::now();
            std::hint::black_box(QuantizedEncoder::new(&w, n, d));
            t.elapsed().as_secs_f64()
        });
        let packed = QuantizedEncoder::new(&w, n, d);
        let mut stats = Default::default();
        let t_fused = best(&mut || {
            let t = Instant::now();
            stats = encode_topk(&x, rows, &packed, &w, &b, k, &mut acts, &mut idx);
            t.elapsed().as_secs_f64()
        });
        println!("{stats:?}");
        println!(
            "fused: {:.3} s = quantize {t_pack:.3} s + product and selection {t_fused:.3} s ({:.0} GFLOP/s)",
            t_pack + t_fused,
            gflop / t_fused
        );
    }
}
