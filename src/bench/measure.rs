//! What every rowlock run around a `rowlock serve` measures besides its own report: the group
//! sizes from `/metrics` (before and after), and the neutral client `wrk` with its CPU, memory
//! and group sizes.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::cpu::{self, PerTransaction};
use super::groups::{self, GroupSizes, Scrape};
use super::mib;
use super::server::Server;
use super::wrk::{self, Script, WrkResult};

/// Scrapes of `/metrics` around one run.
pub(crate) struct GroupWindow {
    http: reqwest::Client,
    base: String,
    before: Option<Scrape>,
}

impl GroupWindow {
    /// Scrapes now: the start of the window.
    pub(crate) async fn open(server: &Server) -> Self {
        let http = reqwest::Client::new();
        let before = groups::scrape(&http, &server.url).await;
        Self {
            http,
            base: server.url.clone(),
            before,
        }
    }

    /// Scrapes again; the group sizes of the window (`None` when no group ended in it).
    pub(crate) async fn close(self) -> Option<GroupSizes> {
        let after = groups::scrape(&self.http, &self.base).await;
        groups::between(self.before.as_ref(), after.as_ref())
    }
}

/// What `rowlock serve` did during one run: its CPU, its largest resident size and its group
/// sizes. Serialized flat into each benchmark's row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ServerSide {
    /// Largest VmRSS of `rowlock serve` sampled during this run.
    pub rowlock_rss_mib: f64,
    /// CPU per request during the rowlock run.
    pub rowlock_cpu: PerTransaction,
    /// Requests per group during the run, from `/metrics` (none: no group ended).
    pub group_size: Option<GroupSizes>,
}

/// Runs `run` (whose answer says how many requests it made) against `server`, measuring what
/// `rowlock serve` did meanwhile; CPU is per request, the client's share being this process's.
pub(crate) async fn around<T>(
    server: &Server,
    run: impl Future<Output = Result<T>>,
    requests: impl FnOnce(&T) -> u64,
) -> Result<(T, ServerSide)> {
    let window = GroupWindow::open(server).await;
    let rss = server.sample_rss();
    let cpu_before = cpu::Snapshot::take(Some(server.pid()));
    let result = run.await;
    let cpu_after = cpu::Snapshot::take(Some(server.pid()));
    let rss_kib = rss.finish().await;
    let group_size = window.close().await;
    let result = result?;
    let side = ServerSide {
        rowlock_rss_mib: mib(rss_kib),
        rowlock_cpu: cpu_after.since(&cpu_before, requests(&result), false),
        group_size,
    };
    Ok((result, side))
}

/// Runs wrk against `server` with the hammer's connection count and duration, measuring CPU per
/// request (postgres + serve + wrk), serve's memory and the group sizes. `delta` and
/// `verification` are left to the caller, which knows what to count.
pub(crate) async fn wrk_run(
    wrk: &Path,
    server: &Server,
    script: Script,
    clients: usize,
    duration: Duration,
    dir: &Path,
) -> Result<WrkResult> {
    let window = GroupWindow::open(server).await;
    let rss = server.sample_rss();
    let cpu_before = cpu::Snapshot::take(Some(server.pid()));
    let result = wrk::run(wrk, script, &server.url, clients, duration, dir).await;
    let cpu_after = cpu::Snapshot::take(Some(server.pid()));
    let rss_kib = rss.finish().await;
    let mut result = result?;
    result.cpu = cpu_after.since(&cpu_before, result.requests, true);
    result.rss_mib = mib(rss_kib);
    result.group_size = window.close().await;
    Ok(result)
}

/// `read()` once it stops changing: the requests wrk left in flight when it stopped have been
/// answered (or given up) by then. Reads every 200 ms, for at most 10 s.
pub(crate) async fn settled<F, Fut>(mut read: F) -> Result<i64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<i64>>,
{
    let mut last = read().await?;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = read().await?;
        if now == last {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// The wrk binary, or `None` with a warning: the wrk runs are skipped then.
pub(crate) fn find_wrk() -> Option<std::path::PathBuf> {
    let found = wrk::binary();
    if found.is_none() {
        eprintln!("warning: wrk is not installed; the wrk runs are skipped");
    }
    found
}
