//! Median and interquartile range of a point's repeated runs: one number is
//! not a measurement on a shared, noisy machine, so every figure carries the
//! spread of the runs it summarises.

/// Median and quartiles of some samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    /// First quartile (25 %).
    pub q1: f64,
    /// Third quartile (75 %).
    pub q3: f64,
}

impl Spread {
    /// The spread of `samples` (at least one; order does not matter).
    pub fn of(samples: &[f64]) -> Self {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        Self {
            median: quantile(&v, 0.5),
            q1: quantile(&v, 0.25),
            q3: quantile(&v, 0.75),
        }
    }

    /// A single value: no spread (a latency run, or a `--quick` point).
    pub fn one(x: f64) -> Self {
        Self {
            median: x,
            q1: x,
            q3: x,
        }
    }

    /// Whether the two interquartile ranges overlap (then the difference of
    /// the medians is within the runs' own noise).
    pub fn overlaps(&self, other: &Spread) -> bool {
        self.q1 <= other.q3 && other.q1 <= self.q3
    }
}

/// The `q` quantile (0 ≤ q ≤ 1) of `sorted` (ascending, non-empty), by linear
/// interpolation between order statistics: with n samples x₀ ≤ … ≤ xₙ₋₁ and
/// h = (n − 1)·q, it is x⌊h⌋ + (h − ⌊h⌋)·(x⌊h⌋₊₁ − x⌊h⌋). This is Hyndman and
/// Fan's type 7, the default of R and NumPy; the median of an odd count is its
/// middle sample, and one sample is every quantile.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty() && (0.0..=1.0).contains(&q));
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_order_statistics() {
        // NumPy: np.quantile([1, 2, 4, 8, 16], [.25, .5, .75]) = [2, 4, 8].
        let s = Spread::of(&[16.0, 1.0, 8.0, 2.0, 4.0]);
        assert_eq!((s.q1, s.median, s.q3), (2.0, 4.0, 8.0));
        // Four samples: h = 0.75, 1.5, 2.25 -> 1.75, 2.5, 3.25.
        let s = Spread::of(&[4.0, 3.0, 2.0, 1.0]);
        assert_eq!((s.q1, s.median, s.q3), (1.75, 2.5, 3.25));
        assert_eq!(Spread::of(&[7.0]), Spread::one(7.0));
        let v = [1.0, 2.0, 3.0];
        assert_eq!((quantile(&v, 0.0), quantile(&v, 1.0)), (1.0, 3.0));
    }

    #[test]
    fn overlap_of_ranges() {
        let a = Spread::of(&[1.0, 2.0, 3.0]);
        assert!(a.overlaps(&Spread::one(2.5)));
        assert!(!a.overlaps(&Spread::one(3.0)));
        assert!(a.overlaps(&Spread::of(&[2.0, 3.0, 4.0])));
        assert!(!a.overlaps(&Spread::of(&[2.5, 3.0, 4.0])));
    }
}
