//! The CPU trainer keeps W_enc's rounded copy (for the screened encoder) in step with W_enc by rounding each
//! panel again in the Adam pass. After several steps it must equal a copy rounded afresh from W_enc, bit for
//! bit, or the encoder would screen with stale weights.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use trainer::backend::{Backend, Device};
use trainer::checkpoint::CoderState;
use trainer::coder::{CoderConfig, Kind, Losses, SparseCoder};
use trainer::step::StepInput;

#[test]
fn the_rounded_encoder_follows_adam() {
    let Some(_) = SparseCoder::new(
        CoderConfig {
            kind: Kind::Transcoder,
            d_in: 8,
            d_out: 8,
            num_latents: 16,
            k: 2,
        },
        0,
    )
    .quantize_encoder() else {
        eprintln!("skipped: this CPU does not run the screened encoder");
        return;
    };
    // 40 latents: two whole panels of 16 and a partial one; an odd d_in.
    for kind in [Kind::Sae, Kind::SkipTranscoder] {
        let (d_in, rows) = (37, 64);
        let cfg = CoderConfig {
            kind,
            d_in,
            d_out: d_in,
            num_latents: 40,
            k: 4,
        };
        let mut state = CoderState::fresh(SparseCoder::new(cfg, 1));
        let mut backend = Backend::new(Device::Cpu, None, &state, rows).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for t in 1..=4 {
            let x: Vec<f32> = (0..rows * d_in)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let y: Vec<f32> = (0..rows * d_in)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let input = StepInput {
                x: &x,
                y: if kind == Kind::Sae { &x } else { &y },
                device: None,
                rows,
                lr: 1e-2,
                t,
                dead_tokens: 1 << 20,
                losses: Losses::default(),
            };
            let before = state.coder.w_enc.clone();
            backend.step(&mut state, None, &input).unwrap();
            // A transcoder's W_dec starts at zero, so its W_enc first moves at step 2.
            assert!(
                t == 1 || before != state.coder.w_enc,
                "{kind:?}: step {t} left W_enc unchanged"
            );
            let fresh = state.coder.quantize_encoder().unwrap();
            assert!(
                backend.quantized_encoder() == Some(&fresh),
                "{kind:?}: after step {t} the rounded copy differs from W_enc rounded afresh"
            );
        }
    }
}
