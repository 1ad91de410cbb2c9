//! Median and interquartile range of a point's repeated runs: one number is
//! not a measurement on a shared, noisy machine, so every figure carries the
//! spread of the runs it summarises.

use hdrhistogram::Histogram;

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

    /// Whether the two interquartile ranges overlap (then the difference of
    /// the medians is within the runs' own noise).
    pub fn overlaps(&self, other: &Spread) -> bool {
        self.q1 <= other.q3 && other.q1 <= self.q3
    }
}

/// Per-call latency of a point, in ns: each figure is taken within every
/// latency run and then summarised across the runs, so its quartiles show
/// how much the tail moves from run to run (one pooled histogram would hide
/// that, and let one bad run set the figure).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tail {
    pub p99: Spread,
    pub p999: Spread,
    pub max: Spread,
}

impl Tail {
    /// The tail of `runs` (one histogram per latency run, at least one).
    pub fn of(runs: &[&Histogram<u64>]) -> Self {
        let over = |f: &dyn Fn(&Histogram<u64>) -> u64| {
            Spread::of(&runs.iter().map(|h| f(h) as f64).collect::<Vec<_>>())
        };
        Self {
            p99: over(&|h| h.value_at_quantile(0.99)),
            p999: over(&|h| h.value_at_quantile(0.999)),
            max: over(&|h| h.max()),
        }
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
        // One sample is every quartile.
        let s = Spread::of(&[7.0]);
        assert_eq!((s.q1, s.median, s.q3), (7.0, 7.0, 7.0));
        let v = [1.0, 2.0, 3.0];
        assert_eq!((quantile(&v, 0.0), quantile(&v, 1.0)), (1.0, 3.0));
    }

    #[test]
    fn overlap_of_ranges() {
        let a = Spread::of(&[1.0, 2.0, 3.0]);
        assert!(a.overlaps(&Spread::of(&[2.5])));
        assert!(!a.overlaps(&Spread::of(&[3.0])));
        assert!(a.overlaps(&Spread::of(&[2.0, 3.0, 4.0])));
        assert!(!a.overlaps(&Spread::of(&[2.5, 3.0, 4.0])));
    }

    #[test]
    fn tail_is_the_spread_of_each_runs_percentiles() {
        // Run k: 990 calls of 100 ns, 9 of 100·k ns and one of 1000 + k ns
        // (all below 2048, which the histogram records exactly).
        let runs: Vec<Histogram<u64>> = [5u64, 1, 4, 2, 3]
            .into_iter()
            .map(|k| {
                let mut h = Histogram::new_with_bounds(1, 1_000_000, 3).expect("bounds");
                h.record_n(100, 990).expect("in bounds");
                h.record_n(100 * k, 9).expect("in bounds");
                h.record(1000 + k).expect("in bounds");
                h
            })
            .collect();
        let tail = Tail::of(&runs.iter().collect::<Vec<_>>());
        // p99 (the 990th of 1000 values) is 100 in every run.
        assert_eq!(tail.p99, Spread::of(&[100.0]));
        // p99.9 (the 999th) is 100·k; the runs' k are 1..=5.
        assert_eq!(tail.p999, Spread::of(&[100.0, 200.0, 300.0, 400.0, 500.0]));
        assert_eq!(
            (tail.p999.q1, tail.p999.median, tail.p999.q3),
            (200.0, 300.0, 400.0)
        );
        assert_eq!(
            (tail.max.q1, tail.max.median, tail.max.q3),
            (1002.0, 1003.0, 1004.0)
        );
    }
}
