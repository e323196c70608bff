//! Pure-Rust numerical core of astrobio.
//!
//! Functions here take plain slices or ndarray views and know nothing of Python; the
//! `astrobio-py` crate wraps them. Everything is unit-tested with `cargo test`.

pub mod reduce;
