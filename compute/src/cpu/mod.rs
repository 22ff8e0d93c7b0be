//! The CPU side of the runtime: dense products ([`gemm`]), feature detection ([`features`]), vector helpers
//! ([`vector`]) and a raw pointer that parallel tasks may share ([`SendPtr`]).

pub mod features;
pub mod gemm;
pub mod vector;

pub use gemm::{linear, matmul};
pub use vector::{axpy, dot, fetch_ahead, prefetch};

/// A raw pointer that tasks writing disjoint parts of one buffer may share. Each use says, beside its
/// `unsafe`, why the parts are disjoint.
#[derive(Clone, Copy)]
pub struct SendPtr<T>(pub *mut T);
// SAFETY: the pointer is only dereferenced by tasks writing disjoint elements (see each use).
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    #[inline]
    pub fn get(self) -> *mut T {
        self.0
    }
}
