//! Normalisation with given statistics, fused with filling missing values and a validity mask.
//!
//! One pass: read x, write `(x - mean) / std` (or its inverse) and optionally a mask byte.
//! Missing means non-finite: NaN, +inf and -inf all get the fill (NaN with `Fill::Keep`) and
//! mask false, as in the statistics, which skip them.
//! The fill value is given in the units of the input: raw units for `normalize`, normalised
//! units for `denormalize`; `Fill::Mean` is the variable mean (0 after normalising).

use rayon::prelude::*;

use crate::cube::{err, segments, CubeError, Dims, CHUNK};
use crate::elem::Elem;
use crate::simd::{dispatch, prefetch, PREFETCH};

/// What a missing (non-finite: NaN, ±inf) input value becomes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    /// NaN (an infinity becomes NaN too: it is missing, not a value).
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

/// `y = (x - shift) * scale + offset`, and a non-finite input (NaN, ±inf) gives `fill`.
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
        if !v.is_finite() {
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

/// Outputs at least this large are written with streaming (non-temporal) stores.
pub const STREAM_BYTES: usize = 32 << 20;

/// Elements per prefetch: one 64-byte line of f32 (the f64 case prefetches twice).
const LINE: usize = 16;

#[inline(always)]
pub(crate) fn piece_generic<T: Elem>(xs: &[T], out: &mut [T], p: Affine) {
    for (k, (o, x)) in out.chunks_mut(LINE).zip(xs.chunks(LINE)).enumerate() {
        prefetch(xs, k * LINE + PREFETCH);
        prefetch(xs, k * LINE + PREFETCH + LINE / 2);
        for (o, &x) in o.iter_mut().zip(x) {
            let v = x.to_f64();
            let y = (v - p.shift) * p.scale + p.offset;
            *o = T::from_f64(if v.is_finite() { y } else { p.fill });
        }
    }
}

/// Like `piece_generic`, but writes whole 64-byte lines of `out` with non-temporal stores.
///
/// A normal store first reads the destination line into cache (read-for-ownership), so a
/// read-one-write-one pass moves three bytes per byte written; `numpy.copyto` (the ceiling
/// in `astrobio bench preprocess`) avoids that with streaming stores, and so does this. Only
/// worth it when `out` is much larger than the caches: [`apply`] decides.
#[inline(always)]
fn piece_stream_generic<T: Elem>(xs: &[T], out: &mut [T], p: Affine) {
    let per_line = 64 / std::mem::size_of::<T>();
    let head = out.as_ptr().align_offset(64).min(out.len());
    let body = (out.len() - head) / per_line * per_line;
    piece_generic(&xs[..head], &mut out[..head], p);
    let (xb, ob) = (&xs[head..head + body], &mut out[head..head + body]);
    let mut line = [T::NAN; 16];
    for (k, (o, x)) in ob
        .chunks_exact_mut(per_line)
        .zip(xb.chunks_exact(per_line))
        .enumerate()
    {
        prefetch(xb, k * per_line + PREFETCH);
        for (y, &x) in line[..per_line].iter_mut().zip(x) {
            let v = x.to_f64();
            let r = (v - p.shift) * p.scale + p.offset;
            *y = T::from_f64(if v.is_finite() { r } else { p.fill });
        }
        stream_line(o, &line);
    }
    piece_generic(&xs[head + body..], &mut out[head + body..], p);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a store fence has no preconditions; it orders the streaming stores above
    // before whatever synchronises this thread with the caller (rayon's join).
    #[allow(unused_unsafe)]
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// Copies the first 64 bytes of `line` to the 64-byte-aligned `out` with streaming stores.
#[inline(always)]
fn stream_line<T: Elem>(out: &mut [T], line: &[T; 16]) {
    debug_assert!(std::mem::size_of_val(out) == 64 && out.as_ptr().align_offset(64) == 0);
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
        let src = line.as_ptr() as *const __m128i;
        let dst = out.as_mut_ptr() as *mut __m128i;
        for i in 0..4 {
            // SAFETY: `out` is 64 bytes, 64-byte aligned (checked by the caller's split), and
            // `line` holds at least 64 bytes; unaligned loads, aligned streaming stores.
            #[allow(unused_unsafe)]
            unsafe {
                _mm_stream_si128(dst.add(i), _mm_loadu_si128(src.add(i)))
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    out.copy_from_slice(&line[..out.len()]);
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
            let ok = v.is_finite();
            let y = (v - p.shift) * p.scale + p.offset;
            *o = T::from_f64(if ok { y } else { p.fill });
            *m = ok;
        }
    }
}

dispatch!(fn piece<T: Elem>(xs: &[T], out: &mut [T], p: Affine) -> () => piece_generic);
dispatch!(fn piece_stream<T: Elem>(xs: &[T], out: &mut [T], p: Affine) -> () => piece_stream_generic);
dispatch!(fn piece_mask<T: Elem>(xs: &[T], out: &mut [T], mask: &mut [bool], p: Affine) -> () => piece_mask_generic);

/// Applies one [`Affine`] per variable to `data`, writing `out` and, when given, `mask`
/// (true where the input was finite).
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
    // Streaming stores pay off once the output is far larger than the caches.
    let stream = std::mem::size_of_val(out) >= STREAM_BYTES;
    match mask {
        None => out
            .par_chunks_mut(CHUNK)
            .zip(data.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(t, (o, x))| {
                segments(t * CHUNK, x.len(), block, vars, |v, r| {
                    if stream {
                        piece_stream(&x[r.clone()], &mut o[r], params[v]);
                    } else {
                        piece(&x[r.clone()], &mut o[r], params[v]);
                    }
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

/// `normalize` or `denormalize` with per-variable `mean` and `std`, filling missing values.
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
    fn infinities_are_missing_like_nan() {
        let dims = Dims::new(1, 1, 1, 1, 4);
        let data = [f32::INFINITY, 3.0, f32::NEG_INFINITY, f32::NAN];
        for (fill, want) in [(Fill::Value(0.0), -2.0), (Fill::Mean, 0.0)] {
            let mut out = [9.0f32; 4];
            let mut mask = [true; 4];
            let p = affine_params(&[2.0], &[1.0], fill, Direction::Normalize).unwrap();
            apply(&data, dims, &p, &mut out, Some(&mut mask)).unwrap();
            assert_eq!(out, [want, 1.0, want, want]);
            assert_eq!(mask, [false, true, false, false]);
            // the unmasked and streaming kernels agree
            let mut plain = [9.0f32; 4];
            apply(&data, dims, &p, &mut plain, None).unwrap();
            assert_eq!(plain, out);
            let mut streamed = [9.0f32; 4];
            piece_stream(&data, &mut streamed, p[0]);
            assert_eq!(streamed, out);
        }
        let p = affine_params(&[2.0], &[1.0], Fill::Keep, Direction::Denormalize).unwrap();
        let mut out = [0.0f32; 4];
        apply(&data, dims, &p, &mut out, None).unwrap();
        assert!(out[0].is_nan() && out[2].is_nan() && out[3].is_nan());
        assert_eq!(out[1], 5.0);
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
    fn streaming_stores_match_the_formula() {
        // > STREAM_BYTES, and misaligned by 3 elements so head, body and tail all run.
        let n = STREAM_BYTES / 4 + 1001;
        let backing: Vec<f32> = (0..n + 3)
            .map(|i| {
                if i % 13 == 5 {
                    f32::NAN
                } else {
                    (i % 977) as f32 * 0.5
                }
            })
            .collect();
        let data = &backing[3..];
        let dims = Dims::new(1, 2, 1, 1, n / 2);
        let data = &data[..dims.len().unwrap()];
        let p = affine_params(
            &[100.0, -3.0],
            &[7.0, 0.5],
            Fill::Value(1.0),
            Direction::Normalize,
        )
        .unwrap();
        let mut out = vec![0.0f32; data.len() + 5];
        let o = &mut out[5..];
        apply(data, dims, &p, o, None).unwrap();
        for (i, (&x, &y)) in data.iter().zip(o.iter()).enumerate() {
            let want = p[i / (n / 2)].apply(x as f64) as f32;
            assert_eq!(y.to_bits(), want.to_bits(), "element {i}");
        }
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
