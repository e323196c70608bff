//! Thin PyO3 wrappers over `astrobio-core`, built by maturin into `astrobio_cli._native`.
//!
//! Each wrapper validates its input, releases the GIL for the computation and turns
//! errors into Python exceptions; no panic is allowed to cross into Python. The binding is safe
//! on its own, without the checks of `astrobio_cli.datacube`: every size is computed in checked
//! arithmetic (in `astrobio-core`), `threads` is bounded (4x the logical cores) before a thread
//! starts, and a number out of range (a huge Python int, a negative size) is a ValueError
//! naming the argument, a wrong type a TypeError, as the stubs promise (never OverflowError).
//!
//! Arrays must be C-contiguous, native-endian float32 or float64 (`astrobio_cli.datacube`
//! copies anything else before calling in); outputs are allocated by the caller and passed as
//! `out`, so a benchmark can reuse them and nothing here allocates a large buffer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use astrobio_core::cube::{checked_product, CubeError, Dims};
use astrobio_core::elem::Elem;
use astrobio_core::normalize::{Direction, Fill};
use astrobio_core::patches::PatchSpec;
use astrobio_core::threads::{logical_cores, max_threads as thread_bound, resolve};
use astrobio_core::{augment, normalize as norm, patches as tiles, regrid as grid, stats as st};
use numpy::{
    Element, PyArrayDyn, PyArrayMethods, PyReadonlyArray1, PyReadonlyArrayDyn, PyReadwriteArrayDyn,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};
use pyo3::Borrowed;
use rayon::ThreadPool;

/// The build profile the extension was compiled with ("release" or "debug").
#[pyfunction]
fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// The most threads an operation accepts: 4x the logical cores this process may use.
#[pyfunction]
fn max_threads() -> usize {
    thread_bound()
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

// -- plumbing ---------------------------------------------------------------------------------

/// One rayon pool per requested thread count, built on first use and kept (pools are cheap to
/// keep and slow to build). 0 means all cores (`available_parallelism`); more than
/// [`max_threads`] is a ValueError, raised before any thread starts.
///
/// Fork safety: a forked child (a PyTorch DataLoader worker, multiprocessing) inherits the
/// registry but not the pools' threads, so a job sent to an inherited pool would wait forever.
/// The registry therefore remembers the process id that built it; a child that finds another
/// one leaks the inherited pools (dropping them would signal threads that do not exist) and
/// builds its own. For the same reason rayon's global pool is never used: it cannot be rebuilt.
/// `pool` runs while the caller holds the GIL, and fork happens from a thread holding it, so no
/// other thread can hold the registry lock at the moment of a fork.
fn pool(threads: Threads) -> PyResult<Arc<ThreadPool>> {
    type Registry = (u32, HashMap<usize, Arc<ThreadPool>>);
    static POOLS: Mutex<Option<Registry>> = Mutex::new(None);
    let threads = resolve(threads.0, logical_cores()).map_err(|e| PyValueError::new_err(e.0))?;
    let pid = std::process::id();
    let mut guard = POOLS
        .lock()
        .map_err(|_| PyValueError::new_err("thread pool registry is poisoned"))?;
    if guard.as_ref().is_some_and(|(owner, _)| *owner != pid) {
        std::mem::forget(guard.take()); // inherited across fork: its threads are gone
    }
    let (_, pools) = guard.get_or_insert_with(|| (pid, HashMap::new()));
    if let Some(p) = pools.get(&threads) {
        return Ok(p.clone());
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| PyValueError::new_err(format!("threads={threads}: {e}")))?;
    let p = Arc::new(p);
    pools.insert(threads, p.clone());
    Ok(p)
}

/// Runs `f` without the GIL on the pool for `threads`, mapping a CubeError to ValueError.
fn run<R: Send>(
    py: Python<'_>,
    threads: Threads,
    f: impl FnOnce() -> Result<R, CubeError> + Send,
) -> PyResult<R> {
    let pool = pool(threads)?;
    py.detach(|| pool.install(f))
        .map_err(|e| PyValueError::new_err(e.0))
}

/// `repr(obj)`, shortened: a huge int has thousands of digits.
fn shown(obj: &Bound<'_, PyAny>) -> String {
    let r = obj
        .repr()
        .map_or_else(|_| "?".to_string(), |r| r.to_string());
    if r.chars().count() <= 40 {
        return r;
    }
    let head: String = r.chars().take(24).collect();
    format!("{head}... ({} characters)", r.chars().count())
}

/// The error for argument `name` that failed to convert (PyO3 raised `e`): OverflowError (a
/// Python int out of the Rust type's range) and ValueError become ValueError, anything else
/// TypeError; both say what `name` must be.
fn arg_error(obj: &Bound<'_, PyAny>, name: &str, want: &str, e: PyErr) -> PyErr {
    let py = obj.py();
    if e.is_instance_of::<PyOverflowError>(py) || e.is_instance_of::<PyValueError>(py) {
        PyValueError::new_err(format!("{name} must be {want}, got {}", shown(obj)))
    } else {
        PyTypeError::new_err(format!("{name} must be {want}, got {}", describe(obj)))
    }
}

/// Defines an argument type converting like `$inner` but failing as [`arg_error`] says.
macro_rules! number_arg {
    ($(#[$m:meta])* $ty:ident($inner:ty), $name:literal, $want:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug)]
        struct $ty($inner);

        impl<'a, 'py> FromPyObject<'a, 'py> for $ty {
            type Error = PyErr;

            fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
                obj.extract::<$inner>()
                    .map(Self)
                    .map_err(|e| arg_error(&obj, $name, &$want, e))
            }
        }
    };
}

number_arg!(
    /// `threads`: an integer >= 0 (0: one per core). [`Threads::checked`] bounds it by
    /// [`max_threads`] first thing in every function, and [`pool`] checks again.
    Threads(usize),
    "threads",
    format!("an integer from 0 (one per core) to {}", thread_bound())
);
number_arg!(Shift(i64), "shift", "an integer that fits 64 bits (signed)");
number_arg!(Seed(u64), "seed", "an integer in [0, 2**64)");
number_arg!(
    PadValue(f64),
    "pad_value",
    "a number within the float64 range"
);
number_arg!(NoiseStd(f64), "std", "a number within the float64 range");

impl Threads {
    /// Rejects a count above the bound at conversion, before anything else runs.
    fn checked(self) -> PyResult<Self> {
        resolve(self.0, logical_cores()).map_err(|e| PyValueError::new_err(e.0))?;
        Ok(self)
    }
}

/// A list of float64 `name` (mean, std, coordinates): each item named on error.
fn floats(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<f64>> {
    let items: Vec<Bound<'_, PyAny>> = if obj.is_instance_of::<PyString>() {
        Err(PyTypeError::new_err("str"))
    } else {
        obj.extract()
    }
    .map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be a sequence of numbers, got {}",
            describe(obj)
        ))
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, x)| {
            x.extract::<f64>().map_err(|e| {
                arg_error(
                    x,
                    &format!("{name}[{i}]"),
                    "a number within the float64 range",
                    e,
                )
            })
        })
        .collect()
}

fn describe(obj: &Bound<'_, PyAny>) -> String {
    match obj.cast::<numpy::PyUntypedArray>() {
        Ok(a) => match a.dtype().str() {
            Ok(s) => format!("an array of dtype {s}"),
            Err(_) => "an array".into(),
        },
        Err(_) => match obj.get_type().name() {
            Ok(n) => format!("{n}"),
            Err(_) => "an object".into(),
        },
    }
}

/// Calls `$f::<T>(array, args...)` with T the dtype of `$data` (float32 or float64).
macro_rules! by_dtype {
    ($data:expr, $f:ident($($arg:expr),*)) => {{
        let data: &Bound<'_, PyAny> = $data;
        if let Ok(a) = data.cast::<PyArrayDyn<f32>>() {
            $f::<f32>(a, $($arg),*)
        } else if let Ok(a) = data.cast::<PyArrayDyn<f64>>() {
            $f::<f64>(a, $($arg),*)
        } else {
            Err(PyTypeError::new_err(format!(
                "data must be a native-endian float32 or float64 NumPy array, got {}",
                describe(data)
            )))
        }
    }};
}

fn read<'py, T: Element>(
    a: &Bound<'py, PyArrayDyn<T>>,
    name: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    let r = a
        .try_readonly()
        .map_err(|e| PyValueError::new_err(format!("{name}: {e}")))?;
    if !r.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{name} must be C-contiguous (astrobio_cli.datacube copies strided input)"
        )));
    }
    Ok(r)
}

fn write<'py, T: Element>(
    obj: &Bound<'py, PyAny>,
    name: &str,
    dtype: &str,
) -> PyResult<PyReadwriteArrayDyn<'py, T>> {
    let a = obj.cast::<PyArrayDyn<T>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be a writable {dtype} array, got {}",
            describe(obj)
        ))
    })?;
    let w = a.try_readwrite().map_err(|e| {
        PyValueError::new_err(format!(
            "{name} must be writable and must not share memory with the input: {e}"
        ))
    })?;
    if !w.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{name} must be C-contiguous"
        )));
    }
    Ok(w)
}

fn same_shape(name: &str, got: &[usize], want: &[usize]) -> PyResult<()> {
    if got != want {
        return Err(PyValueError::new_err(format!(
            "{name} has shape {got:?}, expected {want:?}"
        )));
    }
    Ok(())
}

fn dims_of(shape: &[usize]) -> PyResult<Dims> {
    Dims::from_shape(shape).map_err(|e| PyValueError::new_err(e.0))
}

fn dtype_name<T: Element>() -> &'static str {
    if std::mem::size_of::<T>() == 4 {
        "float32"
    } else {
        "float64"
    }
}

fn parse_fill(fill: Option<&Bound<'_, PyAny>>) -> PyResult<Fill> {
    let Some(f) = fill else {
        return Ok(Fill::Keep);
    };
    if f.is_none() {
        return Ok(Fill::Keep);
    }
    if let Ok(s) = f.cast::<PyString>() {
        return match s.to_str()? {
            "mean" => Ok(Fill::Mean),
            other => Err(PyValueError::new_err(format!(
                "fill must be None, 'mean' or a number, got {other:?}"
            ))),
        };
    }
    let v: f64 = f.extract().map_err(|e| {
        arg_error(
            f,
            "fill",
            "None, 'mean' or a number within the float64 range",
            e,
        )
    })?;
    Ok(Fill::Value(v))
}

const SPEC_FIELDS: [&str; 7] = [
    "lev",
    "lev_stride",
    "lat",
    "lon",
    "lat_stride",
    "lon_stride",
    "lat_pad",
];

/// `spec`: a tuple (lev, lev_stride, lat, lon, lat_stride, lon_stride, lat_pad) of integers
/// >= 0. Only the types and ranges are checked here; `PatchSpec::grid` checks the sizes.
#[derive(Clone, Copy, Debug)]
struct Spec(PatchSpec);

impl<'a, 'py> FromPyObject<'a, 'py> for Spec {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let fields = SPEC_FIELDS.join(", ");
        let t = obj.cast::<PyTuple>().map_err(|_| {
            PyTypeError::new_err(format!(
                "spec must be a tuple of 7 integers ({fields}), got {}",
                describe(&obj)
            ))
        })?;
        if t.len() != 7 {
            return Err(PyValueError::new_err(format!(
                "spec must have 7 entries ({fields}), got {}",
                t.len()
            )));
        }
        let mut v = [0usize; 7];
        for (i, item) in t.iter().enumerate() {
            v[i] = item.extract::<usize>().map_err(|e| {
                let name = format!("spec[{i}] ({})", SPEC_FIELDS[i]);
                arg_error(&item, &name, "an integer in [0, 2**64)", e)
            })?;
        }
        Ok(Spec(PatchSpec {
            lev: v[0],
            lev_stride: v[1],
            lat: v[2],
            lon: v[3],
            lat_stride: v[4],
            lon_stride: v[5],
            lat_pad: v[6],
        }))
    }
}

fn patch_shape(shape: &[usize], dims: &Dims, spec: &PatchSpec) -> PyResult<Vec<usize>> {
    let ve = |e: CubeError| PyValueError::new_err(e.0);
    let g = spec.grid(dims).map_err(ve)?;
    let lead = &shape[..shape.len().saturating_sub(4)];
    let mut want = lead.to_vec();
    want.extend([
        g.tiles().map_err(ve)?,
        dims.vars,
        g.lev_size,
        spec.lat,
        spec.lon,
    ]);
    Ok(want)
}

// -- operations -------------------------------------------------------------------------------

type StatsOut = (Vec<u64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);

fn stats_t<T: Elem + Element>(
    a: &Bound<'_, PyArrayDyn<T>>,
    threads: Threads,
) -> PyResult<StatsOut> {
    let r = read(a, "data")?;
    let dims = dims_of(r.shape())?;
    let xs = r.as_slice()?;
    let st = run(a.py(), threads, || st::stats(xs, dims))?;
    Ok((
        st.iter().map(|s| s.count()).collect(),
        st.iter().map(|s| s.mean()).collect(),
        st.iter().map(|s| s.std()).collect(),
        st.iter().map(|s| s.min()).collect(),
        st.iter().map(|s| s.max()).collect(),
    ))
}

/// Per-variable (count, mean, std, min, max) of the finite values (NaN and ±inf are
/// missing), as five lists.
#[pyfunction]
#[pyo3(signature = (data, threads = Threads(0)), text_signature = "(data, threads=0)")]
fn stats(data: &Bound<'_, PyAny>, threads: Threads) -> PyResult<StatsOut> {
    let threads = threads.checked()?;
    by_dtype!(data, stats_t(threads))
}

fn mask_of<'py>(
    mask: Option<&Bound<'py, PyAny>>,
    shape: &[usize],
) -> PyResult<Option<PyReadwriteArrayDyn<'py, bool>>> {
    match mask {
        Some(m) if !m.is_none() => {
            let w = write::<bool>(m, "mask", "bool")?;
            same_shape("mask", w.shape(), shape)?;
            Ok(Some(w))
        }
        _ => Ok(None),
    }
}

#[allow(clippy::too_many_arguments)]
fn pipeline_t<T: Elem + Element>(
    a: &Bound<'_, PyArrayDyn<T>>,
    out: &Bound<'_, PyAny>,
    mean: Vec<f64>,
    std: Vec<f64>,
    fill: Fill,
    direction: Direction,
    spec: Option<Spec>,
    mask: Option<&Bound<'_, PyAny>>,
    threads: Threads,
) -> PyResult<()> {
    let r = read(a, "data")?;
    let dims = dims_of(r.shape())?;
    let mut w = write::<T>(out, "out", dtype_name::<T>())?;
    let want = match spec {
        None => r.shape().to_vec(),
        Some(s) => patch_shape(r.shape(), &dims, &s.0)?,
    };
    same_shape("out", w.shape(), &want)?;
    let mut m = mask_of(mask, &want)?;
    if mean.len() != dims.vars || std.len() != dims.vars {
        return Err(PyValueError::new_err(format!(
            "stats have {} means and {} stds but data has {} variables",
            mean.len(),
            std.len(),
            dims.vars
        )));
    }
    let params = norm::affine_params(&mean, &std, fill, direction)
        .map_err(|e| PyValueError::new_err(format!("stats: {e}")))?;
    let xs = r.as_slice()?;
    let o = w.as_slice_mut()?;
    let mk = match m.as_mut() {
        Some(m) => Some(m.as_slice_mut()?),
        None => None,
    };
    run(a.py(), threads, || match spec {
        None => norm::apply(xs, dims, &params, o, mk),
        Some(s) => tiles::patches(xs, dims, s.0, Some(&params), T::NAN, o, mk),
    })
}

/// `(x - mean) / std` (or `x * std + mean` with inverse=True) per variable into `out`;
/// missing values (non-finite: NaN, ±inf) become `fill` (None: NaN, 'mean', or a number in the
/// input's units); `mask` (bool, same shape) gets True where the input was finite.
#[pyfunction]
#[pyo3(signature = (data, out, mean, std, fill = None, inverse = false, mask = None, threads = Threads(0)), text_signature = "(data, out, mean, std, fill=None, inverse=False, mask=None, threads=0)")]
#[allow(clippy::too_many_arguments)]
fn normalize(
    data: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    mean: &Bound<'_, PyAny>,
    std: &Bound<'_, PyAny>,
    fill: Option<&Bound<'_, PyAny>>,
    inverse: bool,
    mask: Option<&Bound<'_, PyAny>>,
    threads: Threads,
) -> PyResult<()> {
    let threads = threads.checked()?;
    let (mean, std) = (floats(mean, "mean")?, floats(std, "std")?);
    let fill = parse_fill(fill)?;
    let direction = if inverse {
        Direction::Denormalize
    } else {
        Direction::Normalize
    };
    by_dtype!(
        data,
        pipeline_t(out, mean, std, fill, direction, None, mask, threads)
    )
}

/// The pipeline's write pass: normalise + fill, then cut patches (spec, or none), in one pass.
/// spec = (lev, lev_stride, lat, lon, lat_stride, lon_stride, lat_pad); lev 0 = all levels.
#[pyfunction]
#[pyo3(signature = (data, out, mean, std, fill = None, spec = None, mask = None, threads = Threads(0)), text_signature = "(data, out, mean, std, fill=None, spec=None, mask=None, threads=0)")]
#[allow(clippy::too_many_arguments)]
fn pipeline(
    data: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    mean: &Bound<'_, PyAny>,
    std: &Bound<'_, PyAny>,
    fill: Option<&Bound<'_, PyAny>>,
    spec: Option<Spec>,
    mask: Option<&Bound<'_, PyAny>>,
    threads: Threads,
) -> PyResult<()> {
    let threads = threads.checked()?;
    let (mean, std) = (floats(mean, "mean")?, floats(std, "std")?);
    let fill = parse_fill(fill)?;
    by_dtype!(
        data,
        pipeline_t(
            out,
            mean,
            std,
            fill,
            Direction::Normalize,
            spec,
            mask,
            threads
        )
    )
}

fn patches_t<T: Elem + Element>(
    a: &Bound<'_, PyArrayDyn<T>>,
    out: &Bound<'_, PyAny>,
    spec: Spec,
    pad_value: f64,
    threads: Threads,
) -> PyResult<()> {
    let r = read(a, "data")?;
    let dims = dims_of(r.shape())?;
    let spec = spec.0;
    let mut w = write::<T>(out, "out", dtype_name::<T>())?;
    same_shape("out", w.shape(), &patch_shape(r.shape(), &dims, &spec)?)?;
    let xs = r.as_slice()?;
    let o = w.as_slice_mut()?;
    let pad = T::from_f64(pad_value);
    run(a.py(), threads, || {
        tiles::patches(xs, dims, spec, None, pad, o, None)
    })
}

/// Tiles of (lev, lat, lon) into `out` of shape (..., tiles, var, lev_size, lat, lon).
#[pyfunction]
#[pyo3(signature = (data, out, spec, pad_value = PadValue(f64::NAN), threads = Threads(0)), text_signature = "(data, out, spec, pad_value=..., threads=0)")]
fn patches(
    data: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    spec: Spec,
    pad_value: PadValue,
    threads: Threads,
) -> PyResult<()> {
    let threads = threads.checked()?;
    by_dtype!(data, patches_t(out, spec, pad_value.0, threads))
}

/// The shape of (lat, lon) fields of `shape`, and how many there are.
fn fields(shape: &[usize], name: &str) -> PyResult<(usize, usize, usize)> {
    let n = shape.len();
    if n < 2 {
        return Err(PyValueError::new_err(format!(
            "{name} must have at least 2 dimensions (..., lat, lon), got {n}"
        )));
    }
    let planes = checked_product(&shape[..n - 2])
        .ok_or_else(|| PyValueError::new_err(format!("{name} shape {shape:?} is too large")))?;
    Ok((planes, shape[n - 2], shape[n - 1]))
}

#[allow(clippy::too_many_arguments)]
fn regrid_t<T: Elem + Element>(
    a: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    src_lat: Vec<f64>,
    src_lon: Vec<f64>,
    dst_lat: Vec<f64>,
    dst_lon: Vec<f64>,
    threads: Threads,
) -> PyResult<()> {
    let a = a.cast::<PyArrayDyn<T>>()?;
    let r = read(a, "data")?;
    let (planes, ny, nx) = fields(r.shape(), "data")?;
    if (ny, nx) != (src_lat.len(), src_lon.len()) {
        return Err(PyValueError::new_err(format!(
            "data's (lat, lon) is ({ny}, {nx}) but src_lat has {} and src_lon {} points",
            src_lat.len(),
            src_lon.len()
        )));
    }
    let mut w = write::<T>(out, "out", dtype_name::<T>())?;
    let mut want = r.shape().to_vec();
    let n = want.len();
    want[n - 2] = dst_lat.len();
    want[n - 1] = dst_lon.len();
    same_shape("out", w.shape(), &want)?;
    let wl = grid::lat_weights(&src_lat, &dst_lat).map_err(|e| PyValueError::new_err(e.0))?;
    let wx = grid::lon_weights(&src_lon, &dst_lon).map_err(|e| PyValueError::new_err(e.0))?;
    let xs = r.as_slice()?;
    let o = w.as_slice_mut()?;
    run(a.py(), threads, || {
        grid::regrid(xs, planes, ny, nx, &wl, &wx, o)
    })
}

/// Bilinear regridding (periodic longitude; missing = non-finite neighbours dropped) of
/// (..., lat, lon) into `out`.
#[pyfunction]
#[pyo3(signature = (data, out, src_lat, src_lon, dst_lat, dst_lon, threads = Threads(0)), text_signature = "(data, out, src_lat, src_lon, dst_lat, dst_lon, threads=0)")]
#[allow(clippy::too_many_arguments)]
fn regrid(
    data: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    src_lat: &Bound<'_, PyAny>,
    src_lon: &Bound<'_, PyAny>,
    dst_lat: &Bound<'_, PyAny>,
    dst_lon: &Bound<'_, PyAny>,
    threads: Threads,
) -> PyResult<()> {
    let threads = threads.checked()?;
    let src_lat = floats(src_lat, "src_lat")?;
    let src_lon = floats(src_lon, "src_lon")?;
    let dst_lat = floats(dst_lat, "dst_lat")?;
    let dst_lon = floats(dst_lon, "dst_lon")?;
    if data.cast::<PyArrayDyn<f32>>().is_ok() {
        regrid_t::<f32>(data, out, src_lat, src_lon, dst_lat, dst_lon, threads)
    } else if data.cast::<PyArrayDyn<f64>>().is_ok() {
        regrid_t::<f64>(data, out, src_lat, src_lon, dst_lat, dst_lon, threads)
    } else {
        Err(PyTypeError::new_err(format!(
            "data must be a native-endian float32 or float64 NumPy array, got {}",
            describe(data)
        )))
    }
}

#[derive(Clone, Copy)]
enum Augment {
    FlipLat,
    RollLon(i64),
    Noise(f64, u64),
}

fn augment_t<T: Elem + Element>(
    a: &Bound<'_, PyArrayDyn<T>>,
    out: &Bound<'_, PyAny>,
    op: Augment,
    threads: Threads,
) -> PyResult<()> {
    let r = read(a, "data")?;
    let (_, ny, nx) = fields(r.shape(), "data")?;
    let mut w = write::<T>(out, "out", dtype_name::<T>())?;
    same_shape("out", w.shape(), r.shape())?;
    let xs = r.as_slice()?;
    let o = w.as_slice_mut()?;
    run(a.py(), threads, || match op {
        Augment::FlipLat => augment::flip_lat(xs, ny, nx, o),
        Augment::RollLon(k) => augment::roll_lon(xs, nx, k, o),
        Augment::Noise(std, seed) => augment::add_noise(xs, std, seed, o),
    })
}

/// Reverses the latitude axis (second to last) into `out`.
#[pyfunction]
#[pyo3(signature = (data, out, threads = Threads(0)), text_signature = "(data, out, threads=0)")]
fn flip_lat(data: &Bound<'_, PyAny>, out: &Bound<'_, PyAny>, threads: Threads) -> PyResult<()> {
    let threads = threads.checked()?;
    by_dtype!(data, augment_t(out, Augment::FlipLat, threads))
}

/// `np.roll(data, shift, axis=-1)` into `out`.
#[pyfunction]
#[pyo3(signature = (data, out, shift, threads = Threads(0)), text_signature = "(data, out, shift, threads=0)")]
fn roll_lon(
    data: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    shift: Shift,
    threads: Threads,
) -> PyResult<()> {
    let threads = threads.checked()?;
    by_dtype!(data, augment_t(out, Augment::RollLon(shift.0), threads))
}

/// `data + std * N(0, 1)` into `out`; deviate i depends only on (seed, flat index i).
#[pyfunction]
#[pyo3(signature = (data, out, std, seed, threads = Threads(0)), text_signature = "(data, out, std, seed, threads=0)")]
fn add_noise(
    data: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    std: NoiseStd,
    seed: Seed,
    threads: Threads,
) -> PyResult<()> {
    let threads = threads.checked()?;
    by_dtype!(data, augment_t(out, Augment::Noise(std.0, seed.0), threads))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(build_profile, m)?)?;
    m.add_function(wrap_pyfunction!(max_threads, m)?)?;
    m.add_function(wrap_pyfunction!(nanmean, m)?)?;
    m.add_function(wrap_pyfunction!(stats, m)?)?;
    m.add_function(wrap_pyfunction!(normalize, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline, m)?)?;
    m.add_function(wrap_pyfunction!(patches, m)?)?;
    m.add_function(wrap_pyfunction!(regrid, m)?)?;
    m.add_function(wrap_pyfunction!(flip_lat, m)?)?;
    m.add_function(wrap_pyfunction!(roll_lon, m)?)?;
    m.add_function(wrap_pyfunction!(add_noise, m)?)?;
    Ok(())
}
