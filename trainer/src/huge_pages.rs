//! Large tensors on 2 MiB pages, where the kernel offers transparent huge pages on request (Linux's THP in
//! `madvise` mode, the common default). A step reads the rows of W_enc, W_dec and their gradients in scattered
//! order; on 4 KiB pages nearly every such row costs a TLB miss, and the first write of every page a fault.

/// `n` zeros (an untouched allocation, as `vec!` of zeros gives), with its pages advised huge.
pub fn zeros<T: Clone + Default>(n: usize) -> Vec<T> {
    let v = vec![T::default(); n];
    advise(&v);
    v
}

/// A copy of `values` on pages advised huge.
pub fn copy<T: Copy + Default>(values: &[T]) -> Vec<T> {
    let mut v = zeros(values.len());
    v.copy_from_slice(values);
    v
}

/// Asks the kernel to back the whole 2 MiB pages inside `v` with huge pages. Only advice: where the kernel
/// declines (no THP, another OS), nothing changes.
pub fn advise<T>(v: &[T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = v.as_ptr() as usize;
        let (first, end) = (
            start.next_multiple_of(HUGE),
            (start + std::mem::size_of_val(v)) / HUGE * HUGE,
        );
        if end > first {
            // SAFETY: the range lies inside `v`'s allocation, and MADV_HUGEPAGE changes no contents.
            unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}
