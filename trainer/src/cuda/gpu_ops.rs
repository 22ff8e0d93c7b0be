//! [`Ops`] on an NVIDIA GPU: the kernels of `*.cu` (compiled by NVRTC for the device present) and cuBLAS for
//! the dense products. Everything runs in order on one compute stream; host → device copies of batches go
//! through pinned staging buffers on a second stream, so the next batch's copy overlaps the current step
//! (cudarc records an event per buffer and makes each stream wait for the other where they share one).
//!
//! Only `compute::gpu::probe` may decide that this can be built: cudarc panics when a CUDA library is absent.

use super::ops::Ops;
use super::KERNEL_SOURCES;
use anyhow::{anyhow, bail, Context, Result};
use compute::gpu::{Gpu, Kernels, Staging};
use cudarc::cublas::{sys as blas_sys, CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{
    CudaFunction, CudaSlice, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg,
};
use std::cell::RefCell;

/// How cuBLAS multiplies f32 matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum GemmPrecision {
    /// Full f32 (the CPU's results to ~1e-6).
    F32,
    /// TF32 tensor cores, f32 accumulate: what PyTorch's `set_float32_matmul_precision("high")` gives sparsify.
    Tf32,
}

pub struct GpuOps {
    pub gpu: Gpu,
    blas: CudaBlas,
    kernels: Kernels,
    /// Pinned buffers for batch uploads on the copy stream.
    staging: Staging<f32>,
    /// Per-chunk partial column sums (f64) for `column_sums`.
    partial: RefCell<Option<CudaSlice<f64>>>,
}

const THREADS: u32 = 256;

impl GemmPrecision {
    pub fn name(self) -> &'static str {
        match self {
            GemmPrecision::F32 => "f32",
            GemmPrecision::Tf32 => "tf32",
        }
    }
}

/// A grid-stride launch over `n` elements.
fn grid_for(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(THREADS as usize).clamp(1, 65_535 * 8) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row.
fn per_row(rows: usize, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn int(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| anyhow!("{what} = {v} does not fit the kernels' 32-bit sizes"))
}

impl GpuOps {
    /// Opens GPU `ordinal`, compiles every kernel for it (through the PTX cache) and creates the cuBLAS handle.
    /// Call only after `compute::gpu::probe` returned `Ready`.
    pub fn new(ordinal: usize, precision: GemmPrecision) -> Result<GpuOps> {
        let gpu = Gpu::open(ordinal)?;
        let blas = CudaBlas::new(gpu.stream.clone())
            .map_err(|e| anyhow!("cannot create a cuBLAS handle: {e:?}"))?;
        let mode = match precision {
            GemmPrecision::F32 => blas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH,
            GemmPrecision::Tf32 => blas_sys::cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH,
        };
        // SAFETY: a valid handle, created above.
        unsafe { blas_sys::cublasSetMathMode(*blas.handle(), mode) }
            .result()
            .map_err(|e| anyhow!("cublasSetMathMode: {e:?}"))?;
        Ok(GpuOps {
            kernels: Kernels::load(&gpu, KERNEL_SOURCES)?,
            gpu,
            blas,
            staging: Staging::default(),
            partial: RefCell::new(None),
        })
    }

    /// The device, e.g. "NVIDIA H200 (sm_90)".
    pub fn name(&self) -> &str {
        &self.gpu.name
    }

    fn kernel(&self, name: &str) -> &CudaFunction {
        self.kernels.get(name)
    }

    fn err<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> anyhow::Error {
        move |e| anyhow!("CUDA {what}: {e:?}")
    }

    /// Waits for everything queued on the compute stream.
    pub fn synchronize(&self) -> Result<()> {
        self.gpu.synchronize()
    }

    /// Free and total device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize)> {
        self.gpu.memory()
    }

    #[allow(clippy::too_many_arguments)]
    fn sgemm(
        &self,
        transa: bool,
        transb: bool,
        m: usize,
        n: usize,
        k: usize,
        a: &CudaSlice<f32>,
        lda: usize,
        b: &CudaSlice<f32>,
        ldb: usize,
        c: &mut CudaSlice<f32>,
        ldc: usize,
        beta: f32,
    ) -> Result<()> {
        let op = |t| {
            if t {
                blas_sys::cublasOperation_t::CUBLAS_OP_T
            } else {
                blas_sys::cublasOperation_t::CUBLAS_OP_N
            }
        };
        let cfg = GemmConfig {
            transa: op(transa),
            transb: op(transb),
            m: int(m, "gemm m")?,
            n: int(n, "gemm n")?,
            k: int(k, "gemm k")?,
            alpha: 1.0f32,
            lda: int(lda, "lda")?,
            ldb: int(ldb, "ldb")?,
            beta,
            ldc: int(ldc, "ldc")?,
        };
        // SAFETY: the callers pass buffers holding at least the m×k, k×n and m×n column-major operands.
        unsafe { self.blas.gemm(cfg, a, b, c) }
            .map_err(|e| anyhow!("cuBLAS sgemm ({m}×{n}×{k}): {e:?}"))
    }
}

/// Launches a kernel on the compute stream. An optional buffer goes in as its raw address (0 for none), from
/// `device_ptr(_mut)`, whose guard, dropped after the launch, does cudarc's stream bookkeeping.
macro_rules! launch {
    ($ops:expr, $name:literal, $cfg:expr, $($arg:expr),+ $(,)?) => {{
        let mut b = $ops.gpu.stream.launch_builder($ops.kernel($name));
        $( b.arg($arg); )+
        // SAFETY: each kernel's arguments are listed in its .cu signature order, with buffers sized by the
        // Ops contract the caller checked.
        unsafe { b.launch($cfg) }.map(|_| ()).map_err(|e| anyhow!("CUDA kernel {}: {e:?}", $name))
    }};
}

impl Ops for GpuOps {
    type F32 = CudaSlice<f32>;
    type U32 = CudaSlice<u32>;
    type U64 = CudaSlice<u64>;
    type F64 = CudaSlice<f64>;

    fn zeros_f32(&self, n: usize) -> Result<CudaSlice<f32>> {
        self.gpu
            .stream
            .alloc_zeros(n.max(1))
            .map_err(Self::err("alloc"))
    }
    fn zeros_u32(&self, n: usize) -> Result<CudaSlice<u32>> {
        self.gpu
            .stream
            .alloc_zeros(n.max(1))
            .map_err(Self::err("alloc"))
    }
    fn zeros_u64(&self, n: usize) -> Result<CudaSlice<u64>> {
        self.gpu
            .stream
            .alloc_zeros(n.max(1))
            .map_err(Self::err("alloc"))
    }
    fn zeros_f64(&self, n: usize) -> Result<CudaSlice<f64>> {
        self.gpu
            .stream
            .alloc_zeros(n.max(1))
            .map_err(Self::err("alloc"))
    }
    fn uploaded_f32(&self, host: &[f32]) -> Result<CudaSlice<f32>> {
        if host.is_empty() {
            return self.zeros_f32(0);
        }
        self.gpu
            .stream
            .clone_htod(host)
            .map_err(Self::err("upload"))
    }
    fn uploaded_u32(&self, host: &[u32]) -> Result<CudaSlice<u32>> {
        if host.is_empty() {
            return self.zeros_u32(0);
        }
        self.gpu
            .stream
            .clone_htod(host)
            .map_err(Self::err("upload"))
    }
    fn uploaded_u64(&self, host: &[u64]) -> Result<CudaSlice<u64>> {
        if host.is_empty() {
            return self.zeros_u64(0);
        }
        self.gpu
            .stream
            .clone_htod(host)
            .map_err(Self::err("upload"))
    }

    fn upload_f32(&self, host: &[f32], dst: &mut CudaSlice<f32>) -> Result<()> {
        self.staging.upload(&self.gpu, host, dst)
    }
    fn download_f32(&self, src: &CudaSlice<f32>) -> Result<Vec<f32>> {
        let v = self
            .gpu
            .stream
            .clone_dtoh(src)
            .map_err(Self::err("download"))?;
        self.synchronize()?;
        Ok(v)
    }
    fn download_u32(&self, src: &CudaSlice<u32>) -> Result<Vec<u32>> {
        let v = self
            .gpu
            .stream
            .clone_dtoh(src)
            .map_err(Self::err("download"))?;
        self.synchronize()?;
        Ok(v)
    }
    fn download_u64(&self, src: &CudaSlice<u64>) -> Result<Vec<u64>> {
        let v = self
            .gpu
            .stream
            .clone_dtoh(src)
            .map_err(Self::err("download"))?;
        self.synchronize()?;
        Ok(v)
    }
    fn download_f64(&self, src: &CudaSlice<f64>) -> Result<Vec<f64>> {
        let v = self
            .gpu
            .stream
            .clone_dtoh(src)
            .map_err(Self::err("download"))?;
        self.synchronize()?;
        Ok(v)
    }
    fn fill_zero(&self, buf: &mut CudaSlice<f32>) -> Result<()> {
        self.gpu
            .stream
            .memset_zeros(buf)
            .map_err(Self::err("memset"))
    }

    fn linear(
        &self,
        x: &CudaSlice<f32>,
        rows: usize,
        inp: usize,
        w: &CudaSlice<f32>,
        out: usize,
        y: &mut CudaSlice<f32>,
        accumulate: bool,
    ) -> Result<()> {
        // Row-major y[rows × out] is column-major yᵀ[out × rows] = W · xᵀ, with W read as column-major
        // [inp × out] (hence transposed) and x as column-major [inp × rows].
        self.sgemm(
            true,
            false,
            out,
            rows,
            inp,
            w,
            inp,
            x,
            inp,
            y,
            out,
            if accumulate { 1.0 } else { 0.0 },
        )
    }

    fn outer_grad(
        &self,
        dy: &CudaSlice<f32>,
        x: &CudaSlice<f32>,
        rows: usize,
        d_out: usize,
        d_in: usize,
        g: &mut CudaSlice<f32>,
    ) -> Result<()> {
        // Row-major g[d_out × d_in] is column-major gᵀ[d_in × d_out] = xᵀ · dy, with x read as column-major
        // [d_in × rows] and dy as column-major [d_out × rows] (hence transposed).
        self.sgemm(
            false, true, d_in, d_out, rows, x, d_in, dy, d_out, g, d_in, 0.0,
        )
    }

    fn topk_relu(
        &self,
        pre: &CudaSlice<f32>,
        bias: &CudaSlice<f32>,
        rows: usize,
        width: usize,
        k: usize,
        acts: &mut CudaSlice<f32>,
        idx: &mut CudaSlice<u32>,
    ) -> Result<()> {
        if k > super::engine::MAX_K {
            bail!("TopK kernel: k = {k} is above {}", super::engine::MAX_K);
        }
        let (rows_i, width_i, k_i) = (int(rows, "rows")?, int(width, "latents")?, int(k, "k")?);
        launch!(
            self,
            "topk_relu",
            per_row(rows, 256),
            pre,
            bias,
            &rows_i,
            &width_i,
            &k_i,
            acts,
            idx
        )
    }

    fn sparse_decode(
        &self,
        acts: &CudaSlice<f32>,
        idx: &CudaSlice<u32>,
        w: &CudaSlice<f32>,
        bias: Option<&CudaSlice<f32>>,
        rows: usize,
        k: usize,
        d: usize,
        accumulate: bool,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let (rows_i, k_i, d_i, acc) = (
            int(rows, "rows")?,
            int(k, "k")?,
            int(d, "width")?,
            accumulate as i32,
        );
        let cfg = per_row(rows, 128);
        let (bias, _guard) = match bias {
            Some(b) => {
                let (ptr, guard) = b.device_ptr(&self.gpu.stream);
                (ptr, Some(guard))
            }
            None => (0, None),
        };
        launch!(
            self,
            "sparse_decode",
            cfg,
            acts,
            idx,
            w,
            &bias,
            &rows_i,
            &k_i,
            &d_i,
            &acc,
            out
        )
    }

    fn latent_grads(
        &self,
        dy: &CudaSlice<f32>,
        acts: &CudaSlice<f32>,
        idx: &CudaSlice<u32>,
        w_dec: &CudaSlice<f32>,
        rows: usize,
        k: usize,
        d_out: usize,
        g_pre: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let pairs = rows * k;
        let (pairs_i, k_i, d_i) = (int(pairs, "rows × k")?, int(k, "k")?, int(d_out, "width")?);
        // One warp per pair.
        let cfg = LaunchConfig {
            grid_dim: ((pairs * 32).div_ceil(THREADS as usize) as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(
            self,
            "latent_grads",
            cfg,
            dy,
            acts,
            idx,
            w_dec,
            &pairs_i,
            &k_i,
            &d_i,
            g_pre
        )
    }

    fn scatter_rows(
        &self,
        coef: &CudaSlice<f32>,
        idx: &CudaSlice<u32>,
        src: &CudaSlice<f32>,
        rows: usize,
        k: usize,
        d: usize,
        grad: &mut CudaSlice<f32>,
        bias_grad: Option<&mut CudaSlice<f32>>,
    ) -> Result<()> {
        let (rows_i, k_i, d_i) = (int(rows, "rows")?, int(k, "k")?, int(d, "width")?);
        let cfg = per_row(rows, 128);
        let (bias_grad, _guard) = match bias_grad {
            Some(b) => {
                let (ptr, guard) = b.device_ptr_mut(&self.gpu.stream);
                (ptr, Some(guard))
            }
            None => (0, None),
        };
        launch!(
            self,
            "scatter_rows",
            cfg,
            coef,
            idx,
            src,
            &rows_i,
            &k_i,
            &d_i,
            grad,
            &bias_grad
        )
    }

    fn column_sums(
        &self,
        m: &CudaSlice<f32>,
        rows: usize,
        d: usize,
        divisor: f32,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        const CHUNK: usize = 256; // COL_CHUNK in reduce.cu
        let chunks = rows.div_ceil(CHUNK).max(1);
        let mut partial = self.partial.borrow_mut();
        if partial.as_ref().is_none_or(|p| p.len() < chunks * d) {
            *partial = Some(
                self.gpu
                    .stream
                    .alloc_zeros::<f64>(chunks * d)
                    .map_err(Self::err("alloc"))?,
            );
        }
        let partial = partial.as_mut().unwrap();
        let (rows_i, d_i, chunks_i) =
            (int(rows, "rows")?, int(d, "width")?, int(chunks, "chunks")?);
        let cfg = LaunchConfig {
            grid_dim: (d.div_ceil(32) as u32, chunks as u32, 1),
            block_dim: (32, 8, 1),
            shared_mem_bytes: 0,
        };
        launch!(
            self,
            "column_partial_sums",
            cfg,
            m,
            &rows_i,
            &d_i,
            &mut *partial
        )?;
        launch!(
            self,
            "column_sums_finish",
            grid_for(d),
            &*partial,
            &chunks_i,
            &d_i,
            &divisor,
            out
        )
    }

    fn fvu_sums(
        &self,
        y: &CudaSlice<f32>,
        mean: &CudaSlice<f32>,
        y_hat: &CudaSlice<f32>,
        rows: usize,
        d: usize,
        diff: &mut CudaSlice<f32>,
        sums: &mut CudaSlice<f64>,
    ) -> Result<()> {
        self.gpu
            .stream
            .memset_zeros(sums)
            .map_err(Self::err("memset"))?;
        let (n, d_i) = ((rows * d) as i64, int(d, "width")?);
        let cfg = grid_for((rows * d).min(1 << 20));
        launch!(self, "fvu_sums", cfg, y, mean, y_hat, &n, &d_i, diff, sums)
    }

    fn fvu_grad(&self, diff: &mut CudaSlice<f32>, sums: &CudaSlice<f64>) -> Result<()> {
        let (n, cfg) = (diff.len() as i64, grid_for(diff.len().min(1 << 20)));
        launch!(self, "fvu_grad", cfg, diff, &n, sums)
    }

    fn sub_row_vector(
        &self,
        x: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        rows: usize,
        d: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let (rows_i, d_i) = (int(rows, "rows")?, int(d, "width")?);
        launch!(
            self,
            "sub_row_vector",
            grid_for((rows * d).min(1 << 20)),
            x,
            b,
            &rows_i,
            &d_i,
            out
        )
    }

    fn sub_assign(&self, a: &mut CudaSlice<f32>, b: &CudaSlice<f32>) -> Result<()> {
        let (n, cfg) = (int(a.len(), "length")?, grid_for(a.len()));
        launch!(self, "sub_assign", cfg, a, b, &n)
    }

    fn adam(
        &self,
        p: &mut CudaSlice<f32>,
        g: &CudaSlice<f32>,
        m: &mut CudaSlice<f32>,
        v: &mut CudaSlice<f32>,
        step_size: f32,
        bias2_sqrt: f32,
    ) -> Result<()> {
        let (n, cfg) = (p.len() as i64, grid_for(p.len().min(1 << 20)));
        launch!(self, "adam", cfg, p, g, m, v, &n, &step_size, &bias2_sqrt)
    }

    fn project_decoder_grad(
        &self,
        w: &CudaSlice<f32>,
        g: &mut CudaSlice<f32>,
        latents: usize,
        d: usize,
    ) -> Result<()> {
        let (l_i, d_i) = (int(latents, "latents")?, int(d, "width")?);
        launch!(
            self,
            "project_decoder_grad",
            per_row(latents, 128),
            w,
            g,
            &l_i,
            &d_i
        )
    }

    fn normalize_rows(&self, w: &mut CudaSlice<f32>, latents: usize, d: usize) -> Result<()> {
        let (l_i, d_i) = (int(latents, "latents")?, int(d, "width")?);
        launch!(self, "normalize_rows", per_row(latents, 128), w, &l_i, &d_i)
    }

    fn track_fired(
        &self,
        acts: &CudaSlice<f32>,
        idx: &CudaSlice<u32>,
        rows: usize,
        k: usize,
        since_fired: &mut CudaSlice<u64>,
        latents: usize,
        dead_after: u64,
        counts: &mut CudaSlice<u64>,
    ) -> Result<()> {
        let (n, l_i, rows_i) = (
            int(rows * k, "rows × k")?,
            int(latents, "latents")?,
            int(rows, "rows")?,
        );
        launch!(
            self,
            "age",
            grid_for(latents),
            &mut *since_fired,
            &l_i,
            &rows_i
        )?;
        launch!(
            self,
            "reset_fired",
            grid_for(rows * k),
            acts,
            idx,
            &n,
            &mut *since_fired
        )?;
        self.gpu
            .stream
            .memset_zeros(counts)
            .map_err(Self::err("memset"))?;
        // count_stats is not grid-stride: one thread per element.
        let cfg = LaunchConfig {
            grid_dim: (
                (rows * k).max(latents).div_ceil(THREADS as usize) as u32,
                1,
                1,
            ),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(
            self,
            "count_stats",
            cfg,
            acts,
            &n,
            &*since_fired,
            &l_i,
            &dead_after,
            counts
        )
    }
}

/// Host-side error context for the train loop.
pub fn open(precision: GemmPrecision) -> Result<GpuOps> {
    GpuOps::new(0, precision).context("starting the GPU trainer")
}
