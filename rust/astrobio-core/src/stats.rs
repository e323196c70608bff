//! Per-variable count, mean, standard deviation, minimum and maximum of the finite values.
//!
//! Non-finite values (NaN, +inf, -inf) are missing data and skipped, as NumPy's twin does: one
//! +inf and one -inf would otherwise make the mean NaN and the spread meaningless.
//!
//! One parallel pass over memory. The array is cut into fixed tasks of [`CHUNK`] elements
//! (independent of the thread count); inside a task each piece that belongs to one variable is
//! reduced with f64 sums shifted by its first value (vectorisable, and exact enough because the
//! piece is small and the shift sits inside its range); the pieces are then combined in a fixed
//! order with Chan et al.'s parallel Welford merge. The result is therefore the same, bit for
//! bit, whatever the number of threads.

use rayon::prelude::*;

use crate::cube::{segments, CubeError, Dims, CHUNK};
use crate::elem::Elem;
use crate::reduce::Moments;
use crate::simd::{dispatch, prefetch, PREFETCH};

/// Statistics of one variable. Empty (no finite value) gives count 0 and NaN everywhere else.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VarStats {
    pub moments: Moments,
    pub min: f64,
    pub max: f64,
}

impl VarStats {
    pub const EMPTY: VarStats = VarStats {
        moments: Moments::EMPTY,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    pub fn merge(self, other: VarStats) -> VarStats {
        VarStats {
            moments: self.moments.merge(other.moments),
            min: self.min.min(other.min),
            max: self.max.max(other.max),
        }
    }

    pub fn count(&self) -> u64 {
        self.moments.count
    }

    pub fn mean(&self) -> f64 {
        if self.count() == 0 {
            f64::NAN
        } else {
            self.moments.mean
        }
    }

    /// Population standard deviation (ddof = 0).
    pub fn std(&self) -> f64 {
        if self.count() == 0 {
            return f64::NAN;
        }
        self.moments.variance().max(0.0).sqrt()
    }

    pub fn min(&self) -> f64 {
        if self.count() == 0 {
            f64::NAN
        } else {
            self.min
        }
    }

    pub fn max(&self) -> f64 {
        if self.count() == 0 {
            f64::NAN
        } else {
            self.max
        }
    }
}

const LANES: usize = 8;
#[inline(always)]
fn piece_stats_generic<T: Elem>(xs: &[T]) -> VarStats {
    let Some(first) = xs.iter().map(|x| x.to_f64()).find(|x| x.is_finite()) else {
        return VarStats::EMPTY;
    };
    // LANES independent accumulators so the loop vectorises (no single serial dependency).
    let mut n = [0.0f64; LANES];
    let mut s1 = [0.0f64; LANES];
    let mut s2 = [0.0f64; LANES];
    let mut lo = [f64::INFINITY; LANES];
    let mut hi = [f64::NEG_INFINITY; LANES];
    let mut it = xs.chunks_exact(LANES);
    for (k, c) in (&mut it).enumerate() {
        prefetch(xs, k * LANES + PREFETCH);
        for l in 0..LANES {
            let v = c[l].to_f64();
            let ok = v.is_finite();
            let d = if ok { v - first } else { 0.0 };
            n[l] += if ok { 1.0 } else { 0.0 };
            s1[l] += d;
            s2[l] += d * d;
            lo[l] = if ok && v < lo[l] { v } else { lo[l] };
            hi[l] = if ok && v > hi[l] { v } else { hi[l] };
        }
    }
    for (l, x) in it.remainder().iter().enumerate() {
        let v = x.to_f64();
        if v.is_finite() {
            n[l] += 1.0;
            s1[l] += v - first;
            s2[l] += (v - first) * (v - first);
            lo[l] = lo[l].min(v);
            hi[l] = hi[l].max(v);
        }
    }
    let count: f64 = n.iter().sum();
    let s1: f64 = s1.iter().sum();
    let s2: f64 = s2.iter().sum();
    let mean = first + s1 / count;
    let m2 = (s2 - s1 * s1 / count).max(0.0);
    VarStats {
        moments: Moments {
            count: count as u64,
            mean,
            m2,
        },
        min: lo.iter().copied().fold(f64::INFINITY, f64::min),
        max: hi.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    }
}

dispatch!(fn piece_stats<T: Elem>(xs: &[T]) -> VarStats => piece_stats_generic);

/// Per-variable statistics of a cube, in one pass on the current rayon pool.
pub fn stats<T: Elem>(data: &[T], dims: Dims) -> Result<Vec<VarStats>, CubeError> {
    dims.check("data", data.len())?;
    let vars = dims.vars;
    let mut acc = vec![VarStats::EMPTY; vars];
    if data.is_empty() {
        return Ok(acc);
    }
    let block = dims.block();
    // Few variables: each task keeps one accumulator per variable. Many: it lists its pieces.
    let dense = vars <= 1024;
    let partial: Vec<Vec<(usize, VarStats)>> = data
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(t, chunk)| {
            let mut local: Vec<(usize, VarStats)> = if dense {
                (0..vars).map(|v| (v, VarStats::EMPTY)).collect()
            } else {
                Vec::new()
            };
            segments(t * CHUNK, chunk.len(), block, vars, |v, r| {
                let s = piece_stats(&chunk[r]);
                if dense {
                    local[v].1 = local[v].1.merge(s);
                } else {
                    local.push((v, s));
                }
            });
            local
        })
        .collect();
    for (v, s) in partial.into_iter().flatten() {
        acc[v] = acc[v].merge(s);
    }
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serial(xs: &[f64]) -> (u64, f64, f64, f64, f64) {
        let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (v.len() as u64, mean, var.sqrt(), lo, hi)
    }

    fn cube(n: usize, nan_every: usize) -> Vec<f64> {
        (0..n)
            .map(|i| {
                if nan_every > 0 && i % nan_every == 3 {
                    f64::NAN
                } else {
                    1e4 + ((i * 7919) % 1009) as f64 * 0.25
                }
            })
            .collect()
    }

    #[test]
    fn parallel_merge_equals_serial_pass() {
        // 3 samples x 2 vars x 5 levs x 40 x 130: blocks span several CHUNKs and pieces.
        let dims = Dims::new(3, 2, 5, 40, 130);
        let data = cube(dims.len().unwrap(), 17);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let got = pool.install(|| stats(&data, dims)).unwrap();
        let block = dims.block();
        for (v, g) in got.iter().enumerate() {
            let mine: Vec<f64> = (0..dims.samples)
                .flat_map(|s| {
                    let o = (s * dims.vars + v) * block;
                    data[o..o + block].to_vec()
                })
                .collect();
            let (n, mean, std, lo, hi) = serial(&mine);
            assert_eq!(g.count(), n);
            assert!((g.mean() - mean).abs() < 1e-9, "{} {}", g.mean(), mean);
            assert!((g.std() - std).abs() < 1e-9, "{} {}", g.std(), std);
            assert_eq!((g.min(), g.max()), (lo, hi));
        }
    }

    #[test]
    fn same_bits_whatever_the_thread_count() {
        let dims = Dims::new(2, 3, 4, 33, 200);
        let data: Vec<f32> = cube(dims.len().unwrap(), 11)
            .iter()
            .map(|&x| x as f32)
            .collect();
        let run = |k| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(k)
                .build()
                .unwrap();
            pool.install(|| stats(&data, dims)).unwrap()
        };
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn tiny_blocks_and_many_variables() {
        let dims = Dims::new(5000, 3, 1, 1, 1);
        let data = cube(dims.len().unwrap(), 0);
        let got = stats(&data, dims).unwrap();
        for (v, g) in got.iter().enumerate() {
            let mine: Vec<f64> = data.iter().skip(v).step_by(3).copied().collect();
            let (n, mean, std, ..) = serial(&mine);
            assert_eq!(g.count(), n);
            assert!((g.mean() - mean).abs() < 1e-9);
            assert!((g.std() - std).abs() < 1e-9);
        }
        let dims = Dims::new(3, 2000, 1, 1, 7);
        let data = cube(dims.len().unwrap(), 5);
        let got = stats(&data, dims).unwrap();
        let o = 1234 * 7;
        let mine: Vec<f64> = (0..3)
            .flat_map(|s| data[s * 2000 * 7 + o..s * 2000 * 7 + o + 7].to_vec())
            .collect();
        assert_eq!(got[1234].count(), serial(&mine).0);
        assert!((got[1234].mean() - serial(&mine).1).abs() < 1e-9);
    }

    #[test]
    fn all_nan_variable_is_empty_and_nan() {
        let dims = Dims::new(1, 2, 1, 2, 2);
        let data = [
            1.0,
            2.0,
            3.0,
            f64::NAN,
            f64::NAN,
            f64::NAN,
            f64::NAN,
            f64::NAN,
        ];
        let got = stats(&data, dims).unwrap();
        assert_eq!(got[0].count(), 3);
        assert_eq!(got[0].mean(), 2.0);
        assert_eq!(got[1].count(), 0);
        assert!(got[1].mean().is_nan() && got[1].std().is_nan() && got[1].min().is_nan());
    }

    #[test]
    fn infinities_are_missing_like_nan() {
        // One +inf and one -inf used to give mean NaN and std 0.
        let data = [1.0f64, f64::INFINITY, 3.0, f64::NEG_INFINITY, 5.0, f64::NAN];
        let got = stats(&data, Dims::new(1, 1, 1, 1, 6)).unwrap();
        assert_eq!(got[0].count(), 3);
        assert_eq!((got[0].mean(), got[0].min(), got[0].max()), (3.0, 1.0, 5.0));
        assert!((got[0].std() - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
        // an infinity first in a piece, and in the vectorised body of a long piece
        let mut long: Vec<f32> = (0..1000).map(|i| (i % 10) as f32).collect();
        long[0] = f32::NEG_INFINITY;
        long[517] = f32::INFINITY;
        let got = stats(&long, Dims::new(1, 1, 1, 1, 1000)).unwrap();
        let want = serial(&long.iter().map(|&x| x as f64).collect::<Vec<_>>());
        assert_eq!(got[0].count(), want.0);
        assert_eq!(want.0, 998);
        assert!((got[0].mean() - want.1).abs() < 1e-12);
        assert!((got[0].std() - want.2).abs() < 1e-12);
        assert_eq!((got[0].min(), got[0].max()), (want.3, want.4));
        // only infinities: empty
        let got = stats(
            &[f64::INFINITY, f64::NEG_INFINITY],
            Dims::new(1, 1, 1, 1, 2),
        )
        .unwrap();
        assert_eq!(got[0].count(), 0);
        assert!(got[0].mean().is_nan() && got[0].max().is_nan());
    }

    #[test]
    fn stable_far_from_zero() {
        let data: Vec<f32> = (0..100_000).map(|i| 1e6 + (i % 2) as f32 * 0.5).collect();
        let got = stats(&data, Dims::new(1, 1, 1, 1, 100_000)).unwrap();
        assert!((got[0].std() - 0.25).abs() < 1e-9, "{}", got[0].std());
    }

    #[test]
    fn wrong_length_is_an_error() {
        assert!(stats(&[1.0f32; 5], Dims::new(1, 1, 1, 2, 2)).is_err());
    }
}
