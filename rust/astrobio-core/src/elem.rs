//! The two element types the datacube operations accept.

/// A float element (`f32` or `f64`); every operation accumulates and computes in `f64`.
pub trait Elem: Copy + Send + Sync + 'static {
    const NAN: Self;
    fn to_f64(self) -> f64;
    fn from_f64(x: f64) -> Self;
}

impl Elem for f32 {
    const NAN: f32 = f32::NAN;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(x: f64) -> f32 {
        x as f32
    }
}

impl Elem for f64 {
    const NAN: f64 = f64::NAN;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(x: f64) -> f64 {
        x
    }
}
