//! The datacube layout shared by every operation.
//!
//! A cube is a C-contiguous array whose last four axes are `(var, lev, lat, lon)`; all axes in
//! front of them are samples (time, ensemble, batch) and are flattened into one. Arrays with
//! fewer than four axes are right-aligned: a 3-D array is `(lev, lat, lon)` of one variable and
//! a 2-D array is one `(lat, lon)` field. Surface fields with several variables get a length-1
//! level axis (`x[..., None, :, :]` in NumPy).

use std::fmt;
use std::ops::Range;

/// Elements per parallel task: large enough to amortise scheduling, small enough (128-256 KiB)
/// that a task's working set stays in L2 and two threads stay balanced.
pub const CHUNK: usize = 1 << 15;

/// The logical shape of a cube: samples x var x lev x lat x lon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub samples: usize,
    pub vars: usize,
    pub levs: usize,
    pub lats: usize,
    pub lons: usize,
}

/// A caller mistake (bad shape, bad parameter). The Python binding turns it into ValueError.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CubeError(pub String);

impl fmt::Display for CubeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CubeError {}

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T, CubeError> {
    Err(CubeError(msg.into()))
}

impl Dims {
    pub fn new(samples: usize, vars: usize, levs: usize, lats: usize, lons: usize) -> Dims {
        Dims {
            samples,
            vars,
            levs,
            lats,
            lons,
        }
    }

    /// Dims of an array of `shape` (2 to 7 axes, right-aligned on `(var, lev, lat, lon)`).
    pub fn from_shape(shape: &[usize]) -> Result<Dims, CubeError> {
        let n = shape.len();
        if !(2..=7).contains(&n) {
            return err(format!(
                "data must have 2 to 7 dimensions (..., var, lev, lat, lon), got {n}"
            ));
        }
        let at = |k: usize| if n >= k { shape[n - k] } else { 1 };
        let Some(samples) = checked_product(&shape[..n.saturating_sub(4)]) else {
            return err(format!("data shape {shape:?} is too large"));
        };
        let dims = Dims::new(samples, at(4), at(3), at(2), at(1));
        dims.len()?;
        Ok(dims)
    }

    /// Elements of one (lat, lon) field.
    pub fn plane(&self) -> usize {
        self.lats * self.lons
    }

    /// Elements of one variable of one sample: lev x lat x lon.
    pub fn block(&self) -> usize {
        self.levs * self.plane()
    }

    /// Total elements, or an error when the product overflows.
    pub fn len(&self) -> Result<usize, CubeError> {
        [self.vars, self.levs, self.lats, self.lons]
            .iter()
            .try_fold(self.samples, |acc, &d| acc.checked_mul(d))
            .map_or_else(|| err("data shape is too large"), Ok)
    }

    pub fn is_empty(&self) -> bool {
        self.len().map_or(true, |n| n == 0)
    }

    /// Checks that a buffer called `what` holds exactly this cube.
    pub fn check(&self, what: &str, len: usize) -> Result<(), CubeError> {
        let want = self.len()?;
        if want != len {
            return err(format!(
                "{what} has {len} elements, the shape {self:?} needs {want}"
            ));
        }
        Ok(())
    }
}

/// The product of `xs` (1 when empty), or `None` when it overflows.
pub fn checked_product(xs: &[usize]) -> Option<usize> {
    xs.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Calls `f(var, range)` for each maximal piece of the flat range `start..start + len` that
/// lies inside one (sample, var) block; `range` is relative to `start`.
#[inline]
pub(crate) fn segments(
    start: usize,
    len: usize,
    block: usize,
    vars: usize,
    mut f: impl FnMut(usize, Range<usize>),
) {
    let end = start + len;
    let mut pos = start;
    while pos < end {
        let b = pos / block;
        let stop = ((b + 1) * block).min(end);
        f(b % vars, (pos - start)..(stop - start));
        pos = stop;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_right_aligned() {
        assert_eq!(Dims::from_shape(&[3, 4]).unwrap(), Dims::new(1, 1, 1, 3, 4));
        assert_eq!(
            Dims::from_shape(&[2, 3, 4]).unwrap(),
            Dims::new(1, 1, 2, 3, 4)
        );
        assert_eq!(
            Dims::from_shape(&[5, 6, 7, 2, 3, 4]).unwrap(),
            Dims::new(30, 7, 2, 3, 4)
        );
        assert!(Dims::from_shape(&[4]).is_err());
        assert!(Dims::from_shape(&[1; 8]).is_err());
        assert!(Dims::from_shape(&[usize::MAX, 2, 1, 1, 1]).is_err());
        // the sample axes' product is checked too (it used to wrap to 0 samples)
        assert!(Dims::from_shape(&[1 << 32, 1 << 32, 1, 1, 1, 1]).is_err());
        assert!(Dims::from_shape(&[1 << 40, 1 << 40, 0, 1, 1, 1]).is_err());
        assert_eq!(checked_product(&[]), Some(1));
        assert_eq!(checked_product(&[usize::MAX, 2]), None);
    }

    #[test]
    fn segments_split_at_block_edges() {
        let mut got = vec![];
        segments(3, 7, 4, 2, |v, r| got.push((v, r)));
        assert_eq!(got, vec![(0, 0..1), (1, 1..5), (0, 5..7)]);
    }
}
