//! The statistics of the tables: mean and sample standard deviation, Student's t quantile,
//! paired differences with their 95 % interval.

/// Mean and sample standard deviation (0 for one value).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The 97.5 % quantile of Student's t with `df` degrees of freedom (two-sided 95 %), from the
/// standard table; the normal 1.96 above 30.
pub fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => T[df - 1],
        _ => 1.96,
    }
}

/// A paired difference: mean, and the 95 % t interval (NaN bounds for one pair).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    /// Pairs.
    pub n: usize,
    /// Mean difference.
    pub mean: f64,
    /// Lower bound of the 95 % interval.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

impl Paired {
    /// The mean of `diffs` with `mean ± t(n−1) · sd / √n`.
    pub fn of(diffs: &[f64]) -> Paired {
        let n = diffs.len();
        let (mean, sd) = mean_std(diffs);
        let half = t975(n.saturating_sub(1)) * sd / (n as f64).sqrt();
        Paired {
            n,
            mean,
            lo: mean - half,
            hi: mean + half,
        }
    }

    /// Whether the interval excludes zero.
    pub fn excludes_zero(&self) -> bool {
        self.lo > 0.0 || self.hi < 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_interval_by_hand() {
        // Differences 1, 2, 3: mean 2, sd 1, half width 4.303 / √3.
        let p = Paired::of(&[1.0, 2.0, 3.0]);
        assert_eq!(p.n, 3);
        assert!((p.mean - 2.0).abs() < 1e-12);
        assert!((p.hi - (2.0 + 4.303 / 3f64.sqrt())).abs() < 1e-12);
        // lo = 2 − 2.484 < 0: three seeds this spread do not exclude zero.
        assert!(!p.excludes_zero());
        // 1.8, 2.0, 2.2: sd 0.2, half width 0.497.
        assert!(Paired::of(&[1.8, 2.0, 2.2]).excludes_zero());
        assert!(Paired::of(&[-1.8, -2.0, -2.2]).excludes_zero());
        assert_eq!(t975(1), 12.706);
        assert_eq!(t975(100), 1.96);
    }
}
