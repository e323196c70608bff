//! Runtime CPU dispatch: compile a kernel three times (AVX-512, AVX2+FMA, baseline) and pick
//! at run time.
//!
//! The wheel targets baseline x86-64 (SSE2), which leaves half of a modern core's vector width
//! unused; these kernels are memory-bound only once they run 4 f64 lanes per instruction.

/// Defines `$name` calling `$generic` through an AVX-512 or AVX2 copy when the CPU has it.
/// Results are bit-identical on both paths: Rust never fuses `a * b + c` into an FMA by itself.
macro_rules! dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident<$t:ident: $bound:path>($($arg:ident: $ty:ty),*) -> $ret:ty => $generic:ident) => {
        $(#[$m])*
        $vis fn $name<$t: $bound>($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512<$t: $bound>($($arg: $ty),*) -> $ret {
                    $generic($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the CPU supports the features `avx512` was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2<$t: $bound>($($arg: $ty),*) -> $ret {
                    $generic($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}

pub(crate) use dispatch;

/// How far ahead (in elements) the streaming kernels prefetch. Measured on the 2-core CI
/// machine: a single thread reading 1 GB went from 5.6 to 8.5 GB/s with it; the hardware
/// prefetcher alone stops at every 4 KiB page and keeps too few misses in flight.
pub(crate) const PREFETCH: usize = 512;

/// Hints the CPU to load the cache line holding `xs[at]` (nothing if `at` is past the end).
#[inline(always)]
pub(crate) fn prefetch<T>(xs: &[T], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if at < xs.len() {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch has no architectural effect and the address is inside `xs`.
        #[allow(unused_unsafe)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(xs.as_ptr().add(at) as *const i8)
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (xs, at);
}
