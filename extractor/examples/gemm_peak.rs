//! GFLOP/s of `ops::linear` at the forward pass's shapes: `cargo run --release -p extractor --example gemm_peak`.
use std::time::Instant;
fn main() {
    rayon::ThreadPoolBuilder::new().build_global().ok();
    for (rows, inp, out) in [
        (2048, 576, 1536),
        (2048, 1536, 576),
        (2048, 576, 576),
        (2048, 576, 192),
    ] {
        let x = vec![0.5f32; rows * inp];
        let w = vec![0.25f32; out * inp];
        let _ = extractor::ops::linear(&x, rows, inp, &w, out);
        let reps = 20;
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(extractor::ops::linear(&x, rows, inp, &w, out));
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "{rows}x{inp} · {inp}x{out}: {:.1} GFLOP/s",
            2.0 * (rows * inp * out) as f64 / s / 1e9
        );
    }
}
