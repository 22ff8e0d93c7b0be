//! Property tests: whatever is written comes back, in every dtype, width and row count.
mod common;

use cache_format::shard::{Section, ShardHeader, HEADER_LEN};
use cache_format::{synthetic, Cache, DType};
use proptest::prelude::*;

fn check_roundtrip(
    d_in: u32,
    d_out: u32,
    rows: usize,
    shard_rows: u64,
    chunk: usize,
    dtype: DType,
    seed: u64,
) {
    let dir = tempfile::tempdir().unwrap();
    let spec = synthetic::spec(d_in, d_out, dtype, 17, shard_rows);
    let (data, manifest) = synthetic::write_cache(dir.path(), spec, rows, chunk, seed).unwrap();
    assert_eq!(manifest.total_rows, rows as u64);
    assert_eq!(manifest.shards.len(), rows.div_ceil(shard_rows as usize));
    let cache = Cache::open(dir.path()).unwrap();
    let mut global = 0usize;
    for i in 0..cache.num_shards() {
        let shard = cache.open_shard(i).unwrap();
        shard.verify_sections().unwrap();
        let n = shard.rows() as usize;
        for (s, width, source) in [
            (Section::MlpIn, d_in as usize, &data.mlp_in),
            (Section::MlpOut, d_out as usize, &data.mlp_out),
        ] {
            let mut got = vec![0f32; n * width];
            shard.read_rows_f32(s, 0, &mut got);
            let source = &source[global * width..(global + n) * width];
            let want = dtype.round_trip(source, width);
            for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "{s:?} shard {i} element {j}");
                // Storage error is bounded by the type's precision (fp8: relative to its row's scale too).
                let v = source[j];
                let row = &source[j / width * width..][..width];
                let bound = match dtype {
                    DType::F32 => 0.0,
                    DType::F16 => 1e-3 * v.abs().max(1e-2),
                    DType::Bf16 => 8e-3 * v.abs().max(1e-2),
                    DType::Fp8 => {
                        (v.abs() / 16.0).max(cache_format::fp8::row_scale(row) / 1024.0) * 1.0001
                    }
                };
                assert!((g - v).abs() <= bound, "{g} vs {v}");
            }
        }
        assert_eq!(shard.token_ids(), &data.token_ids[global..global + n]);
        assert_eq!(shard.seq_ids(), &data.seq_ids[global..global + n]);
        assert_eq!(shard.positions(), &data.positions[global..global + n]);
        global += n;
    }
    assert_eq!(global, rows);
    let report = cache_format::validate::validate(dir.path()).unwrap();
    assert!(
        report.is_ok(),
        "{:?}",
        report.problems().map(|p| p.to_string()).collect::<Vec<_>>()
    );
}

fn dtype_strategy() -> impl Strategy<Value = DType> {
    prop_oneof![
        Just(DType::F32),
        Just(DType::F16),
        Just(DType::Bf16),
        Just(DType::Fp8)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn rows_roundtrip(d_in in 1u32..70, d_out in 1u32..70, rows in 1usize..700, shard_rows in 1u64..250,
                      chunk in 1usize..300, dtype in dtype_strategy(), seed in any::<u64>()) {
        check_roundtrip(d_in, d_out, rows, shard_rows, chunk, dtype, seed);
    }

    #[test]
    fn header_roundtrip(rows in 0u64..1_000_000, d_in in 1u32..100_000, d_out in 1u32..100_000, dtype in dtype_strategy(),
                        sums in proptest::array::uniform5(any::<u64>())) {
        let mut h = ShardHeader::layout(rows, d_in, d_out, dtype);
        for (e, s) in h.sections.iter_mut().zip(sums) { e.checksum = s; }
        let bytes = h.encode();
        assert_eq!(bytes.len(), HEADER_LEN);
        let parsed = ShardHeader::parse(&bytes, h.file_len(), std::path::Path::new("x")).unwrap();
        prop_assert_eq!(parsed, h);
    }
}

#[test]
fn realistic_shape_roundtrip() {
    // SmolLM2's width and several full shards.
    check_roundtrip(576, 576, 3000, 1024, 256, DType::Bf16, 7);
}

#[test]
fn zstd_archive_roundtrip_is_lossless() {
    let dir = tempfile::tempdir().unwrap();
    let spec = synthetic::spec(64, 48, DType::Bf16, 32, 100);
    synthetic::write_cache(dir.path(), spec, 350, 64, 3).unwrap();
    let before = common::snapshot(dir.path());
    let s = cache_format::archive::convert(dir.path(), true, 3).unwrap();
    assert_eq!(s.shards_changed, 4);
    let cache = Cache::open(dir.path()).unwrap();
    assert!(cache
        .manifest()
        .shards
        .iter()
        .all(|e| e.file.ends_with(".bin.zst")));
    assert!(cache_format::validate::validate(dir.path())
        .unwrap()
        .is_ok());
    // Reading the archived form gives the same rows as the plain form did.
    let plain_rows: Vec<u32> = before
        .iter()
        .filter(|(n, _)| n.ends_with(".bin"))
        .flat_map(|(n, b)| {
            let h = ShardHeader::parse(b, b.len() as u64, std::path::Path::new(n)).unwrap();
            let e = h.section(Section::TokenIds);
            bytemuck::cast_slice::<u8, u32>(&b[e.offset as usize..(e.offset + e.len) as usize])
                .to_vec()
        })
        .collect();
    let zst_rows: Vec<u32> = (0..cache.num_shards())
        .flat_map(|i| cache.open_shard(i).unwrap().token_ids().to_vec())
        .collect();
    assert_eq!(plain_rows, zst_rows);
    cache_format::archive::convert(dir.path(), false, 0).unwrap();
    let after = common::snapshot(dir.path());
    let shards = |v: &Vec<(String, Vec<u8>)>| {
        v.iter()
            .filter(|(n, _)| n.starts_with("shard-"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        shards(&before),
        shards(&after),
        "decompressed shards are byte-identical to the originals"
    );
}
