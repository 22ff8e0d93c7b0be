//! Pinned (page-locked) host buffers for uploads on the copy stream.
//!
//! A copy from pageable memory makes the driver stage it itself and blocks the host; from pinned memory it is
//! queued and returns. Buffers are kept per length (a batch's) and used in turn, [`BUFFERS_PER_LENGTH`] of
//! them, so that a batch's two sides and the next batch's can be in flight at once; filling a buffer first
//! waits for its previous copy (cudarc records an event per buffer, and makes each stream wait for the other
//! where they share a device buffer).

use super::Gpu;
use anyhow::{anyhow, bail, Result};
use cudarc::driver::{CudaSlice, DeviceRepr, PinnedHostSlice, ValidAsZeroBits};
use std::cell::RefCell;
use std::collections::HashMap;

/// Pinned buffers per upload length.
pub const BUFFERS_PER_LENGTH: usize = 4;

/// The buffers of one length, and the next to use.
type Ring<T> = (usize, Vec<PinnedHostSlice<T>>);

/// The rings, per length.
pub struct Staging<T: DeviceRepr>(RefCell<HashMap<usize, Ring<T>>>);

impl<T: DeviceRepr + ValidAsZeroBits + Copy> Default for Staging<T> {
    fn default() -> Self {
        Staging(RefCell::new(HashMap::new()))
    }
}

impl<T: DeviceRepr + ValidAsZeroBits + Copy> Staging<T> {
    /// Queues the copy of `host` into the start of `dst` on the copy stream; returns once `host` is in pinned
    /// memory.
    pub fn upload(&self, gpu: &Gpu, host: &[T], dst: &mut CudaSlice<T>) -> Result<()> {
        if host.is_empty() {
            return Ok(());
        }
        if host.len() > dst.len() {
            bail!(
                "upload of {} values into a device buffer of {}",
                host.len(),
                dst.len()
            );
        }
        let err = |what: &'static str| move |e| anyhow!("CUDA {what}: {e:?}");
        let mut staging = self.0.borrow_mut();
        let (next, buffers) = staging.entry(host.len()).or_insert((0, Vec::new()));
        if buffers.len() < BUFFERS_PER_LENGTH {
            // SAFETY: filled in full below before any copy reads it.
            buffers.push(
                unsafe { gpu.ctx.alloc_pinned::<T>(host.len()) }.map_err(err("pinned alloc"))?,
            );
        }
        let which = *next % buffers.len();
        let pinned = &mut buffers[which];
        *next += 1;
        // Waits for this buffer's previous copy to finish, then fills it.
        pinned
            .as_mut_slice()
            .map_err(err("pinned buffer"))?
            .copy_from_slice(host);
        let mut view = dst.slice_mut(..host.len());
        gpu.copy_stream
            .memcpy_htod(&*pinned, &mut view)
            .map_err(err("host to device copy"))
    }
}
