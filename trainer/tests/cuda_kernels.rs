//! Every CUDA kernel against its CPU twin, on fresh random inputs each run, with outputs poisoned (NaN) before
//! the kernel writes them and sizes that are not multiples of any block size; then whole training steps of
//! the GPU engine against the same steps on the twins. Runs wherever a GPU is usable; elsewhere each test
//! says "skipped: no GPU" (never a silent pass). The kernels' compilation is checked without a GPU.

use compute::gpu::nvrtc::compile;
use compute::gpu::{nvrtc_present, probe, Probe};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use trainer::checkpoint::CoderState;
use trainer::coder::{CoderConfig, Kind, SparseCoder};
use trainer::cuda::engine::Engine;
use trainer::cuda::gpu_ops::{GemmPrecision, GpuOps};
use trainer::cuda::ops::{CpuTwins, Ops};
use trainer::cuda::KERNEL_SOURCES;

/// The GPU, or None after printing why the test is skipped.
fn gpu(test: &str, precision: GemmPrecision) -> Option<GpuOps> {
    match probe() {
        Probe::Ready { .. } => Some(GpuOps::new(0, precision).expect("a usable GPU must open")),
        Probe::Unavailable(why) => {
            eprintln!("{test}: skipped: no GPU ({why})");
            None
        }
    }
}

/// A fresh seed per run (printed, so a failure can be replayed with SPARSECODER_TEST_SEED).
fn rng(test: &str) -> ChaCha8Rng {
    let seed = std::env::var("SPARSECODER_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("{test}: seed {seed}");
    ChaCha8Rng::seed_from_u64(seed)
}

fn randn(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// ‖a − b‖ / ‖b‖ (‖a − b‖ when b is zero); a NaN or infinity anywhere gives infinity.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    if a.iter().chain(b).any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let diff: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    if norm == 0.0 {
        diff.sqrt()
    } else {
        (diff / norm).sqrt()
    }
}

fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], bound: f64) {
    let e = rel_err(gpu, cpu);
    assert!(e < bound, "{what}: relative error {e:.3e} ≥ {bound:.0e}");
    eprintln!("  {what}: relative error {e:.2e}");
}

/// A device buffer of `n` NaNs: whatever the kernel does not write stays NaN and fails the comparison.
fn poisoned(g: &GpuOps, n: usize) -> cudarc::driver::CudaSlice<f32> {
    g.uploaded_f32(&vec![f32::NAN; n]).unwrap()
}

const F32_BOUND: f64 = 1e-5;

/// Every kernel compiles with NVRTC (the run-time path) to PTX for sm_80 and sm_90 with an entry per kernel;
/// with `SPARSECODER_PTXAS` naming a ptxas binary, the PTX is also assembled to machine code for both, with no
/// register spills. `SPARSECODER_REQUIRE_NVRTC` (set by CI) turns a missing NVRTC into a failure.
#[test]
fn kernels_compile_for_sm80_and_sm90() {
    if !nvrtc_present() {
        let required = std::env::var_os("SPARSECODER_REQUIRE_NVRTC").is_some();
        assert!(
            !required,
            "SPARSECODER_REQUIRE_NVRTC is set but libnvrtc.so does not load (LD_LIBRARY_PATH?)"
        );
        eprintln!("kernels_compile: skipped: no NVRTC (pip install nvidia-cuda-nvrtc-cu12; its lib/ on LD_LIBRARY_PATH)");
        return;
    }
    let ptxas = std::env::var_os("SPARSECODER_PTXAS");
    let tmp = tempfile::tempdir().unwrap();
    for arch in ["compute_80", "compute_90"] {
        for &compute::gpu::KernelSource { file, source } in KERNEL_SOURCES {
            let ptx = compile(file, source, arch).unwrap_or_else(|e| panic!("{e}"));
            let text = ptx.to_src();
            for name in source.split("extern \"C\" __global__ void ").skip(1) {
                let name = name.split('(').next().unwrap().trim();
                assert!(
                    text.contains(&format!(".entry {name}(")),
                    "{file} ({arch}): no entry for kernel {name}"
                );
            }
            eprintln!("{file}: {arch} PTX, {} bytes", text.len());
            let Some(ptxas) = &ptxas else { continue };
            let sm = arch.replace("compute_", "sm_");
            let ptx_path = tmp.path().join(format!("{file}.{arch}.ptx"));
            std::fs::write(&ptx_path, &text).unwrap();
            let o = std::process::Command::new(ptxas)
                .args([
                    &format!("-arch={sm}"),
                    "-v",
                    ptx_path.to_str().unwrap(),
                    "-o",
                ])
                .arg(tmp.path().join("out.cubin"))
                .output()
                .expect("SPARSECODER_PTXAS does not run");
            let log = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success(), "{file}: ptxas {sm} failed:\n{log}");
            let spills = log.lines().filter(|l| {
                l.contains("bytes spill stores") && !l.contains(" 0 bytes spill stores")
            });
            assert_eq!(spills.count(), 0, "{file} ({sm}) spills registers:\n{log}");
            eprintln!("{file}: {sm} machine code, no spills");
        }
    }
    if ptxas.is_none() {
        eprintln!("kernels_compile: PTX only (set SPARSECODER_PTXAS to a ptxas binary to assemble it too)");
    }
}

#[test]
fn dense_kernels_match_their_twins() {
    let Some(g) = gpu("dense_kernels_match_their_twins", GemmPrecision::F32) else {
        return;
    };
    let mut rng = rng("dense_kernels_match_their_twins");
    let c = CpuTwins;
    let (rows, inp, out) = (257, 77, 131);
    let x = randn(&mut rng, rows * inp);
    let w = randn(&mut rng, out * inp);
    let y0 = randn(&mut rng, rows * out);
    let (xd, wd) = (g.uploaded_f32(&x).unwrap(), g.uploaded_f32(&w).unwrap());

    for accumulate in [false, true] {
        let mut yc = y0.clone();
        c.linear(&x, rows, inp, &w, out, &mut yc, accumulate)
            .unwrap();
        let mut yg = if accumulate {
            g.uploaded_f32(&y0).unwrap()
        } else {
            poisoned(&g, rows * out)
        };
        g.linear(&xd, rows, inp, &wd, out, &mut yg, accumulate)
            .unwrap();
        assert_close(
            &format!("linear (accumulate {accumulate})"),
            &g.download_f32(&yg).unwrap(),
            &yc,
            F32_BOUND,
        );
    }

    let dy = randn(&mut rng, rows * out);
    let mut gc = vec![0.0; out * inp];
    c.outer_grad(&dy, &x, rows, out, inp, &mut gc).unwrap();
    let mut gg = poisoned(&g, out * inp);
    g.outer_grad(&g.uploaded_f32(&dy).unwrap(), &xd, rows, out, inp, &mut gg)
        .unwrap();
    assert_close("outer_grad", &g.download_f32(&gg).unwrap(), &gc, F32_BOUND);

    let mut mc = vec![0.0; inp];
    c.column_sums(&x, rows, inp, rows as f32, &mut mc).unwrap();
    let mut mg = poisoned(&g, inp);
    g.column_sums(&xd, rows, inp, rows as f32, &mut mg).unwrap();
    assert_close("column_sums", &g.download_f32(&mg).unwrap(), &mc, F32_BOUND);

    // FVU sums and gradient.
    let (yd, yhd) = (g.uploaded_f32(&y0).unwrap(), g.uploaded_f32(&dy).unwrap());
    let mean_h = randn(&mut rng, out);
    let mean = g.uploaded_f32(&mean_h).unwrap();
    let (mut diff_c, mut sums_c) = (vec![0.0; rows * out], vec![0.0; 2]);
    c.fvu_sums(&y0, &mean_h, &dy, rows, out, &mut diff_c, &mut sums_c)
        .unwrap();
    c.fvu_grad(&mut diff_c, &sums_c).unwrap();
    let (mut diff_g, mut sums_g) = (poisoned(&g, rows * out), g.zeros_f64(2).unwrap());
    g.fvu_sums(&yd, &mean, &yhd, rows, out, &mut diff_g, &mut sums_g)
        .unwrap();
    g.fvu_grad(&mut diff_g, &sums_g).unwrap();
    let sums = g.download_f64(&sums_g).unwrap();
    for i in 0..2 {
        let e = (sums[i] - sums_c[i]).abs() / sums_c[i];
        assert!(e < 1e-9, "fvu_sums[{i}]: {} vs {}", sums[i], sums_c[i]);
    }
    assert_close(
        "fvu_grad",
        &g.download_f32(&diff_g).unwrap(),
        &diff_c,
        F32_BOUND,
    );

    // Element-wise helpers.
    let b = randn(&mut rng, inp);
    let mut oc = vec![0.0; rows * inp];
    c.sub_row_vector(&x, &b, rows, inp, &mut oc).unwrap();
    let mut og = poisoned(&g, rows * inp);
    g.sub_row_vector(&xd, &g.uploaded_f32(&b).unwrap(), rows, inp, &mut og)
        .unwrap();
    assert_close(
        "sub_row_vector",
        &g.download_f32(&og).unwrap(),
        &oc,
        F32_BOUND,
    );
    let mut ac = x.clone();
    c.sub_assign(&mut ac, &oc).unwrap();
    let mut ag = g.uploaded_f32(&x).unwrap();
    g.sub_assign(&mut ag, &g.uploaded_f32(&oc).unwrap())
        .unwrap();
    assert_close("sub_assign", &g.download_f32(&ag).unwrap(), &ac, F32_BOUND);

    // Adam, several steps so the moments matter.
    let n = 100_003;
    let (mut pc, mut m_c, mut v_c) = (randn(&mut rng, n), vec![0.0; n], vec![0.0; n]);
    let (mut pg, mut m_g, mut v_g) = (
        g.uploaded_f32(&pc).unwrap(),
        g.zeros_f32(n).unwrap(),
        g.zeros_f32(n).unwrap(),
    );
    for t in 1..=3 {
        let grad = randn(&mut rng, n);
        let (s, b2) = (
            1e-3 / (1.0 - 0.9f32.powi(t)),
            (1.0 - 0.999f32.powi(t)).sqrt(),
        );
        c.adam(&mut pc, &grad, &mut m_c, &mut v_c, s, b2).unwrap();
        g.adam(
            &mut pg,
            &g.uploaded_f32(&grad).unwrap(),
            &mut m_g,
            &mut v_g,
            s,
            b2,
        )
        .unwrap();
    }
    assert_close(
        "adam: parameters",
        &g.download_f32(&pg).unwrap(),
        &pc,
        F32_BOUND,
    );
    assert_close(
        "adam: first moments",
        &g.download_f32(&m_g).unwrap(),
        &m_c,
        F32_BOUND,
    );
    assert_close(
        "adam: second moments",
        &g.download_f32(&v_g).unwrap(),
        &v_c,
        F32_BOUND,
    );

    // The SAE decoder constraint.
    let (latents, d) = (1031, 77);
    let wdec = randn(&mut rng, latents * d);
    let mut nc = wdec.clone();
    c.normalize_rows(&mut nc, latents, d).unwrap();
    let mut ng = g.uploaded_f32(&wdec).unwrap();
    g.normalize_rows(&mut ng, latents, d).unwrap();
    assert_close(
        "normalize_rows",
        &g.download_f32(&ng).unwrap(),
        &nc,
        F32_BOUND,
    );
    let grad = randn(&mut rng, latents * d);
    let mut pc = grad.clone();
    c.project_decoder_grad(&nc, &mut pc, latents, d).unwrap();
    let mut pg = g.uploaded_f32(&grad).unwrap();
    g.project_decoder_grad(&g.uploaded_f32(&nc).unwrap(), &mut pg, latents, d)
        .unwrap();
    assert_close(
        "project_decoder_grad",
        &g.download_f32(&pg).unwrap(),
        &pc,
        F32_BOUND,
    );
}

#[test]
fn sparse_kernels_match_their_twins() {
    let Some(g) = gpu("sparse_kernels_match_their_twins", GemmPrecision::F32) else {
        return;
    };
    let mut rng = rng("sparse_kernels_match_their_twins");
    let c = CpuTwins;
    for &(rows, width, k, d) in &[(301, 4099, 32, 577), (67, 1000, 128, 129), (5, 40, 1, 3)] {
        eprintln!("rows {rows}, latents {width}, k {k}, width {d}");
        // Random pre-activations (half clipped by ReLU); then with a zero bias, exact ties: a first row all
        // equal, a second all negative (all zero after ReLU), the rest on a coarse grid.
        let pre = randn(&mut rng, rows * width);
        let bias: Vec<f32> = randn(&mut rng, width).iter().map(|b| b * 0.1).collect();
        let mut pre_ties: Vec<f32> = (0..rows * width)
            .map(|_| rng.random_range(-4i32..4) as f32 * 0.25)
            .collect();
        pre_ties[..width].fill(0.5);
        if rows > 1 {
            pre_ties[width..2 * width].fill(-1.0);
        }
        let zero_bias = vec![0.0; width];
        for (label, pre, bias) in [("random", &pre, &bias), ("ties", &pre_ties, &zero_bias)] {
            let (mut ac, mut ic) = (vec![0.0; rows * k], vec![0u32; rows * k]);
            c.topk_relu(pre, bias, rows, width, k, &mut ac, &mut ic)
                .unwrap();
            let (mut ag, mut ig) = (
                poisoned(&g, rows * k),
                g.uploaded_u32(&vec![u32::MAX; rows * k]).unwrap(),
            );
            let (pd, bd) = (g.uploaded_f32(pre).unwrap(), g.uploaded_f32(bias).unwrap());
            g.topk_relu(&pd, &bd, rows, width, k, &mut ag, &mut ig)
                .unwrap();
            assert_eq!(
                g.download_u32(&ig).unwrap(),
                ic,
                "topk_relu ({label}): indices differ"
            );
            assert_eq!(
                g.download_f32(&ag).unwrap(),
                ac,
                "topk_relu ({label}): values differ"
            );
        }

        let (mut acts, mut idx) = (vec![0.0; rows * k], vec![0u32; rows * k]);
        c.topk_relu(&pre, &bias, rows, width, k, &mut acts, &mut idx)
            .unwrap();
        let (ad, id) = (
            g.uploaded_f32(&acts).unwrap(),
            g.uploaded_u32(&idx).unwrap(),
        );
        let w = randn(&mut rng, width * d);
        let wd = g.uploaded_f32(&w).unwrap();
        let b = randn(&mut rng, d);
        let base = randn(&mut rng, rows * d);
        for (accumulate, with_bias) in [(false, true), (true, true), (false, false)] {
            let mut oc = base.clone();
            c.sparse_decode(
                &acts,
                &idx,
                &w,
                with_bias.then_some(&b),
                rows,
                k,
                d,
                accumulate,
                &mut oc,
            )
            .unwrap();
            let mut og = if accumulate {
                g.uploaded_f32(&base).unwrap()
            } else {
                poisoned(&g, rows * d)
            };
            let bd = g.uploaded_f32(&b).unwrap();
            g.sparse_decode(
                &ad,
                &id,
                &wd,
                with_bias.then_some(&bd),
                rows,
                k,
                d,
                accumulate,
                &mut og,
            )
            .unwrap();
            assert_close(
                &format!("sparse_decode (accumulate {accumulate}, bias {with_bias})"),
                &g.download_f32(&og).unwrap(),
                &oc,
                F32_BOUND,
            );
        }

        let dy = randn(&mut rng, rows * d);
        let dyd = g.uploaded_f32(&dy).unwrap();
        let mut gc = vec![0.0; rows * k];
        c.latent_grads(&dy, &acts, &idx, &w, rows, k, d, &mut gc)
            .unwrap();
        let mut gg = poisoned(&g, rows * k);
        g.latent_grads(&dyd, &ad, &id, &wd, rows, k, d, &mut gg)
            .unwrap();
        assert_close(
            "latent_grads",
            &g.download_f32(&gg).unwrap(),
            &gc,
            F32_BOUND,
        );

        let start = randn(&mut rng, width * d);
        let bias_start = randn(&mut rng, width);
        for with_bias in [false, true] {
            let (mut wc, mut bc) = (start.clone(), bias_start.clone());
            c.scatter_rows(
                &gc,
                &idx,
                &dy,
                rows,
                k,
                d,
                &mut wc,
                with_bias.then_some(&mut bc),
            )
            .unwrap();
            let (mut wg, mut bg) = (
                g.uploaded_f32(&start).unwrap(),
                g.uploaded_f32(&bias_start).unwrap(),
            );
            let gcd = g.uploaded_f32(&gc).unwrap();
            g.scatter_rows(
                &gcd,
                &id,
                &dyd,
                rows,
                k,
                d,
                &mut wg,
                if with_bias { Some(&mut bg) } else { None },
            )
            .unwrap();
            assert_close(
                &format!("scatter_rows (bias {with_bias})"),
                &g.download_f32(&wg).unwrap(),
                &wc,
                F32_BOUND,
            );
            assert_close(
                "scatter_rows: bias",
                &g.download_f32(&bg).unwrap(),
                &bc,
                F32_BOUND,
            );
        }

        let fired: Vec<u64> = (0..width).map(|_| rng.random_range(0..3000u64)).collect();
        let (mut fc, mut cc) = (fired.clone(), vec![0u64; 2]);
        c.track_fired(&acts, &idx, rows, k, &mut fc, width, 2000, &mut cc)
            .unwrap();
        let (mut fg, mut cg) = (g.uploaded_u64(&fired).unwrap(), g.zeros_u64(2).unwrap());
        g.track_fired(&ad, &id, rows, k, &mut fg, width, 2000, &mut cg)
            .unwrap();
        assert_eq!(
            g.download_u64(&fg).unwrap(),
            fc,
            "track_fired: counters differ"
        );
        assert_eq!(
            g.download_u64(&cg).unwrap(),
            cc,
            "track_fired: counts differ"
        );
    }
}

/// Whole steps: the GPU engine against the same engine on the twins, for every kind.
#[test]
fn gpu_engine_steps_match_the_twins() {
    let Some(g) = gpu("gpu_engine_steps_match_the_twins", GemmPrecision::F32) else {
        return;
    };
    let mut rng = rng("gpu_engine_steps_match_the_twins");
    let (rows, d, latents, k) = (509, 96, 1531, 16);
    for kind in [Kind::Sae, Kind::Transcoder, Kind::SkipTranscoder] {
        let cfg = CoderConfig {
            kind,
            d_in: d,
            d_out: d,
            num_latents: latents,
            k,
        };
        let batches: Vec<(Vec<f32>, Vec<f32>)> = (0..4)
            .map(|_| (randn(&mut rng, rows * d), randn(&mut rng, rows * d)))
            .collect();
        let mut coder = SparseCoder::new(cfg.clone(), 7);
        let (x0, y0) = &batches[0];
        let y0 = if kind == Kind::Sae { x0 } else { y0 };
        coder.init_from_batch(x0, y0, rows);
        let state = CoderState::fresh(coder);
        let mut twin = Engine::new(&CpuTwins, &state, rows).unwrap();
        let mut on_gpu = Engine::new(&g, &state, rows).unwrap();
        for (t, (x, y)) in batches.iter().enumerate() {
            let y = if kind == Kind::Sae { x } else { y };
            twin.step(&CpuTwins, x, y, rows, 1e-3, t as u64 + 1, 1000)
                .unwrap();
            let (xd, yd) = (g.uploaded_f32(x).unwrap(), g.uploaded_f32(y).unwrap());
            on_gpu
                .step(&g, &xd, &yd, rows, 1e-3, t as u64 + 1, 1000)
                .unwrap();
            let (sc, sg) = (twin.stats(&CpuTwins).unwrap(), on_gpu.stats(&g).unwrap());
            assert!(
                (sc.fvu - sg.fvu).abs() < 1e-5 * sc.fvu,
                "{kind:?} step {t}: FVU {} vs {}",
                sg.fvu,
                sc.fvu
            );
            assert_eq!(sc.l0, sg.l0, "{kind:?} step {t}: L0");
        }
        let (mut a, mut b) = (state.clone(), state.clone());
        twin.download_into(&CpuTwins, &mut a).unwrap();
        on_gpu.download_into(&g, &mut b).unwrap();
        eprintln!("{kind:?}:");
        assert_close("W_enc", &b.coder.w_enc, &a.coder.w_enc, F32_BOUND);
        assert_close("b_enc", &b.coder.b_enc, &a.coder.b_enc, F32_BOUND);
        assert_close("W_dec", &b.coder.w_dec, &a.coder.w_dec, F32_BOUND);
        assert_close("b_dec", &b.coder.b_dec, &a.coder.b_dec, F32_BOUND);
        if let (Some(x), Some(y)) = (&b.coder.w_skip, &a.coder.w_skip) {
            assert_close("W_skip", x, y, F32_BOUND);
        }
        assert_eq!(
            a.tokens_since_fired, b.tokens_since_fired,
            "{kind:?}: dead-latent counters"
        );
    }
}

/// TF32 tensor-core GEMMs (the GPU default) stay within the bf16 bound of full f32.
#[test]
fn tf32_linear_is_within_the_bf16_bound() {
    let Some(g) = gpu("tf32_linear_is_within_the_bf16_bound", GemmPrecision::Tf32) else {
        return;
    };
    let mut rng = rng("tf32_linear_is_within_the_bf16_bound");
    let (rows, inp, out) = (1023, 576, 2049);
    let (x, w) = (randn(&mut rng, rows * inp), randn(&mut rng, out * inp));
    let mut yc = vec![0.0; rows * out];
    CpuTwins
        .linear(&x, rows, inp, &w, out, &mut yc, false)
        .unwrap();
    let mut yg = poisoned(&g, rows * out);
    g.linear(
        &g.uploaded_f32(&x).unwrap(),
        rows,
        inp,
        &g.uploaded_f32(&w).unwrap(),
        out,
        &mut yg,
        false,
    )
    .unwrap();
    assert_close("linear (tf32)", &g.download_f32(&yg).unwrap(), &yc, 1e-2);
}
