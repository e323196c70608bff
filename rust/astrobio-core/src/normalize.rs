//! Normalisation with given statistics, fused with NaN filling and a validity mask.
//!
//! One pass: read x, write `(x - mean) / std` (or its inverse) and optionally a mask byte.
//! The fill value is given in the units of the input: raw units for `normalize`, normalised
//! units for `denormalize`; `Fill::Mean` is the variable mean (0 after normalising).

use rayon::prelude::*;

use crate::cube::{err, segments, CubeError, Dims, CHUNK};
use crate::elem::Elem;
use crate::simd::{dispatch, prefetch, PREFETCH};

/// What a NaN in the input becomes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    /// Stays NaN.
    Keep,
    /// This value, in the input's units.
    Value(f64),
    /// The variable's mean.
    Mean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `(x - mean) / std`
    Normalize,
    /// `x * std + mean`
    Denormalize,
}

/// `y = (x - shift) * scale + offset`, and a NaN input gives `fill`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    pub shift: f64,
    pub scale: f64,
    pub offset: f64,
    pub fill: f64,
}

impl Affine {
    #[inline(always)]
    pub fn apply(&self, v: f64) -> f64 {
        if v.is_nan() {
            self.fill
        } else {
            (v - self.shift) * self.scale + self.offset
        }
    }
}

/// One [`Affine`] per variable; rejects non-finite statistics and `std <= 0`.
pub fn affine_params(
    mean: &[f64],
    std: &[f64],
    fill: Fill,
    direction: Direction,
) -> Result<Vec<Affine>, CubeError> {
    if mean.len() != std.len() {
        return err(format!(
            "mean has {} entries but std has {}",
            mean.len(),
            std.len()
        ));
    }
    if let Fill::Value(v) = fill {
        if !v.is_finite() {
            return err(format!("fill value must be finite, got {v}"));
        }
    }
    mean.iter()
        .zip(std)
        .enumerate()
        .map(|(i, (&m, &s))| {
            if !m.is_finite() {
                return err(format!("mean[{i}] must be finite, got {m}"));
            }
            if !(s.is_finite() && s > 0.0) {
                return err(format!("std[{i}] must be finite and > 0, got {s}"));
            }
            let (shift, scale, offset) = match direction {
                Direction::Normalize => (m, 1.0 / s, 0.0),
                Direction::Denormalize => (0.0, s, m),
            };
            let mut a = Affine {
                shift,
                scale,
                offset,
                fill: f64::NAN,
            };
            a.fill = match (fill, direction) {
                (Fill::Keep, _) => f64::NAN,
                (Fill::Value(v), _) => a.apply(v),
                (Fill::Mean, Direction::Normalize) => 0.0,
                (Fill::Mean, Direction::Denormalize) => m,
            };
            Ok(a)
        })
        .collect()
}

/// Elements per prefetch: one 64-byte line of f32 (the f64 case prefetches twice).
const LINE: usize = 16;

#[inline(always)]
fn piece_generic<T: Elem>(xs: &[T], out: &mut [T], p: Affine) {
    for (k, (o, x)) in out.chunks_mut(LINE).zip(xs.chunks(LINE)).enumerate() {
        prefetch(xs, k * LINE + PREFETCH);
        prefetch(xs, k * LINE + PREFETCH + LINE / 2);
        for (o, &x) in o.iter_mut().zip(x) {
            let v = x.to_f64();
            let y = (v - p.shift) * p.scale + p.offset;
            *o = T::from_f64(if v.is_nan() { p.fill } else { y });
        }
    }
}

#[inline(always)]
fn piece_mask_generic<T: Elem>(xs: &[T], out: &mut [T], mask: &mut [bool], p: Affine) {
    for (k, ((o, m), x)) in out
        .chunks_mut(LINE)
        .zip(mask.chunks_mut(LINE))
        .zip(xs.chunks(LINE))
        .enumerate()
    {
        prefetch(xs, k * LINE + PREFETCH);
        prefetch(xs, k * LINE + PREFETCH + LINE / 2);
        for ((o, m), &x) in o.iter_mut().zip(m.iter_mut()).zip(x) {
            let v = x.to_f64();
            let ok = !v.is_nan();
            let y = (v - p.shift) * p.scale + p.offset;
            *o = T::from_f64(if ok { y } else { p.fill });
            *m = ok;
        }
    }
}

dispatch!(pub(crate) fn piece<T: Elem>(xs: &[T], out: &mut [T], p: Affine) -> () => piece_generic);
dispatch!(fn piece_mask<T: Elem>(xs: &[T], out: &mut [T], mask: &mut [bool], p: Affine) -> () => piece_mask_generic);

/// Applies one [`Affine`] per variable to `data`, writing `out` and, when given, `mask`
/// (true where the input was not NaN).
pub fn apply<T: Elem>(
    data: &[T],
    dims: Dims,
    params: &[Affine],
    out: &mut [T],
    mask: Option<&mut [bool]>,
) -> Result<(), CubeError> {
    dims.check("data", data.len())?;
    dims.check("out", out.len())?;
    if params.len() != dims.vars {
        return err(format!(
            "stats have {} variables but data has {}",
            params.len(),
            dims.vars
        ));
    }
    if data.is_empty() {
        return Ok(());
    }
    let block = dims.block();
    let vars = dims.vars;
    match mask {
        None => out
            .par_chunks_mut(CHUNK)
            .zip(data.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(t, (o, x))| {
                segments(t * CHUNK, x.len(), block, vars, |v, r| {
                    piece(&x[r.clone()], &mut o[r], params[v]);
                })
            }),
        Some(mask) => {
            dims.check("mask", mask.len())?;
            out.par_chunks_mut(CHUNK)
                .zip(mask.par_chunks_mut(CHUNK))
                .zip(data.par_chunks(CHUNK))
                .enumerate()
                .for_each(|(t, ((o, m), x))| {
                    segments(t * CHUNK, x.len(), block, vars, |v, r| {
                        piece_mask(&x[r.clone()], &mut o[r.clone()], &mut m[r], params[v]);
                    })
                })
        }
    }
    Ok(())
}

/// `normalize` or `denormalize` with per-variable `mean` and `std`, filling NaN.
#[allow(clippy::too_many_arguments)]
pub fn normalize<T: Elem>(
    data: &[T],
    dims: Dims,
    mean: &[f64],
    std: &[f64],
    fill: Fill,
    direction: Direction,
    out: &mut [T],
    mask: Option<&mut [bool]>,
) -> Result<(), CubeError> {
    let params = affine_params(mean, std, fill, direction)?;
    apply(data, dims, &params, out, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_fills_and_masks() {
        let dims = Dims::new(1, 2, 1, 1, 3);
        let data = [1.0f32, f32::NAN, 3.0, 10.0, 20.0, f32::NAN];
        let mut out = [0.0f32; 6];
        let mut mask = [false; 6];
        normalize(
            &data,
            dims,
            &[2.0, 15.0],
            &[1.0, 5.0],
            Fill::Value(0.0),
            Direction::Normalize,
            &mut out,
            Some(&mut mask),
        )
        .unwrap();
        assert_eq!(out, [-1.0, -2.0, 1.0, -1.0, 1.0, -3.0]);
        assert_eq!(mask, [true, false, true, true, true, false]);
    }

    #[test]
    fn denormalize_inverts_and_fills_with_mean() {
        let dims = Dims::new(2, 1, 1, 1, 2);
        let data = [-1.0f64, f64::NAN, 0.5, 2.0];
        let mut out = [0.0; 4];
        normalize(
            &data,
            dims,
            &[10.0],
            &[4.0],
            Fill::Mean,
            Direction::Denormalize,
            &mut out,
            None,
        )
        .unwrap();
        assert_eq!(out, [6.0, 10.0, 12.0, 18.0]);
    }

    #[test]
    fn bad_stats_are_errors() {
        let f = |m: f64, s: f64| affine_params(&[m], &[s], Fill::Keep, Direction::Normalize);
        assert!(f(f64::NAN, 1.0).is_err());
        assert!(f(0.0, 0.0).is_err());
        assert!(f(0.0, f64::INFINITY).is_err());
        assert!(f(0.0, 1.0).is_ok());
        let mut out = [0.0f32; 2];
        let e = apply(
            &[1.0f32, 2.0],
            Dims::new(1, 2, 1, 1, 1),
            &f(0.0, 1.0).unwrap(),
            &mut out,
            None,
        );
        assert!(e.unwrap_err().0.contains("variables"));
    }
}
