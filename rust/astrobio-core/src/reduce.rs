//! Small reductions that ignore NaN.

/// Count, mean and population variance of the finite-or-infinite (non-NaN) values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    pub count: u64,
    pub mean: f64,
    /// Sum of squared deviations from the mean (Welford's M2).
    pub m2: f64,
}

impl Moments {
    pub const EMPTY: Moments = Moments {
        count: 0,
        mean: 0.0,
        m2: 0.0,
    };

    /// Welford's update with one value.
    pub fn push(&mut self, x: f64) {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Chan et al.'s parallel merge of two partial results.
    pub fn merge(self, other: Moments) -> Moments {
        if self.count == 0 {
            return other;
        }
        if other.count == 0 {
            return self;
        }
        let n = self.count + other.count;
        let delta = other.mean - self.mean;
        let mean = self.mean + delta * other.count as f64 / n as f64;
        let m2 =
            self.m2 + other.m2 + delta * delta * self.count as f64 * other.count as f64 / n as f64;
        Moments { count: n, mean, m2 }
    }

    /// Population variance; NaN when empty.
    pub fn variance(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            self.m2 / self.count as f64
        }
    }
}

/// Mean of the non-NaN values of `xs`, or `None` when there are none.
///
/// Accumulates in f64 with Welford's update, so it is stable for values far from zero.
pub fn nan_mean(xs: &[f64]) -> Option<f64> {
    let mut m = Moments::EMPTY;
    for &x in xs.iter().filter(|x| !x.is_nan()) {
        m.push(x);
    }
    (m.count > 0).then_some(m.mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_mean_skips_nan() {
        assert_eq!(nan_mean(&[1.0, f64::NAN, 3.0]), Some(2.0));
    }

    #[test]
    fn nan_mean_of_nothing_is_none() {
        assert_eq!(nan_mean(&[]), None);
        assert_eq!(nan_mean(&[f64::NAN, f64::NAN]), None);
    }

    #[test]
    fn nan_mean_is_stable_far_from_zero() {
        let xs: Vec<f64> = (0..1000).map(|i| 1e9 + (i % 3) as f64).collect();
        let got = nan_mean(&xs).unwrap();
        assert!((got - (1e9 + 0.999)).abs() < 1e-6, "{got}");
    }

    #[test]
    fn merge_equals_serial_pass() {
        let xs: Vec<f64> = (0..257)
            .map(|i| ((i * 37) % 101) as f64 * 0.5 - 7.0)
            .collect();
        let mut serial = Moments::EMPTY;
        xs.iter().for_each(|&x| serial.push(x));
        let (a, b) = xs.split_at(100);
        let mut ma = Moments::EMPTY;
        a.iter().for_each(|&x| ma.push(x));
        let mut mb = Moments::EMPTY;
        b.iter().for_each(|&x| mb.push(x));
        let merged = ma.merge(mb);
        assert_eq!(merged.count, serial.count);
        assert!((merged.mean - serial.mean).abs() < 1e-12);
        assert!((merged.variance() - serial.variance()).abs() < 1e-9);
    }
}
