//! Samples and what is made of them: percentiles of a whole run and per second of it.
//!
//! A sample is a time (seconds since the run started) and a value (milliseconds). At the rates
//! one machine carries (thousands a second) a sorted `Vec` per second is exact and cheap, so no
//! histogram is kept.

/// Timed values of one kind (a latency, a lag), in the order they came.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// `(seconds since the start, milliseconds)`.
    pub points: Vec<(f64, f64)>,
}

/// The percentiles the report shows, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    /// How many samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 99th.
    pub p99: f64,
    /// 99.9th.
    pub p999: f64,
    /// The largest.
    pub max: f64,
}

/// The value at quantile `q` (0 to 1) of sorted values, nearest rank; 0 for none.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Percentiles {
    /// The percentiles of `values` (in any order).
    pub fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Self {
            count: values.len(),
            p50: quantile(&values, 0.50),
            p90: quantile(&values, 0.90),
            p99: quantile(&values, 0.99),
            p999: quantile(&values, 0.999),
            max: values.last().copied().unwrap_or(0.0),
        }
    }
}

impl Samples {
    /// Adds one.
    pub fn push(&mut self, at: f64, value: f64) {
        self.points.push((at, value));
    }

    /// The percentiles of the whole run.
    pub fn overall(&self) -> Percentiles {
        Percentiles::of(self.points.iter().map(|&(_, v)| v).collect())
    }

    /// The percentiles of each whole second `0..seconds`, by the time of the sample.
    pub fn per_second(&self, seconds: usize) -> Vec<Percentiles> {
        let mut buckets = vec![Vec::new(); seconds];
        for &(at, value) in &self.points {
            if at >= 0.0
                && let Some(bucket) = buckets.get_mut(at as usize)
            {
                bucket.push(value);
            }
        }
        buckets.into_iter().map(Percentiles::of).collect()
    }
}

/// How many of `times` (seconds since the start) fall in each whole second `0..seconds`.
pub fn counts_per_second(times: &[f64], seconds: usize) -> Vec<u64> {
    let mut counts = vec![0; seconds];
    for &at in times {
        if at >= 0.0
            && let Some(count) = counts.get_mut(at as usize)
        {
            *count += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = Percentiles::of((1..=1000).rev().map(f64::from).collect());
        assert_eq!(
            (p.count, p.p50, p.p90, p.p99, p.p999, p.max),
            (1000, 500.0, 900.0, 990.0, 999.0, 1000.0)
        );
        assert_eq!(Percentiles::of(vec![]), Percentiles::default());
    }

    #[test]
    fn samples_fall_in_the_second_they_were_taken() {
        let mut s = Samples::default();
        for (at, v) in [(0.1, 1.0), (0.9, 3.0), (1.5, 10.0), (7.0, 99.0)] {
            s.push(at, v);
        }
        let per = s.per_second(3);
        assert_eq!(
            (per[0].count, per[0].max, per[1].p50, per[2].count),
            (2, 3.0, 10.0, 0)
        );
        assert_eq!(counts_per_second(&[0.2, 0.3, 2.9, 5.0], 3), vec![2, 0, 1]);
    }
}
