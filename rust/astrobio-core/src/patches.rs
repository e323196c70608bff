//! Tiles of `(lev, lat, lon)` with stride and padding, periodic in longitude, optionally fused
//! with normalisation and NaN filling (the pipeline's single write pass).
//!
//! Output layout: `(samples, tiles, var, lev_size, lat_size, lon_size)` with tiles ordered
//! `(lev tile, lat tile, lon tile)`. Latitude is padded with `lat_pad` rows on both sides
//! (padding counts as missing data); longitude wraps, so there are `ceil(lon / lon_stride)` lon
//! tiles and the last ones cross the date line.

use rayon::prelude::*;

use crate::cube::{checked_product, err, CubeError, Dims};
use crate::elem::Elem;
use crate::normalize::{piece_generic, Affine};
use crate::simd::{dispatch, prefetch};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchSpec {
    /// Levels per tile; 0 takes all levels.
    pub lev: usize,
    pub lev_stride: usize,
    pub lat: usize,
    pub lon: usize,
    pub lat_stride: usize,
    pub lon_stride: usize,
    pub lat_pad: usize,
}

/// How many tiles fit along each axis, and the size of a tile.
///
/// Built by [`PatchSpec::grid`], which checks that the tile count and every index into the
/// padded grid fit in `usize` (and the padded latitude index in `isize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchGrid {
    pub lev_tiles: usize,
    pub lat_tiles: usize,
    pub lon_tiles: usize,
    pub lev_size: usize,
}

impl PatchGrid {
    /// Tiles per sample, or an error when the product overflows.
    pub fn tiles(&self) -> Result<usize, CubeError> {
        checked_product(&[self.lev_tiles, self.lat_tiles, self.lon_tiles])
            .map_or_else(|| err("patch tile count is too large"), Ok)
    }
}

impl PatchSpec {
    /// The tile grid for `dims`, with every size computed in checked arithmetic: a spec whose
    /// padding, tile count or output size does not fit is an error, never a wrapped value.
    pub fn grid(&self, dims: &Dims) -> Result<PatchGrid, CubeError> {
        if self.lat == 0 || self.lon == 0 || self.lat_stride == 0 || self.lon_stride == 0 {
            return err("patch sizes and strides must be >= 1");
        }
        let lev_size = if self.lev == 0 { dims.levs } else { self.lev };
        if lev_size > dims.levs || (self.lev != 0 && self.lev_stride == 0) {
            return err(format!(
                "level tiles of {lev_size} (stride {}) do not fit {} levels",
                self.lev_stride, dims.levs
            ));
        }
        // Tiles index the padded rows with isize (row - lat_pad), so the padded grid must fit.
        let padded = self
            .lat_pad
            .checked_mul(2)
            .and_then(|p| p.checked_add(dims.lats))
            .filter(|&p| isize::try_from(p).is_ok());
        let Some(padded) = padded else {
            return err(format!(
                "latitude padding of {} rows each side is too large for {} latitudes",
                self.lat_pad, dims.lats
            ));
        };
        if self.lat > padded {
            return err(format!(
                "patch of {} latitudes does not fit {} latitudes plus {} padding rows each side",
                self.lat, dims.lats, self.lat_pad
            ));
        }
        if self.lon > dims.lons {
            return err(format!(
                "patch of {} longitudes is wider than the {} longitudes of the grid",
                self.lon, dims.lons
            ));
        }
        let lev_tiles = if self.lev == 0 || dims.levs == 0 {
            1
        } else {
            (dims.levs - lev_size) / self.lev_stride + 1
        };
        let g = PatchGrid {
            lev_tiles,
            lat_tiles: (padded - self.lat) / self.lat_stride + 1,
            lon_tiles: dims.lons.div_ceil(self.lon_stride),
            lev_size,
        };
        self.out_len_of(dims, &g)?;
        Ok(g)
    }

    fn out_len_of(&self, dims: &Dims, g: &PatchGrid) -> Result<usize, CubeError> {
        let tiles = g.tiles()?;
        checked_product(&[
            dims.samples,
            tiles,
            dims.vars,
            g.lev_size,
            self.lat,
            self.lon,
        ])
        .map_or_else(
            || {
                err(format!(
                    "patch output is too large: {} samples x {tiles} tiles x {} variables x \
                         {} x {} x {} elements overflow",
                    dims.samples, dims.vars, g.lev_size, self.lat, self.lon
                ))
            },
            Ok,
        )
    }

    /// Output length for `dims`.
    pub fn out_len(&self, dims: &Dims) -> Result<usize, CubeError> {
        self.out_len_of(dims, &self.grid(dims)?)
    }
}

/// Cuts `data` into tiles, writing `out` (see the module docs for the layout).
///
/// With `params`, each element goes through its variable's [`Affine`] (normalise + fill) and
/// padding is treated as NaN input; without, elements are copied and padding is `pad_value`.
/// `mask`, when given, is true where the input was a real, finite value (NaN, ±inf and padding
/// are missing).
pub fn patches<T: Elem>(
    data: &[T],
    dims: Dims,
    spec: PatchSpec,
    params: Option<&[Affine]>,
    pad_value: T,
    out: &mut [T],
    mask: Option<&mut [bool]>,
) -> Result<(), CubeError> {
    dims.check("data", data.len())?;
    let g = spec.grid(&dims)?;
    let want = spec.out_len(&dims)?;
    if out.len() != want {
        return err(format!(
            "out has {} elements, the patches need {want}",
            out.len()
        ));
    }
    if let Some(p) = params {
        if p.len() != dims.vars {
            return err(format!(
                "stats have {} variables but data has {}",
                p.len(),
                dims.vars
            ));
        }
    }
    if want == 0 {
        return Ok(());
    }
    // One task per band of tiles sharing (sample, lev tile, lat tile): its output is
    // contiguous, and it reads each source row once, front to back, writing the row's pieces
    // into every lon tile (reading tile by tile would jump a whole row per 32 elements).
    // No overflow: `band` divides `want`, which `out_len` computed in checked arithmetic.
    let band = g.lon_tiles * dims.vars * g.lev_size * spec.lat * spec.lon;
    let one = |b: usize, o: &mut [T], m: Option<&mut [bool]>| {
        tile_band(data, &dims, &spec, &g, params, pad_value, b, o, m)
    };
    match mask {
        None => out
            .par_chunks_mut(band)
            .enumerate()
            .for_each(|(b, o)| one(b, o, None)),
        Some(mask) => {
            if mask.len() != want {
                return err(format!(
                    "mask has {} elements, the patches need {want}",
                    mask.len()
                ));
            }
            out.par_chunks_mut(band)
                .zip(mask.par_chunks_mut(band))
                .enumerate()
                .for_each(|(b, (o, m))| one(b, o, Some(m)))
        }
    }
    Ok(())
}

dispatch!(
    #[allow(clippy::too_many_arguments)]
    fn tile_band<T: Elem>(data: &[T], dims: &Dims, spec: &PatchSpec, g: &PatchGrid, params: Option<&[Affine]>, pad_value: T, b: usize, out: &mut [T], mask: Option<&mut [bool]>) -> () => tile_band_generic
);

/// Fills band `b` = (sample, lev tile, lat tile) of the output: all its lon tiles, variables,
/// levels and rows. `out` is laid out `(lon tile, var, lev, row, col)`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tile_band_generic<T: Elem>(
    data: &[T],
    dims: &Dims,
    spec: &PatchSpec,
    g: &PatchGrid,
    params: Option<&[Affine]>,
    pad_value: T,
    b: usize,
    out: &mut [T],
    mask: Option<&mut [bool]>,
) {
    let mut mask = mask;
    let yt = b % g.lat_tiles;
    let lt = (b / g.lat_tiles) % g.lev_tiles;
    let s = b / (g.lat_tiles * g.lev_tiles);
    let (ph, pw) = (spec.lat, spec.lon);
    for v in 0..dims.vars {
        let p = params.map(|p| p[v]);
        for l in 0..g.lev_size {
            let lev = lt * spec.lev_stride + l;
            let plane = ((s * dims.vars + v) * dims.levs + lev) * dims.plane();
            for r in 0..ph {
                let y = (yt * spec.lat_stride + r) as isize - spec.lat_pad as isize;
                let src = (y >= 0 && y < dims.lats as isize).then(|| {
                    let y = y as usize;
                    &data[plane + y * dims.lons..plane + (y + 1) * dims.lons]
                });
                // Rows are short (a few KiB), too short for the hardware prefetcher to ramp
                // up: ask for the row after next while this one is copied.
                let ahead = y.saturating_add(2);
                if ahead >= 0 && (ahead as usize) < dims.lats {
                    let row = plane + ahead as usize * dims.lons;
                    for k in (0..dims.lons).step_by(16) {
                        prefetch(data, row + k);
                    }
                }
                for xt in 0..g.lon_tiles {
                    let at = ((xt * dims.vars + v) * g.lev_size + l) * ph * pw + r * pw;
                    let o = &mut out[at..at + pw];
                    let m = mask.as_deref_mut().map(|m| &mut m[at..at + pw]);
                    let Some(src) = src else {
                        o.fill(p.map_or(pad_value, |p| T::from_f64(p.fill)));
                        if let Some(m) = m {
                            m.fill(false);
                        }
                        continue;
                    };
                    row_piece(src, xt * spec.lon_stride, p, o, m);
                }
            }
        }
    }
}

/// Writes `src[x0..x0 + out.len()]` (wrapping once at the end of the row) to `out`, through
/// `p` when given; `mask` gets "finite".
#[inline(always)]
fn row_piece<T: Elem>(
    src: &[T],
    x0: usize,
    p: Option<Affine>,
    out: &mut [T],
    mut mask: Option<&mut [bool]>,
) {
    let pw = out.len();
    // Longitude wraps at most once because lon <= lons.
    let first = pw.min(src.len() - x0);
    for (xs, at) in [(&src[x0..x0 + first], 0), (&src[..pw - first], first)] {
        let o = &mut out[at..at + xs.len()];
        match p {
            None => o.copy_from_slice(xs),
            Some(p) => piece_generic(xs, o, p), // inlined into the dispatched band function
        }
        if let Some(m) = mask.as_deref_mut() {
            for (mk, &x) in m[at..at + xs.len()].iter_mut().zip(xs) {
                *mk = x.to_f64().is_finite();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{affine_params, Direction, Fill};

    fn spec(lat: usize, lon: usize, sy: usize, sx: usize, pad: usize) -> PatchSpec {
        PatchSpec {
            lev: 0,
            lev_stride: 1,
            lat,
            lon,
            lat_stride: sy,
            lon_stride: sx,
            lat_pad: pad,
        }
    }

    #[test]
    fn tiles_wrap_in_longitude_and_pad_in_latitude() {
        // one 3 x 4 field: value = 10 * lat + lon
        let dims = Dims::new(1, 1, 1, 3, 4);
        let data: Vec<f64> = (0..12).map(|i| (10 * (i / 4) + i % 4) as f64).collect();
        let sp = spec(2, 3, 2, 2, 1);
        let g = sp.grid(&dims).unwrap();
        assert_eq!((g.lat_tiles, g.lon_tiles), (2, 2));
        let mut out = vec![0.0; sp.out_len(&dims).unwrap()];
        patches(&data, dims, sp, None, -1.0, &mut out, None).unwrap();
        #[rustfmt::skip]
        let want = [
            -1.0, -1.0, -1.0, 0.0, 1.0, 2.0,     // lat rows -1 (pad), 0; lon 0, 1, 2
            -1.0, -1.0, -1.0, 2.0, 3.0, 0.0,     // lon 2, 3, 0 (wraps)
            10.0, 11.0, 12.0, 20.0, 21.0, 22.0,  // lat rows 1, 2
            12.0, 13.0, 10.0, 22.0, 23.0, 20.0,
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn fused_normalize_treats_padding_as_missing() {
        let dims = Dims::new(1, 1, 1, 1, 2);
        let data = [4.0f32, f32::NAN];
        let p = affine_params(&[2.0], &[2.0], Fill::Value(0.0), Direction::Normalize).unwrap();
        let sp = spec(3, 2, 1, 2, 1);
        let mut out = vec![0.0f32; 6];
        let mut mask = vec![true; 6];
        patches(
            &data,
            dims,
            sp,
            Some(&p),
            f32::NAN,
            &mut out,
            Some(&mut mask),
        )
        .unwrap();
        assert_eq!(out, [-1.0, -1.0, 1.0, -1.0, -1.0, -1.0]);
        assert_eq!(mask, [false, false, true, false, false, false]);
    }

    #[test]
    fn level_tiles() {
        let dims = Dims::new(1, 1, 4, 1, 1);
        let data = [0.0f64, 1.0, 2.0, 3.0];
        let sp = PatchSpec {
            lev: 2,
            lev_stride: 2,
            ..spec(1, 1, 1, 1, 0)
        };
        let mut out = vec![0.0; 4];
        patches(&data, dims, sp, None, 0.0, &mut out, None).unwrap();
        assert_eq!(out, [0.0, 1.0, 2.0, 3.0]);
        let sp = PatchSpec { lev: 5, ..sp };
        assert!(sp.grid(&dims).is_err());
    }

    #[test]
    fn sizes_that_would_overflow_are_errors_not_wrapped() {
        let dims = Dims::new(1, 1, 1, 4, 4);
        // (2**62 + 1) lat tiles x 4 lon tiles used to wrap to 4 tiles, all padding
        let wraps_tiles = spec(4, 1, 2, 1, 1 << 62);
        let e = wraps_tiles.grid(&dims).unwrap_err();
        assert!(e.0.contains("too large"), "{e}");
        // padding that fits, but (2**62 + 1) x 4 tiles do not
        let e = spec(4, 1, 1, 1, 1 << 61).grid(&dims).unwrap_err();
        assert!(e.0.contains("tile count is too large"), "{e}");
        let mut out = vec![0.0f32; 16];
        assert!(patches(&[0.0f32; 16], dims, wraps_tiles, None, 7.0, &mut out, None).is_err());
        assert!(out.iter().all(|&v| v == 0.0));
        // 2 * (2**64 - 1) used to wrap to -2 rows: no padding and a shifted tile
        let wraps_pad = spec(2, 4, 1, 4, usize::MAX);
        assert!(wraps_pad.grid(&dims).unwrap_err().0.contains("padding"));
        // padding that fits usize but not isize (tiles index rows as isize)
        assert!(spec(2, 4, 1, 4, (isize::MAX as usize) / 2 + 1)
            .grid(&dims)
            .is_err());
        // a large but sound padding is fine as long as the output fits
        let g = spec(4, 4, usize::MAX / 4, 4, 1 << 40).grid(&dims).unwrap();
        assert_eq!((g.lat_tiles, g.tiles().unwrap()), (1, 1));
        // overflow in the output size (samples x tiles x ...)
        let big = Dims::new(usize::MAX / 2, 1, 1, 4, 4);
        assert!(spec(1, 1, 1, 1, 0).out_len(&big).is_err());
        let g = PatchGrid {
            lev_tiles: usize::MAX,
            lat_tiles: 2,
            lon_tiles: 1,
            lev_size: 1,
        };
        assert!(g.tiles().is_err());
    }

    #[test]
    fn bad_specs_are_errors() {
        let dims = Dims::new(1, 1, 1, 4, 4);
        assert!(spec(0, 1, 1, 1, 0).grid(&dims).is_err());
        assert!(spec(5, 1, 1, 1, 0).grid(&dims).is_err());
        assert!(spec(1, 5, 1, 1, 0).grid(&dims).is_err());
        assert!(spec(5, 1, 1, 1, 1).grid(&dims).is_ok());
        let mut out = vec![0.0f32; 3];
        assert!(patches(
            &[0.0f32; 16],
            dims,
            spec(1, 1, 1, 1, 0),
            None,
            0.0,
            &mut out,
            None
        )
        .is_err());
    }
}
