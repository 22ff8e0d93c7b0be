//! The shuffled batch stream that feeds training.
//!
//! Per epoch: the shard order is permuted from `(seed, epoch)`; consecutive groups of `window_shards` shards form
//! a window whose rows are permuted together, so each batch mixes several shards; the stream of windows is cut
//! into batches of `batch_rows` rows (a batch may straddle two windows). Every row of the given shards is
//! delivered exactly once per epoch, and the same seed and epoch give the same batches in the same order.
//!
//! One producer thread plans batches; `threads` workers convert them to f32 in parallel. Batch `j` goes to worker
//! `j % threads` and is taken back in the same order, so parallelism never changes the order. Bounded channels
//! give `prefetch_batches` of look-ahead; buffers handed back through [`BatchStream::recycle`] are reused.

use crate::cache::Cache;
use crate::error::Result;
use crate::shard::{Section, Shard};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Clone, Debug)]
pub struct LoaderConfig {
    pub batch_rows: usize,
    pub seed: u64,
    /// Shards whose rows are shuffled together.
    pub window_shards: usize,
    /// Batches converted ahead of the consumer.
    pub prefetch_batches: usize,
    /// Conversion threads.
    pub threads: usize,
    /// Drop the epoch's last batch when it is short.
    pub drop_last: bool,
    /// Batches of this epoch to skip without converting them (resuming mid-epoch).
    pub skip_batches: u64,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_rows: 4096,
            seed: 0,
            window_shards: 4,
            prefetch_batches: 4,
            threads: 2,
            drop_last: false,
            skip_batches: 0,
        }
    }
}

/// A batch of rows as f32 activations (row-major) with the ids of each row.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Position of this batch in the epoch.
    pub index: u64,
    pub rows: usize,
    pub mlp_in: Vec<f32>,
    pub mlp_out: Vec<f32>,
    pub token_ids: Vec<u32>,
    pub seq_ids: Vec<u64>,
    pub positions: Vec<u32>,
}

impl Batch {
    /// The rows of one side.
    pub fn side(&self, side: crate::Side) -> &[f32] {
        match side {
            crate::Side::MlpIn => &self.mlp_in,
            crate::Side::MlpOut => &self.mlp_out,
        }
    }
}

impl Cache {
    /// A shuffled stream of f32 batches over `shards` for one epoch (see [`LoaderConfig`]).
    pub fn batches(&self, shards: &[usize], epoch: u64, config: &LoaderConfig) -> BatchStream {
        BatchStream::start(
            Arc::new(self.clone()),
            shards.to_vec(),
            epoch,
            config.clone(),
        )
    }
}

/// `(slot into Job::shards, row in that shard)`.
type RowRef = (u32, u32);

enum Job {
    Work {
        index: u64,
        shards: Vec<Arc<Shard>>,
        rows: Vec<RowRef>,
    },
    Fail(crate::error::CacheError),
}

pub struct BatchStream {
    outputs: Vec<Receiver<Result<Batch>>>,
    recycle: Sender<Batch>,
    threads: Vec<JoinHandle<()>>,
    received: u64,
    to_receive: u64,
    failed: bool,
}

/// Number of batches in an epoch of `rows` rows.
pub fn batches_per_epoch(rows: u64, config: &LoaderConfig) -> u64 {
    let b = config.batch_rows as u64;
    if config.drop_last {
        rows / b
    } else {
        rows.div_ceil(b)
    }
}

impl BatchStream {
    pub(crate) fn start(
        cache: Arc<Cache>,
        shards: Vec<usize>,
        epoch: u64,
        config: LoaderConfig,
    ) -> BatchStream {
        assert!(config.batch_rows > 0 && config.window_shards > 0 && config.threads > 0);
        let rows: u64 = shards
            .iter()
            .map(|&i| cache.manifest().shards[i].rows)
            .sum();
        let total = batches_per_epoch(rows, &config);
        let to_receive = total.saturating_sub(config.skip_batches);
        let workers = config.threads;
        let per_worker = config.prefetch_batches.div_ceil(workers).max(1);
        let (recycle_tx, recycle_rx) = unbounded::<Batch>();
        let mut job_txs = Vec::new();
        let mut outputs = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..workers {
            let (job_tx, job_rx) = bounded::<Job>(1);
            let (out_tx, out_rx) = bounded::<Result<Batch>>(per_worker);
            let recycle_rx = recycle_rx.clone();
            threads.push(std::thread::spawn(move || {
                for job in job_rx {
                    let result = match job {
                        Job::Work {
                            index,
                            shards,
                            rows,
                        } => {
                            let mut batch = recycle_rx.try_recv().unwrap_or_default();
                            fill_batch(&mut batch, index, &shards, &rows);
                            Ok(batch)
                        }
                        Job::Fail(e) => Err(e),
                    };
                    if out_tx.send(result).is_err() {
                        return;
                    }
                }
            }));
            job_txs.push(job_tx);
            outputs.push(out_rx);
        }
        threads.push(std::thread::spawn(move || {
            plan_epoch(&cache, &shards, epoch, &config, total, &job_txs)
        }));
        BatchStream {
            outputs,
            recycle: recycle_tx,
            threads,
            received: 0,
            to_receive,
            failed: false,
        }
    }

    /// Batches this stream will still deliver.
    pub fn remaining(&self) -> u64 {
        self.to_receive - self.received
    }

    /// Hands a consumed batch back so its buffers are reused.
    pub fn recycle(&self, batch: Batch) {
        let _ = self.recycle.send(batch);
    }
}

impl Iterator for BatchStream {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.received == self.to_receive || self.failed {
            return None;
        }
        let worker = (self.received % self.outputs.len() as u64) as usize;
        let item = self.outputs[worker]
            .recv()
            .expect("loader worker ended before its batches were delivered");
        self.received += 1;
        self.failed = item.is_err();
        Some(item)
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        // Closing the outputs makes workers stop, which makes the planner stop.
        self.outputs.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The planner: decides which rows go into which batch and hands the batches out round-robin.
fn plan_epoch(
    cache: &Cache,
    shards: &[usize],
    epoch: u64,
    config: &LoaderConfig,
    total: u64,
    jobs: &[Sender<Job>],
) {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    rng.set_stream(epoch);
    let mut order = shards.to_vec();
    order.shuffle(&mut rng);

    let mut dispatch = Dispatch { jobs, sent: 0 };
    let mut index = 0u64; // batch index in the epoch
    let mut live: Vec<Arc<Shard>> = Vec::new();
    let mut pending: Vec<RowRef> = Vec::new();
    let mut emit = |dispatch: &mut Dispatch, live: &Vec<Arc<Shard>>, rows: Vec<RowRef>| -> bool {
        let this = index;
        index += 1;
        if this >= total || this < config.skip_batches {
            return true;
        }
        dispatch.send(Job::Work {
            index: this,
            shards: live.clone(),
            rows,
        })
    };

    for window in order.chunks(config.window_shards) {
        let mut opened = Vec::with_capacity(window.len());
        for &i in window {
            match cache.open_shard(i) {
                Ok(s) => {
                    s.prefetch();
                    opened.push(Arc::new(s))
                }
                Err(e) => {
                    dispatch.send(Job::Fail(e));
                    return;
                }
            }
        }
        // Keep only the shards the carried-over rows still need, then add this window's.
        let mut remap = vec![u32::MAX; live.len()];
        let mut next_live = Vec::new();
        for row in pending.iter_mut() {
            let slot = row.0 as usize;
            if remap[slot] == u32::MAX {
                remap[slot] = next_live.len() as u32;
                next_live.push(live[slot].clone());
            }
            row.0 = remap[slot];
        }
        let base = next_live.len() as u32;
        let mut window_rows: Vec<RowRef> = Vec::new();
        for (k, shard) in opened.iter().enumerate() {
            window_rows.extend((0..shard.rows() as u32).map(|r| (base + k as u32, r)));
        }
        next_live.extend(opened);
        live = next_live;
        window_rows.shuffle(&mut rng);

        let mut rows = window_rows.into_iter();
        loop {
            let need = config.batch_rows - pending.len();
            pending.extend(rows.by_ref().take(need));
            if pending.len() < config.batch_rows {
                break;
            }
            let full = std::mem::replace(&mut pending, Vec::with_capacity(config.batch_rows));
            if !emit(&mut dispatch, &live, full) {
                return;
            }
        }
    }
    if !pending.is_empty() && !config.drop_last {
        emit(&mut dispatch, &live, pending);
    }
}

/// Hands jobs to workers round-robin, in batch order.
struct Dispatch<'a> {
    jobs: &'a [Sender<Job>],
    sent: u64,
}

impl Dispatch<'_> {
    fn send(&mut self, job: Job) -> bool {
        let worker = (self.sent % self.jobs.len() as u64) as usize;
        self.sent += 1;
        self.jobs[worker].send(job).is_ok()
    }
}

#[allow(clippy::needless_range_loop)] // `k` also indexes the rows ahead
fn fill_batch(batch: &mut Batch, index: u64, shards: &[Arc<Shard>], rows: &[RowRef]) {
    let n = rows.len();
    let (d_in, d_out) = (shards[0].d_in(), shards[0].d_out());
    batch.index = index;
    batch.rows = n;
    batch.mlp_in.resize(n * d_in, 0.0);
    batch.mlp_out.resize(n * d_out, 0.0);
    batch.token_ids.resize(n, 0);
    batch.seq_ids.resize(n, 0);
    batch.positions.resize(n, 0);
    // Visit rows in file order (each still lands at its shuffled place): ascending addresses, and the rows a
    // few steps ahead are prefetched, so the gather waits on memory far less than in shuffled order.
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_unstable_by_key(|&i| rows[i as usize]);
    const AHEAD: usize = 6;
    let row_bytes = |k: usize, s: Section| {
        let (slot, row) = rows[order[k] as usize];
        let shard = &shards[slot as usize];
        let stride = shard.dtype().row_bytes(shard.width(s));
        &shard.section_bytes(s)[row as usize * stride..(row as usize + 1) * stride]
    };
    for k in 0..n {
        if k + AHEAD < n {
            prefetch(row_bytes(k + AHEAD, Section::MlpIn));
            prefetch(row_bytes(k + AHEAD, Section::MlpOut));
        }
        let i = order[k] as usize;
        let (slot, row) = rows[i];
        let shard = &shards[slot as usize];
        let row = row as usize;
        shard.read_rows_f32(
            Section::MlpIn,
            row,
            &mut batch.mlp_in[i * d_in..(i + 1) * d_in],
        );
        shard.read_rows_f32(
            Section::MlpOut,
            row,
            &mut batch.mlp_out[i * d_out..(i + 1) * d_out],
        );
        batch.token_ids[i] = shard.token_ids()[row];
        batch.seq_ids[i] = shard.seq_ids()[row];
        batch.positions[i] = shard.positions()[row];
    }
}

/// Hints the CPU to load `bytes` into cache.
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch is only a hint; the address is inside a live slice.
        unsafe {
            std::arch::x86_64::_mm_prefetch(
                line.as_ptr() as *const i8,
                std::arch::x86_64::_MM_HINT_T0,
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}
