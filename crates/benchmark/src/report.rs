//! Latency histograms and the result of a run.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::BenchError;

/// The longest latency a histogram tells apart (longer ones are recorded as this).
const MAX_NANOS: u64 = 600_000_000_000;

/// A latency histogram in nanoseconds (3 significant digits, 1 ns to 10 minutes).
#[derive(Clone, Debug)]
pub struct Recorder {
    hist: Histogram<u64>,
}

impl Recorder {
    /// An empty histogram.
    pub fn new() -> Result<Self, BenchError> {
        let hist = Histogram::new_with_bounds(1, MAX_NANOS, 3)
            .map_err(|e| BenchError::Histogram(e.to_string()))?;
        Ok(Self { hist })
    }

    /// Records one latency (clamped into the histogram's range).
    pub fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.hist.saturating_record(nanos.clamp(1, MAX_NANOS));
    }

    /// Adds `other`'s samples.
    pub fn merge(&mut self, other: &Recorder) {
        // Both histograms have the same bounds, so adding cannot fail; if it ever did, the
        // samples are re-recorded one bucket at a time.
        if self.hist.add(&other.hist).is_err() {
            for v in other.hist.iter_recorded() {
                self.hist
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The distribution in milliseconds.
    pub fn latency(&self) -> Latency {
        let ms = |nanos: u64| nanos as f64 / 1e6;
        if self.hist.is_empty() {
            return Latency::default();
        }
        Latency {
            min: ms(self.hist.min()),
            mean: self.hist.mean() / 1e6,
            p50: ms(self.hist.value_at_quantile(0.50)),
            p90: ms(self.hist.value_at_quantile(0.90)),
            p99: ms(self.hist.value_at_quantile(0.99)),
            p999: ms(self.hist.value_at_quantile(0.999)),
            max: ms(self.hist.max()),
        }
    }
}

/// A latency distribution, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// The fastest.
    pub min: f64,
    /// The mean.
    pub mean: f64,
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The 99.9th percentile.
    pub p999: f64,
    /// The slowest.
    pub max: f64,
}

/// What one run measured: the machine-readable result (`--json`) and the printed summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// `put`, `range`, `txn-put` or `watch`.
    pub workload: String,
    /// The workload's parameters, for the report (`key-size`, `consistency`, ...).
    pub params: BTreeMap<String, String>,
    /// The endpoints.
    pub endpoints: Vec<String>,
    /// Connections opened.
    pub conns: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Operations asked for (watch: events expected, watchers x puts).
    pub total: u64,
    /// Operations that succeeded (watch: events received).
    pub ok: u64,
    /// Operations that failed or timed out (watch: also events never received).
    pub errors: u64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
    /// Wall time of the measured phase, in seconds.
    pub duration_secs: f64,
    /// Successful operations per second.
    pub throughput: f64,
    /// Latency of successful operations (watch: from sending a put to receiving its event).
    pub latency: Latency,
    /// Watch only: the latency of the puts that caused the events.
    pub put_latency: Option<Latency>,
}

impl fmt::Display for BenchResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(f, "Summary: {} ({})", self.workload, params.join(" "))?;
        writeln!(
            f,
            "  Endpoints:\t{} ({} conns, {} clients)",
            self.endpoints.join(","),
            self.conns,
            self.clients
        )?;
        writeln!(f, "  Total:\t{:.4} secs.", self.duration_secs)?;
        writeln!(
            f,
            "  Ops:\t\t{} ok, {} failed of {}",
            self.ok, self.errors, self.total
        )?;
        writeln!(f, "  Ops/sec:\t{:.1}", self.throughput)?;
        write_latency(f, "Latency", &self.latency)?;
        if let Some(put) = &self.put_latency {
            write_latency(f, "Put latency", put)?;
        }
        if let Some(e) = &self.first_error {
            writeln!(f, "  First error:\t{e}")?;
        }
        Ok(())
    }
}

fn write_latency(f: &mut fmt::Formatter<'_>, title: &str, l: &Latency) -> fmt::Result {
    writeln!(
        f,
        "  {title} (ms):\tmin {:.3}  mean {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        l.min, l.mean, l.p50, l.p90, l.p99, l.p999, l.max
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut a = Recorder::new().unwrap();
        let mut b = Recorder::new().unwrap();
        for us in 1..=500u64 {
            a.record(Duration::from_micros(us));
        }
        for us in 501..=1000u64 {
            b.record(Duration::from_micros(us));
        }
        a.merge(&b);
        assert_eq!(a.count(), 1000);
        let l = a.latency();
        assert!((l.p50 - 0.5).abs() < 0.002, "{l:?}");
        assert!((l.p90 - 0.9).abs() < 0.002, "{l:?}");
        assert!((l.p99 - 0.99).abs() < 0.002, "{l:?}");
        assert!((l.max - 1.0).abs() < 0.002, "{l:?}");
        assert!((l.min - 0.001).abs() < 0.0001, "{l:?}");
    }

    #[test]
    fn empty_and_extreme_latencies_do_not_fail() {
        assert_eq!(Recorder::new().unwrap().latency(), Latency::default());
        let mut r = Recorder::new().unwrap();
        r.record(Duration::ZERO);
        r.record(Duration::from_secs(100_000));
        assert_eq!(r.count(), 2);
    }

    #[test]
    fn results_round_trip_through_json() {
        let mut r = BenchResult {
            workload: "put".into(),
            total: 10,
            ok: 9,
            errors: 1,
            throughput: 90.0,
            ..Default::default()
        };
        r.params.insert("val-size".into(), "256".into());
        let json = serde_json::to_string(&r).unwrap();
        let back: BenchResult = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert!(r.to_string().contains("Ops/sec:\t90.0"));
    }
}
