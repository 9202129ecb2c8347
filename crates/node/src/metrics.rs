//! The member's Prometheus metrics, under etcd's names, types and buckets, so that dashboards
//! and alerts written for etcd read ferrocd unchanged.
//!
//! Each [`Metrics`] owns its own [`prometheus::Registry`] (never the process-global one), so
//! that several members in one process, as in tests, do not collide. The embedder creates one,
//! hands it to the transport and the node, and serves [`Metrics::registry`] (`ferrocd` does so
//! on `/metrics`). Gauges that mirror state the node keeps anyway (leader, indices, sizes) are
//! set when they change or by [`crate::Node::refresh_metrics`] before a scrape; counters and
//! histograms are updated where the event happens, with atomic operations only.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// A registration failed: two metrics with one name (a programming error, reported at start).
#[derive(Debug, thiserror::Error)]
#[error("registering metric: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// etcd's buckets for disk latencies: 1 ms to 8 s, doubling (`ExponentialBuckets(0.001, 2, 14)`).
fn disk_buckets() -> Vec<f64> {
    exponential(0.001, 14)
}

fn exponential(start: f64, count: usize) -> Vec<f64> {
    std::iter::successors(Some(start), |b| Some(b * 2.0))
        .take(count)
        .collect()
}

/// Every metric a member reports, registered in one registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// `etcd_server_has_leader`: 1 while a leader is known.
    pub has_leader: IntGauge,
    /// `etcd_server_is_leader`: 1 while this member leads.
    pub is_leader: IntGauge,
    /// `etcd_server_leader_changes_seen_total`.
    pub leader_changes: IntCounter,
    /// `etcd_server_proposals_committed_total` (a gauge in etcd: the committed index).
    pub proposals_committed: IntGauge,
    /// `etcd_server_proposals_applied_total` (a gauge in etcd: the applied index).
    pub proposals_applied: IntGauge,
    /// `etcd_server_proposals_pending`: proposals waiting for their result.
    pub proposals_pending: IntGauge,
    /// `etcd_server_proposals_failed_total`: proposals that timed out, were dropped or refused.
    pub proposals_failed: IntCounter,
    /// `etcd_disk_wal_fsync_duration_seconds`.
    pub wal_fsync: Histogram,
    /// `etcd_disk_backend_commit_duration_seconds`.
    pub backend_commit: Histogram,
    /// `etcd_mvcc_db_total_size_in_bytes`.
    pub db_total_size: IntGauge,
    /// `etcd_mvcc_db_total_size_in_use_in_bytes`.
    pub db_in_use_size: IntGauge,
    /// `etcd_debugging_mvcc_keys_total`.
    pub keys_total: IntGauge,
    /// `etcd_network_peer_sent_bytes_total{To}`.
    pub peer_sent_bytes: IntCounterVec,
    /// `etcd_network_peer_received_bytes_total{From}`.
    pub peer_received_bytes: IntCounterVec,
    /// `etcd_network_peer_round_trip_time_seconds{To}`: from a heartbeat to its response, so
    /// measured by the leader only (etcd probes from every member).
    pub peer_round_trip: HistogramVec,
    /// `etcd_mvcc_{range,put,delete,txn}_total`, brought up to the store's counts by
    /// [`Metrics::observe_mvcc`].
    mvcc: MvccCounters,
}

/// The store's operation counters, and the counts they last caught up with.
#[derive(Clone, Debug)]
struct MvccCounters {
    ranges: IntCounter,
    puts: IntCounter,
    deletes: IntCounter,
    txns: IntCounter,
    seen: Arc<std::sync::Mutex<mvcc::OpCounts>>,
}

impl Metrics {
    /// A fresh set, registered in a new registry.
    pub fn new() -> Result<Arc<Metrics>, MetricsError> {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| -> Result<IntGauge, MetricsError> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, MetricsError> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let histogram = |name: &str, help: &str| -> Result<Histogram, MetricsError> {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(disk_buckets()))?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let counter_vec = |name: &str, help: &str, label: &str| -> Result<_, MetricsError> {
            let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let peer_round_trip = HistogramVec::new(
            HistogramOpts::new(
                "etcd_network_peer_round_trip_time_seconds",
                "Round-Trip-Time histogram between peers",
            )
            .buckets(exponential(0.0001, 14)),
            &["To"],
        )?;
        registry.register(Box::new(peer_round_trip.clone()))?;
        let metrics = Metrics {
            has_leader: gauge(
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            )?,
            is_leader: gauge(
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            )?,
            leader_changes: counter(
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            )?,
            proposals_committed: gauge(
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            )?,
            proposals_applied: gauge(
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            )?,
            proposals_pending: gauge(
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            )?,
            proposals_failed: counter(
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            )?,
            wal_fsync: histogram(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
            )?,
            backend_commit: histogram(
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
            )?,
            db_total_size: gauge(
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            )?,
            db_in_use_size: gauge(
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            )?,
            keys_total: gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.")?,
            peer_sent_bytes: counter_vec(
                "etcd_network_peer_sent_bytes_total",
                "The total number of bytes sent to peers.",
                "To",
            )?,
            peer_received_bytes: counter_vec(
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
                "From",
            )?,
            peer_round_trip,
            mvcc: MvccCounters {
                ranges: counter(
                    "etcd_mvcc_range_total",
                    "Total number of ranges seen by this member.",
                )?,
                puts: counter(
                    "etcd_mvcc_put_total",
                    "Total number of puts seen by this member.",
                )?,
                deletes: counter(
                    "etcd_mvcc_delete_total",
                    "Total number of deletes seen by this member.",
                )?,
                txns: counter(
                    "etcd_mvcc_txn_total",
                    "Total number of txns seen by this member.",
                )?,
                seen: Arc::default(),
            },
            registry,
        };
        Ok(Arc::new(metrics))
    }

    /// Brings `etcd_mvcc_*_total` up to the store's counts `now`. A store opened anew (a
    /// snapshot installed) counts from zero again: its counts are all new then.
    pub fn observe_mvcc(&self, now: mvcc::OpCounts) {
        let m = &self.mvcc;
        let mut seen = m
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let delta = |now: u64, seen: u64| if now >= seen { now - seen } else { now };
        m.ranges.inc_by(delta(now.ranges, seen.ranges));
        m.puts.inc_by(delta(now.puts, seen.puts));
        m.deletes.inc_by(delta(now.deletes, seen.deletes));
        m.txns.inc_by(delta(now.txns, seen.txns));
        *seen = now;
    }

    /// The registry every metric of this member is in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// What a backend is given to report its commit durations here.
    pub fn backend_commit_observer(&self) -> storage_api::CommitObserver {
        let histogram = self.backend_commit.clone();
        Arc::new(move |d: Duration| histogram.observe(d.as_secs_f64()))
    }

    /// The counter of bytes sent to member `to` (kept by the sender, so that counting costs
    /// one atomic add).
    pub fn sent_counter(&self, to: u64) -> IntCounter {
        self.peer_sent_bytes
            .with_label_values(&[&format!("{to:x}")])
    }

    /// The counter of bytes received from member `from`.
    pub fn received_counter(&self, from: u64) -> IntCounter {
        self.peer_received_bytes
            .with_label_values(&[&format!("{from:x}")])
    }

    /// Records one round trip to member `to`.
    pub fn round_trip(&self, to: u64, rtt: Duration) {
        self.peer_round_trip
            .with_label_values(&[&format!("{to:x}")])
            .observe(rtt.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use prometheus::Encoder;

    use super::*;

    fn text(m: &Metrics) -> String {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&m.registry().gather(), &mut out)
            .expect("encoding gathered metrics");
        String::from_utf8(out).expect("text format is utf-8")
    }

    #[test]
    fn mvcc_counters_follow_the_stores_counts_across_a_new_store() {
        let m = Metrics::new().expect("metrics");
        let counts = |puts, deletes| mvcc::OpCounts {
            ranges: 1,
            puts,
            deletes,
            txns: 0,
        };
        m.observe_mvcc(counts(2, 3));
        m.observe_mvcc(counts(2, 3));
        let t = text(&m);
        assert!(t.contains("etcd_mvcc_put_total 2"), "{t}");
        assert!(t.contains("etcd_mvcc_delete_total 3"), "{t}");
        assert!(t.contains("# TYPE etcd_mvcc_range_total counter"), "{t}");
        // A snapshot installed: the new store counts from zero, and its counts are added.
        m.observe_mvcc(counts(1, 0));
        assert!(text(&m).contains("etcd_mvcc_put_total 3"));
    }

    #[test]
    fn renders_etcd_names_types_and_buckets() {
        let m = Metrics::new().expect("metrics");
        m.has_leader.set(1);
        m.leader_changes.inc();
        m.wal_fsync.observe(0.0015);
        m.sent_counter(0x8e9e05c52164694d).inc_by(100);
        m.round_trip(2, Duration::from_micros(250));
        let t = text(&m);
        for want in [
            "# TYPE etcd_server_has_leader gauge",
            "etcd_server_has_leader 1",
            "# TYPE etcd_server_leader_changes_seen_total counter",
            "etcd_server_leader_changes_seen_total 1",
            "# TYPE etcd_disk_wal_fsync_duration_seconds histogram",
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 0",
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 1",
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"} 1",
            "etcd_network_peer_sent_bytes_total{To=\"8e9e05c52164694d\"} 100",
            "etcd_network_peer_round_trip_time_seconds_bucket{To=\"2\",le=\"0.0002\"} 0",
            "etcd_network_peer_round_trip_time_seconds_bucket{To=\"2\",le=\"0.0004\"} 1",
        ] {
            assert!(t.contains(want), "missing {want:?} in:\n{t}");
        }
    }

    #[test]
    fn two_sets_in_one_process_do_not_collide() {
        let a = Metrics::new().expect("first");
        let b = Metrics::new().expect("second");
        a.keys_total.set(3);
        assert!(text(&a).contains("etcd_debugging_mvcc_keys_total 3"));
        assert!(text(&b).contains("etcd_debugging_mvcc_keys_total 0"));
    }
}
