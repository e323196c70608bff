//! Pure-Rust numerical core of astrobio.
//!
//! Functions here take plain slices and know nothing of Python; the `astrobio-py` crate wraps
//! them. Parallel functions run on the current rayon pool (install a pool to pick the thread
//! count). Everything is unit-tested with `cargo test`.

pub mod augment;
pub mod cube;
pub mod elem;
pub mod normalize;
pub mod patches;
pub mod reduce;
pub mod regrid;
mod simd;
pub mod stats;
pub mod threads;
