//! Encoder + TopK at the training benchmark's shapes, the plain route (`gemm`, then `topk_relu`) against the
//! fused one: `cargo run --release -p trainer --example encode_speed [ROWS LATENTS K]`.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;
use trainer::fused_topk::{available, encode_topk, PackedEncoder};
use trainer::linalg::linear;
use trainer::topk::topk_relu;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let (rows, n, k) = (*args.first().unwrap_or(&4096), *args.get(1).unwrap_or(&18432), *args.get(2).unwrap_or(&32));
    let d = 576;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x: Vec<f32> = (0..rows * d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let w: Vec<f32> = (0..n * d).map(|_| rng.random_range(-0.04..0.04)).collect();
    let b = vec![0f32; n];
    let gflop = 2.0 * (rows * d * n) as f64 / 1e9;
    let (mut acts, mut idx) = (vec![0f32; rows * k], vec![0u32; rows * k]);
    let best = |f: &mut dyn FnMut() -> f64| (0..5).map(|_| f()).fold(f64::INFINITY, f64::min);
    let t_gemm = best(&mut || {
        let t = Instant::now();
        std::hint::black_box(linear(&x, rows, d, &w, n));
        t.elapsed().as_secs_f64()
    });
    let t_plain = best(&mut || {
        let t = Instant::now();
        let pre = linear(&x, rows, d, &w, n);
        topk_relu(&pre, &b, n, k, &mut acts, &mut idx);
        t.elapsed().as_secs_f64()
    });
    println!("plain: {t_plain:.3} s, of which gemm {t_gemm:.3} s ({:.0} GFLOP/s)", gflop / t_gemm);
    if available() {
        let t_pack = best(&mut || {
            let t = Instant::now();
            std::hint::black_box(PackedEncoder::new(&w, n, d));
            t.elapsed().as_secs_f64()
        });
        let packed = PackedEncoder::new(&w, n, d);
        let t_fused = best(&mut || {
            let t = Instant::now();
            encode_topk(&x, rows, &packed, &b, k, &mut acts, &mut idx);
            t.elapsed().as_secs_f64()
        });
        println!(
            "fused: {:.3} s = pack {t_pack:.3} s + product and selection {t_fused:.3} s ({:.0} GFLOP/s)",
            t_pack + t_fused,
            gflop / t_fused
        );
    }
}
