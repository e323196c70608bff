//! Bilinear regridding between latitude-longitude grids, periodic in longitude, NaN-aware.
//!
//! Interpolation is bilinear in (lat, lon) degrees. Longitude is periodic (360 degrees), so a
//! target point between the last and the first source longitude interpolates across the date
//! line. A target latitude beyond the outermost source row (toward a pole) takes that row's
//! values. Missing (non-finite: NaN, ±inf) sources are dropped and the remaining weights
//! renormalised; a target point whose neighbours with non-zero weight are all missing is NaN.

use rayon::prelude::*;

use crate::cube::{err, CubeError};
use crate::elem::Elem;

/// For each target coordinate: the two source indices and the weight of the second.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisWeights {
    pub i0: Vec<usize>,
    pub i1: Vec<usize>,
    pub w1: Vec<f64>,
}

fn check_finite(what: &str, xs: &[f64]) -> Result<(), CubeError> {
    match xs.iter().position(|x| !x.is_finite()) {
        Some(i) => err(format!("{what}[{i}] is not finite: {}", xs[i])),
        None => Ok(()),
    }
}

/// Weights along latitude; `src` strictly increasing or strictly decreasing.
pub fn lat_weights(src: &[f64], dst: &[f64]) -> Result<AxisWeights, CubeError> {
    check_finite("src_lat", src)?;
    check_finite("dst_lat", dst)?;
    let n = src.len();
    if n == 0 {
        return err("src_lat is empty");
    }
    let ascending = src.windows(2).all(|w| w[0] < w[1]);
    let descending = src.windows(2).all(|w| w[0] > w[1]);
    if !(ascending || descending) {
        return err("src_lat must be strictly increasing or strictly decreasing");
    }
    let asc: Vec<f64> = if ascending {
        src.to_vec()
    } else {
        src.iter().rev().copied().collect()
    };
    let map = |j: usize| if ascending { j } else { n - 1 - j };
    let mut w = AxisWeights {
        i0: vec![],
        i1: vec![],
        w1: vec![],
    };
    for &t in dst {
        let (j0, j1, w1) = if t <= asc[0] {
            (0, 0, 0.0)
        } else if t >= asc[n - 1] {
            (n - 1, n - 1, 0.0)
        } else {
            let j = asc.partition_point(|&v| v <= t) - 1;
            (j, j + 1, (t - asc[j]) / (asc[j + 1] - asc[j]))
        };
        w.i0.push(map(j0));
        w.i1.push(map(j1));
        w.w1.push(w1);
    }
    Ok(w)
}

/// Weights along longitude (degrees, period 360); `src` strictly increasing, spanning < 360.
pub fn lon_weights(src: &[f64], dst: &[f64]) -> Result<AxisWeights, CubeError> {
    check_finite("src_lon", src)?;
    check_finite("dst_lon", dst)?;
    let n = src.len();
    if n == 0 {
        return err("src_lon is empty");
    }
    if !src.windows(2).all(|w| w[0] < w[1]) || src[n - 1] - src[0] >= 360.0 {
        return err("src_lon must be strictly increasing and span less than 360 degrees");
    }
    let off: Vec<f64> = src.iter().map(|&x| x - src[0]).collect();
    let mut w = AxisWeights {
        i0: vec![],
        i1: vec![],
        w1: vec![],
    };
    for &t in dst {
        let mut u = (t - src[0]).rem_euclid(360.0);
        if u >= 360.0 {
            u = 0.0;
        }
        let j = off.partition_point(|&v| v <= u) - 1;
        let (j1, next) = if j + 1 < n {
            (j + 1, off[j + 1])
        } else {
            (0, 360.0)
        };
        let w1 = if n == 1 {
            0.0
        } else {
            (u - off[j]) / (next - off[j])
        };
        w.i0.push(j);
        w.i1.push(if n == 1 { 0 } else { j1 });
        w.w1.push(w1);
    }
    Ok(w)
}

/// Regrids `planes` fields of `ny x nx` in `data` onto the target grid of `lat` x `lon`.
pub fn regrid<T: Elem>(
    data: &[T],
    planes: usize,
    ny: usize,
    nx: usize,
    lat: &AxisWeights,
    lon: &AxisWeights,
    out: &mut [T],
) -> Result<(), CubeError> {
    let (ty, tx) = (lat.w1.len(), lon.w1.len());
    if planes.checked_mul(ny).and_then(|a| a.checked_mul(nx)) != Some(data.len()) {
        return err(format!(
            "data has {} elements, not {planes} fields of {ny} x {nx}",
            data.len()
        ));
    }
    if planes.checked_mul(ty).and_then(|a| a.checked_mul(tx)) != Some(out.len()) {
        return err(format!(
            "out has {} elements, not {planes} fields of {ty} x {tx}",
            out.len()
        ));
    }
    if lat.i0.iter().chain(&lat.i1).any(|&j| j >= ny)
        || lon.i0.iter().chain(&lon.i1).any(|&i| i >= nx)
    {
        return err("regrid weights index outside the source grid");
    }
    if out.is_empty() {
        return Ok(());
    }
    // One task per output row: rows of one field share nothing, so any split is exact.
    out.par_chunks_mut(tx)
        .enumerate()
        .with_min_len(8)
        .for_each(|(r, row)| {
            let (p, y) = (r / ty, r % ty);
            let field = &data[p * ny * nx..(p + 1) * ny * nx];
            let wy = lat.w1[y];
            let r0 = &field[lat.i0[y] * nx..(lat.i0[y] + 1) * nx];
            let r1 = &field[lat.i1[y] * nx..(lat.i1[y] + 1) * nx];
            for (x, o) in row.iter_mut().enumerate() {
                let wx = lon.w1[x];
                let (i0, i1) = (lon.i0[x], lon.i1[x]);
                let pts = [
                    (r0[i0], (1.0 - wy) * (1.0 - wx)),
                    (r0[i1], (1.0 - wy) * wx),
                    (r1[i0], wy * (1.0 - wx)),
                    (r1[i1], wy * wx),
                ];
                let (mut num, mut den) = (0.0, 0.0);
                for (v, w) in pts {
                    let v = v.to_f64();
                    if w > 0.0 && v.is_finite() {
                        num += w * v;
                        den += w;
                    }
                }
                *o = T::from_f64(if den > 0.0 { num / den } else { f64::NAN });
            }
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_fields_are_reproduced() {
        // f = 2 * lat + 0.5 * lon is bilinear, so interior targets are exact.
        let lat: Vec<f64> = (0..5).map(|i| -60.0 + 30.0 * i as f64).collect();
        let lon: Vec<f64> = (0..8).map(|i| 45.0 * i as f64).collect();
        let data: Vec<f64> = lat
            .iter()
            .flat_map(|&a| lon.iter().map(move |&b| 2.0 * a + 0.5 * b))
            .collect();
        let tlat = [-45.0, 0.0, 10.0];
        let tlon = [10.0, 100.0, 300.0];
        let (wl, wx) = (
            lat_weights(&lat, &tlat).unwrap(),
            lon_weights(&lon, &tlon).unwrap(),
        );
        let mut out = vec![0.0; 9];
        regrid(&data, 1, 5, 8, &wl, &wx, &mut out).unwrap();
        for (k, &v) in out.iter().enumerate() {
            let want = 2.0 * tlat[k / 3] + 0.5 * tlon[k % 3];
            assert!((v - want).abs() < 1e-12, "{k}: {v} {want}");
        }
    }

    #[test]
    fn longitude_wraps_and_latitude_clamps() {
        let lat = [10.0, -10.0]; // descending
        let lon = [0.0, 90.0, 180.0, 270.0];
        let data = [0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0];
        let wl = lat_weights(&lat, &[90.0, 0.0]).unwrap();
        let wx = lon_weights(&lon, &[315.0, -45.0]).unwrap();
        let mut out = vec![0.0; 4];
        regrid(&data, 1, 2, 4, &wl, &wx, &mut out).unwrap();
        assert_eq!(out, [1.5, 1.5, 6.5, 6.5]);
    }

    #[test]
    fn nan_neighbours_are_dropped() {
        let lat = [0.0, 1.0];
        let lon = [0.0, 1.0];
        let data = [1.0f32, f32::NAN, 3.0, f32::NAN];
        let wl = lat_weights(&lat, &[0.5, 0.0]).unwrap();
        let wx = lon_weights(&lon, &[0.5, 1.0]).unwrap();
        let mut out = vec![0.0f32; 4];
        regrid(&data, 1, 2, 2, &wl, &wx, &mut out).unwrap();
        assert_eq!(out[0], 2.0);
        // (0, 1) has NaN on both weighted neighbours; (1, 1) is one NaN point
        assert!(out[1].is_nan() && out[3].is_nan());
        assert_eq!(out[2], 1.0);
    }

    #[test]
    fn infinite_neighbours_are_dropped_like_nan() {
        let lat = [0.0, 1.0];
        let lon = [0.0, 1.0];
        let data = [1.0f64, f64::INFINITY, 3.0, f64::NEG_INFINITY];
        let wl = lat_weights(&lat, &[0.5]).unwrap();
        let wx = lon_weights(&lon, &[0.5, 1.0]).unwrap();
        let mut out = vec![0.0; 2];
        regrid(&data, 1, 2, 2, &wl, &wx, &mut out).unwrap();
        assert_eq!(out[0], 2.0);
        assert!(out[1].is_nan());
    }

    #[test]
    fn bad_axes_are_errors() {
        assert!(lat_weights(&[0.0, 0.0], &[0.0]).is_err());
        assert!(lat_weights(&[0.0, f64::NAN], &[0.0]).is_err());
        assert!(lon_weights(&[0.0, 360.0], &[0.0]).is_err());
        assert!(lon_weights(&[10.0, 0.0], &[0.0]).is_err());
        let w = lat_weights(&[0.0, 1.0], &[0.5]).unwrap();
        assert!(regrid(&[0.0f32; 3], 1, 2, 2, &w, &w, &mut [0.0f32; 1]).is_err());
    }
}
