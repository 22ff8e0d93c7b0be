//! The registry of a stage's kernel sources and the functions loaded from them.
//!
//! A stage lists its `.cu` files once as [`KernelSource`]s (compiled in CI for sm_80 and sm_90 with NVRTC and
//! ptxas, and at run time for the GPU present); [`Kernels::load`] compiles each through the PTX cache, loads
//! it, and finds every `extern "C" __global__` function by name.

use super::nvrtc::compile_cached;
use super::Gpu;
use anyhow::{anyhow, Result};
use cudarc::driver::CudaFunction;
use std::collections::HashMap;

/// One `.cu` file: its name (for messages) and its text.
#[derive(Clone, Copy, Debug)]
pub struct KernelSource {
    pub file: &'static str,
    pub source: &'static str,
}

/// Every kernel of a set of sources, loaded on one GPU, by function name.
pub struct Kernels(HashMap<&'static str, CudaFunction>);

impl Kernels {
    pub fn load(gpu: &Gpu, sources: &[KernelSource]) -> Result<Kernels> {
        let arch = gpu.arch();
        let mut kernels = HashMap::new();
        for KernelSource { file, source } in sources {
            let ptx = compile_cached(file, source, &arch)?;
            let module = gpu
                .ctx
                .load_module(ptx)
                .map_err(|e| anyhow!("{file}: the driver refused the PTX for {arch}: {e:?}"))?;
            for name in kernel_names(source) {
                let f = module
                    .load_function(name)
                    .map_err(|e| anyhow!("{file}: kernel {name} not found: {e:?}"))?;
                kernels.insert(name, f);
            }
        }
        Ok(Kernels(kernels))
    }

    /// The kernel `name`; a name in no source is a programming error.
    pub fn get(&self, name: &str) -> &CudaFunction {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("kernel {name} is not in any .cu source"))
    }
}

/// The names of the `extern "C" __global__` functions of a source.
pub fn kernel_names(source: &'static str) -> Vec<&'static str> {
    source
        .split("extern \"C\" __global__ void ")
        .skip(1)
        .filter_map(|rest| rest.split('(').next())
        .map(str::trim)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_every_global_function() {
        let src = "extern \"C\" __global__ void alpha(int n) {}\n__device__ void helper() {}\n\
                   extern \"C\" __global__ void beta (float* x) {}";
        assert_eq!(super::kernel_names(src), ["alpha", "beta"]);
    }
}
