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
