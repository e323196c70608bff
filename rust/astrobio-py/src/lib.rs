//! Thin PyO3 wrappers over `astrobio-core`, built by maturin into `astrobio_cli._native`.
//!
//! Each wrapper validates its input, releases the GIL for the computation and turns
//! errors into Python exceptions; no panic is allowed to cross into Python.

use numpy::PyReadonlyArray1;
use pyo3::prelude::*;

/// The build profile the extension was compiled with ("release" or "debug").
#[pyfunction]
fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// Mean of the non-NaN values of a 1-D float64 array; NaN when there are none.
#[pyfunction]
fn nanmean(py: Python<'_>, x: PyReadonlyArray1<'_, f64>) -> PyResult<f64> {
    let view = x.as_array();
    // Strided (non-contiguous) input is copied once; contiguous input is read in place.
    let owned;
    let slice = match view.as_slice() {
        Some(s) => s,
        None => {
            owned = view.to_vec();
            &owned[..]
        }
    };
    Ok(py.detach(|| astrobio_core::reduce::nan_mean(slice).unwrap_or(f64::NAN)))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(build_profile, m)?)?;
    m.add_function(wrap_pyfunction!(nanmean, m)?)?;
    Ok(())
}
