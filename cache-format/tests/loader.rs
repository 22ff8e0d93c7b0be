//! The shuffled loader: exact coverage, determinism, resumption, held-out split.
use cache_format::{synthetic, Batch, Cache, DType, LoaderConfig};
use std::collections::HashMap;

fn make(rows: usize, shard_rows: u64) -> (tempfile::TempDir, synthetic::SyntheticRows) {
    let dir = tempfile::tempdir().unwrap();
    let spec = synthetic::spec(24, 20, DType::Bf16, 50, shard_rows);
    let (data, _) = synthetic::write_cache(dir.path(), spec, rows, 97, 11).unwrap();
    (dir, data)
}

fn collect(cache: &Cache, shards: &[usize], epoch: u64, cfg: &LoaderConfig) -> Vec<Batch> {
    cache
        .batches(shards, epoch, cfg)
        .map(|b| b.unwrap())
        .collect()
}

fn ids(batches: &[Batch]) -> Vec<(u64, u32)> {
    batches
        .iter()
        .flat_map(|b| b.seq_ids.iter().copied().zip(b.positions.iter().copied()))
        .collect()
}

#[test]
fn every_row_exactly_once_per_epoch_with_its_own_content() {
    let (dir, data) = make(1234, 100); // 13 shards, the last one short
    let cache = Cache::open(dir.path()).unwrap();
    let all: Vec<usize> = (0..cache.num_shards()).collect();
    for (batch_rows, window, threads) in [
        (1, 1, 1),
        (7, 3, 2),
        (64, 4, 3),
        (1000, 2, 2),
        (5000, 20, 1),
    ] {
        let cfg = LoaderConfig {
            batch_rows,
            window_shards: window,
            threads,
            seed: 5,
            ..Default::default()
        };
        let batches = collect(&cache, &all, 0, &cfg);
        assert_eq!(batches.len(), 1234usize.div_ceil(batch_rows));
        let mut seen = HashMap::new();
        for (k, b) in batches.iter().enumerate() {
            assert_eq!(b.index, k as u64);
            assert!(b.rows == batch_rows || k + 1 == batches.len());
            for i in 0..b.rows {
                // Synthetic row r sits at sequence r/50, position r%50.
                let r = b.seq_ids[i] as usize * 50 + b.positions[i] as usize;
                assert!(seen.insert(r, ()).is_none(), "row {r} delivered twice");
                assert_eq!(b.token_ids[i], data.token_ids[r]);
                let want_in = DType::Bf16.round_trip(&data.mlp_in[r * 24..(r + 1) * 24], 24);
                let want_out = DType::Bf16.round_trip(&data.mlp_out[r * 20..(r + 1) * 20], 20);
                assert_eq!(&b.mlp_in[i * 24..(i + 1) * 24], &want_in[..]);
                assert_eq!(&b.mlp_out[i * 20..(i + 1) * 20], &want_out[..]);
            }
        }
        assert_eq!(
            seen.len(),
            1234,
            "batch_rows {batch_rows}: every row delivered"
        );
    }
}

#[test]
fn order_depends_on_seed_and_epoch_only() {
    let (dir, _) = make(900, 64);
    let cache = Cache::open(dir.path()).unwrap();
    let all: Vec<usize> = (0..cache.num_shards()).collect();
    let cfg = |seed, threads| LoaderConfig {
        batch_rows: 50,
        seed,
        threads,
        window_shards: 3,
        ..Default::default()
    };
    let a = ids(&collect(&cache, &all, 0, &cfg(1, 1)));
    let b = ids(&collect(&cache, &all, 0, &cfg(1, 4)));
    let c = ids(&collect(&cache, &all, 0, &cfg(2, 2)));
    let d = ids(&collect(&cache, &all, 1, &cfg(1, 2)));
    assert_eq!(a, b, "thread count must not change the order");
    assert_ne!(a, c, "another seed gives another order");
    assert_ne!(a, d, "another epoch gives another order");
    // Rows of one window are mixed: the first batch draws from several shards.
    let first_batch_shards: std::collections::HashSet<u64> = a[..50]
        .iter()
        .map(|&(s, p)| (s * 50 + p as u64) / 64)
        .collect();
    assert!(first_batch_shards.len() >= 2, "{first_batch_shards:?}");
}

#[test]
fn skipping_batches_resumes_the_same_stream() {
    let (dir, _) = make(700, 64);
    let cache = Cache::open(dir.path()).unwrap();
    let all: Vec<usize> = (0..cache.num_shards()).collect();
    let full_cfg = LoaderConfig {
        batch_rows: 33,
        seed: 9,
        ..Default::default()
    };
    let full = collect(&cache, &all, 3, &full_cfg);
    let tail = collect(
        &cache,
        &all,
        3,
        &LoaderConfig {
            skip_batches: 8,
            ..full_cfg
        },
    );
    assert_eq!(tail.len(), full.len() - 8);
    assert_eq!(ids(&full[8..]), ids(&tail));
    assert_eq!(tail[0].index, 8);
}

#[test]
fn drop_last_and_early_drop() {
    let (dir, _) = make(250, 64);
    let cache = Cache::open(dir.path()).unwrap();
    let all: Vec<usize> = (0..cache.num_shards()).collect();
    let cfg = LoaderConfig {
        batch_rows: 100,
        drop_last: true,
        ..Default::default()
    };
    let batches = collect(&cache, &all, 0, &cfg);
    assert_eq!(batches.len(), 2);
    assert!(batches.iter().all(|b| b.rows == 100));
    // Dropping a stream part-way must not hang or leak threads.
    let mut stream = cache.batches(
        &all,
        0,
        &LoaderConfig {
            batch_rows: 10,
            prefetch_batches: 2,
            ..Default::default()
        },
    );
    let first = stream.next().unwrap().unwrap();
    stream.recycle(first);
    assert!(stream.next().is_some());
    drop(stream);
}

#[test]
fn held_out_shards_are_never_read_for_training() {
    let (dir, _) = make(1000, 100);
    let cache = Cache::open(dir.path()).unwrap();
    let (train, holdout) = cache.split(3).unwrap();
    assert_eq!(train, (0..7).collect::<Vec<_>>());
    assert_eq!(holdout, vec![7, 8, 9]);
    for epoch in 0..3 {
        let batches = collect(
            &cache,
            &train,
            epoch,
            &LoaderConfig {
                batch_rows: 64,
                ..Default::default()
            },
        );
        let rows: Vec<u64> = ids(&batches)
            .iter()
            .map(|&(s, p)| s * 50 + p as u64)
            .collect();
        assert_eq!(rows.len(), 700);
        assert!(
            rows.iter().all(|&r| r < 700),
            "a held-out row reached training"
        );
    }
    assert!(cache.split(10).is_err());
}
