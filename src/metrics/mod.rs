//! Prometheus metrics: what rowlock is doing under contention.
//!
//! One [`Metrics`] per server (so tests can read their own), shared by the request middleware,
//! the transaction path and `GET /metrics`. Names and meanings are listed in README.md.

use std::time::Duration;

use deadpool_postgres::Pool;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

mod labels;

use labels::{LockLabels, ProblemLabels, QueueLabels, RequestLabels, RetryLabels, RouteLabels};

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 100 µs to ~26 s.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

/// Every metric rowlock exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Histograms<RouteLabels>,
    problems: Family<ProblemLabels, Counter>,
    lock_wait: Histograms<LockLabels>,
    retries: Family<RetryLabels, Counter>,
    pool_size: Gauge,
    pool_available: Gauge,
    pool_waiting: Gauge,
    /// Jobs by queue and state, refreshed on every scrape.
    queue_jobs: Family<QueueLabels, Gauge>,
    /// Requests per committed group (group commit).
    group_size: Histogram,
    /// How long a request waited in rowlock before its group started.
    group_wait: Histogram,
    /// Requests waiting in rowlock for a group to take them.
    group_queued: Gauge,
    /// Requests (acknowledgements and claims) per job group.
    job_group_requests: Histogram,
    /// Job acknowledgements (complete, fail, heartbeat) written per job group.
    job_group_acks: Histogram,
    /// Job requests waiting in rowlock for a job group to take them.
    job_group_queued: Gauge,
    /// Long-polling claims and waiting lease acquisitions, refreshed on every scrape.
    waiters: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric at zero, named `rowlock_…`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rowlock");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Histograms::<RouteLabels>::new_with_constructor(seconds_histogram);
        let problems = Family::<ProblemLabels, Counter>::default();
        let lock_wait = Histograms::<LockLabels>::new_with_constructor(seconds_histogram);
        let retries = Family::<RetryLabels, Counter>::default();
        let queue_jobs = Family::<QueueLabels, Gauge>::default();
        // 1, 2, 4 … 2048 requests.
        let group_size = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let group_wait = seconds_histogram();
        let group_queued = Gauge::default();
        let job_group_requests = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let job_group_acks = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let job_group_queued = Gauge::default();
        let waiters = Gauge::default();
        let (pool_size, pool_available, pool_waiting) =
            (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "problems",
            "Error responses by status and problem code (423, 409, 412, 503, …)",
            problems.clone(),
        );
        registry.register(
            "lock_wait_seconds",
            "Time from BEGIN until the target rows were locked, by resource and lock mode",
            lock_wait.clone(),
        );
        registry.register(
            "transaction_retries",
            "Transactions run again after a serialization failure or deadlock",
            retries.clone(),
        );
        registry.register(
            "pool_connections",
            "Connections in the pool",
            pool_size.clone(),
        );
        registry.register(
            "pool_available",
            "Idle connections in the pool",
            pool_available.clone(),
        );
        registry.register(
            "pool_waiting",
            "Requests waiting for a pooled connection",
            pool_waiting.clone(),
        );
        registry.register("queue_jobs", "Jobs by queue and state", queue_jobs.clone());
        registry.register(
            "group_size",
            "Requests that shared one group-commit transaction",
            group_size.clone(),
        );
        registry.register(
            "group_wait_seconds",
            "Time a request waited in rowlock before its group's transaction began",
            group_wait.clone(),
        );
        registry.register(
            "group_queued",
            "Requests waiting in rowlock for a group to take them (their rows are in a group in \
             the database, or every group slot is busy)",
            group_queued.clone(),
        );
        registry.register(
            "job_group_requests",
            "Job requests (acknowledgements, claims) that shared one transaction",
            job_group_requests.clone(),
        );
        registry.register(
            "job_group_acks",
            "Job acknowledgements (complete, fail, heartbeat) written by one transaction",
            job_group_acks.clone(),
        );
        registry.register(
            "job_group_queued",
            "Job requests waiting in rowlock for a job group to take them",
            job_group_queued.clone(),
        );
        registry.register(
            "waiters",
            "Requests waiting for a job or a lease (long-polling claims, lease acquisitions with \
             wait_ms); at most --max-waiters",
            waiters.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            problems,
            lock_wait,
            retries,
            pool_size,
            pool_available,
            pool_waiting,
            queue_jobs,
            group_size,
            group_wait,
            group_queued,
            job_group_requests,
            job_group_acks,
            job_group_queued,
            waiters,
        }
    }

    /// Sets how many requests wait for a job or a lease.
    pub fn set_waiters(&self, n: usize) {
        let _ = self.waiters.set(n as i64);
    }

    /// Sets how many requests wait for a group.
    pub fn group_queued(&self, n: usize) {
        let _ = self.group_queued.set(n as i64);
    }

    /// Sets how many job requests wait for a job group.
    pub fn job_group_queued(&self, n: usize) {
        let _ = self.job_group_queued.set(n as i64);
    }

    /// Records one job group as it starts: its requests and acknowledgements.
    pub fn job_group(&self, requests: usize, acks: usize) {
        self.job_group_requests.observe(requests as f64);
        self.job_group_acks.observe(acks as f64);
    }

    /// Records one group as it starts: its size and how long each of its requests waited.
    pub fn group(&self, waits: impl ExactSizeIterator<Item = Duration>) {
        self.group_size.observe(waits.len() as f64);
        for waited in waits {
            self.group_wait.observe(waited.as_secs_f64());
        }
    }

    /// Records one finished HTTP request (and its problem code, if it failed).
    pub fn request(
        &self,
        route: &str,
        method: &str,
        status: u16,
        elapsed: Duration,
        code: Option<&str>,
    ) {
        let route = route.to_owned();
        let _ = self
            .requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
        if let Some(code) = code {
            let _ = self
                .problems
                .get_or_create(&ProblemLabels {
                    status,
                    code: code.to_owned(),
                })
                .inc();
        }
    }

    /// Records how long a transaction took to lock its rows.
    pub fn lock_wait(&self, resource: &str, mode: &str, waited: Duration) {
        self.lock_wait
            .get_or_create(&LockLabels {
                resource: resource.to_owned(),
                mode: mode.to_owned(),
            })
            .observe(waited.as_secs_f64());
    }

    /// Records one transaction retry (`serialization_failure` or `deadlock`).
    pub fn retry(&self, reason: &str) {
        let _ = self
            .retries
            .get_or_create(&RetryLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Replaces the queue depth gauges with `(queue, state, jobs)` read just now.
    pub fn set_queue_depths(&self, depths: &[(String, String, i64)]) {
        self.queue_jobs.clear();
        for (queue, state, jobs) in depths {
            let _ = self
                .queue_jobs
                .get_or_create(&QueueLabels {
                    queue: queue.clone(),
                    state: state.clone(),
                })
                .set(*jobs);
        }
    }

    /// The text exposition, with the pool gauges read now.
    pub fn render(&self, pool: &Pool) -> String {
        let status = pool.status();
        let _ = self.pool_size.set(status.size as i64);
        let _ = self.pool_available.set(status.available as i64);
        let _ = self.pool_waiting.set(status.waiting as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
