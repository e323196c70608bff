//! Augmentations: flip latitude, roll longitude, Gaussian noise.
//!
//! The noise is counter-based: element `i` (its flat C-order index) gets a normal deviate that
//! depends only on `(seed, i)`, so the result is the same whatever the number of threads and
//! however the work is split. The generator is SplitMix64 (Steele, Lea and Flood 2014) used as
//! a hash of `seed` and `i`, with a Box-Muller transform of its two 32-bit halves.

use rayon::prelude::*;

use crate::cube::{err, CubeError, CHUNK};
use crate::elem::Elem;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function.
#[inline(always)]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The standard normal deviate of element `index` for `seed`.
#[inline]
pub fn normal(seed: u64, index: u64) -> f64 {
    let key = mix64(seed.wrapping_add(GOLDEN));
    let h = mix64(key.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN)));
    let u1 = ((h >> 32) as f64 + 0.5) * (1.0 / 4_294_967_296.0); // (0, 1)
    let u2 = (h & 0xFFFF_FFFF) as f64 * (1.0 / 4_294_967_296.0); // [0, 1)
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn same_len(a: usize, b: usize) -> Result<(), CubeError> {
    if a != b {
        return err(format!("out has {b} elements, data has {a}"));
    }
    Ok(())
}

/// `out = data + std * N(0, 1)`; NaN stays NaN.
pub fn add_noise<T: Elem>(data: &[T], std: f64, seed: u64, out: &mut [T]) -> Result<(), CubeError> {
    same_len(data.len(), out.len())?;
    if !std.is_finite() || std < 0.0 {
        return err(format!("noise std must be finite and >= 0, got {std}"));
    }
    out.par_chunks_mut(CHUNK)
        .zip(data.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(t, (o, x))| {
            let base = (t * CHUNK) as u64;
            for (k, (o, &x)) in o.iter_mut().zip(x).enumerate() {
                *o = T::from_f64(x.to_f64() + std * normal(seed, base + k as u64));
            }
        });
    Ok(())
}

/// Reverses the latitude axis of fields of `ny x nx`.
pub fn flip_lat<T: Elem>(data: &[T], ny: usize, nx: usize, out: &mut [T]) -> Result<(), CubeError> {
    same_len(data.len(), out.len())?;
    let field = ny * nx;
    if field == 0 || data.len() % field != 0 {
        return if data.is_empty() {
            Ok(())
        } else {
            err(format!(
                "data has {} elements, not fields of {ny} x {nx}",
                data.len()
            ))
        };
    }
    out.par_chunks_mut(nx)
        .enumerate()
        .with_min_len(64)
        .for_each(|(r, row)| {
            let (p, y) = (r / ny, r % ny);
            let src = p * field + (ny - 1 - y) * nx;
            row.copy_from_slice(&data[src..src + nx]);
        });
    Ok(())
}

/// Rolls the longitude axis by `shift` (NumPy's `np.roll(x, shift, axis=-1)`).
pub fn roll_lon<T: Elem>(
    data: &[T],
    nx: usize,
    shift: i64,
    out: &mut [T],
) -> Result<(), CubeError> {
    same_len(data.len(), out.len())?;
    if nx == 0 || data.len() % nx != 0 {
        return if data.is_empty() {
            Ok(())
        } else {
            err(format!(
                "data has {} elements, not rows of {nx}",
                data.len()
            ))
        };
    }
    let k = shift.rem_euclid(nx as i64) as usize;
    out.par_chunks_mut(nx)
        .zip(data.par_chunks(nx))
        .with_min_len(64)
        .for_each(|(o, x)| {
            o[k..].copy_from_slice(&x[..nx - k]);
            o[..k].copy_from_slice(&x[nx - k..]);
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_standard_normal_and_thread_independent() {
        let data = vec![0.0f64; 200_000];
        let run = |k| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(k)
                .build()
                .unwrap();
            let mut out = vec![0.0; data.len()];
            pool.install(|| add_noise(&data, 1.0, 42, &mut out))
                .unwrap();
            out
        };
        let a = run(1);
        assert_eq!(a, run(3));
        let n = a.len() as f64;
        let mean = a.iter().sum::<f64>() / n;
        let var = a.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        assert_ne!(normal(1, 0), normal(2, 0));
    }

    #[test]
    fn flip_and_roll() {
        let data: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let mut out = vec![0.0f32; 12];
        flip_lat(&data, 3, 2, &mut out).unwrap();
        assert_eq!(&out[..6], &[4.0, 5.0, 2.0, 3.0, 0.0, 1.0]);
        roll_lon(&data, 4, -1, &mut out).unwrap();
        assert_eq!(&out[..4], &[1.0, 2.0, 3.0, 0.0]);
        assert!(roll_lon(&data, 5, 1, &mut out).is_err());
    }
}
