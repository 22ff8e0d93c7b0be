//! What this CPU runs, asked once per call site through the standard library's cached detection.

/// AVX2: the elementwise loops and Adam compile 8 lanes wide instead of SSE2's 4. Results are the same bits
/// either way (same operations, same order, no fused multiply-add unless written).
#[inline]
pub fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// AVX2 and FMA: the extractor's vectorised exponentials and SwiGLU, and the trainer's fused TopK encoder.
#[inline]
pub fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs `body` from a function compiled for AVX2 when the CPU has it; `body` must be `#[inline(always)]`, so
/// that it is compiled into that function.
#[macro_export]
macro_rules! dispatch_wide {
    ($body:ident($($arg:expr),*) : $wide:ident($($param:ident: $ty:ty),*) -> $ret:ty) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn $wide($($param: $ty),*) -> $ret {
            $body($($param),*)
        }
        $(let $param: $ty = $arg;)*
        #[cfg(target_arch = "x86_64")]
        if $crate::cpu::features::avx2() {
            // SAFETY: the CPU runs AVX2.
            return unsafe { $wide($($param),*) };
        }
        $body($($param),*)
    }};
}
