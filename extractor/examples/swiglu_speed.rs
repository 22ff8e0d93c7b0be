//! SwiGLU's elementwise step at the forward pass's shape (2048 rows × 1536): the scalar `silu` through a function
//! pointer, as the Llama MLP chose its activation before `ops::silu_mul`, against `silu_mul`:
//! `cargo run --release -p extractor --example swiglu_speed`.
use extractor::ops::{silu, silu_mul};
use rayon::prelude::*;
use std::time::Instant;

fn main() {
    let n = 2048 * 1536;
    let gate: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 2001) as f32 / 100.0 - 10.0)
        .collect();
    let up: Vec<f32> = (0..n)
        .map(|i| ((i * 104_729) % 997) as f32 / 997.0 - 0.5)
        .collect();
    let best = |f: &dyn Fn(&mut [f32])| {
        let mut g = gate.clone();
        (0..20)
            .map(|_| {
                g.copy_from_slice(&gate);
                let t = Instant::now();
                f(&mut g);
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let act: fn(f32) -> f32 = std::hint::black_box(silu);
    let scalar = best(&|g| {
        g.par_iter_mut()
            .zip(up.par_iter())
            .for_each(|(g, u)| *g = act(*g) * u)
    });
    let vector = best(&|g| silu_mul(g, &up));
    println!(
        "{n} values, best of 20: scalar {:.2} ms, silu_mul {:.2} ms ({:.1}x)",
        scalar * 1e3,
        vector * 1e3,
        scalar / vector
    );
}
