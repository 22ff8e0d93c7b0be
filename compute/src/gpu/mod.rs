//! The GPU side of the runtime, for every stage that runs CUDA.
//!
//! cudarc panics when a CUDA library is missing, so nothing here touches it before [`probe`] has checked that
//! the driver, NVRTC and cuBLAS libraries load and a device exists; [`nvrtc_present`] is enough for compiling
//! kernels to PTX, which needs no GPU.
//!
//! - [`probe`]: what is there, in one line when something is missing; [`resolve`]: `--device` against it;
//! - [`Gpu`]: one device's context, its compute stream and a copy stream;
//! - [`nvrtc`]: compiling a kernel source to PTX, cached on disk by source hash and GPU capability;
//! - [`KernelSource`] and [`Kernels`]: the registry of a stage's `.cu` files and their loaded functions;
//! - [`Staging`]: pinned host buffers through which uploads run on the copy stream.

mod choice;
mod context;
mod kernels;
pub mod nvrtc;
mod pinned;
mod probe;

pub use choice::{resolve, DeviceChoice, Resolved};
pub use context::Gpu;
pub use kernels::{kernel_names, KernelSource, Kernels};
pub use pinned::Staging;
pub use probe::{nvrtc_present, probe, Probe};
