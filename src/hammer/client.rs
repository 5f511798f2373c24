//! The hammer's one HTTP client ([`http`]), and its view of the counter API: read, create and
//! increment counters over it.
//!
//! URLs and bodies are built once per counter, not per request, so that the load generator
//! spends its CPU on requests rather than on formatting them (it shares the machine with the
//! server it measures).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::header::{HeaderValue, CONTENT_TYPE, IF_MATCH};
use reqwest::StatusCode;
use serde::Deserialize;

use super::args::{HammerArgs, LockArg};

/// One HTTP client (a pool of keep-alive connections) and the prebuilt requests of a run.
pub struct Api {
    http: reqwest::Client,
    /// The instances, taken in turn.
    bases: Bases,
    /// `POST` URL of each counter's increment on each instance (`[instance][counter]`), with
    /// the run's query string, parsed once.
    increment_urls: Vec<Vec<reqwest::Url>>,
    /// Which instance the next increment goes to.
    next: std::sync::atomic::AtomicUsize,
    names: Vec<String>,
    body: String,
}

/// The parts of a counter the hammer needs.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct CounterState {
    pub value: i64,
    pub version: i64,
}

/// What one increment `POST` came back with.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// 200: applied and committed.
    Applied(CounterState),
    /// Any other status: not applied (or, for unexpected 5xx, unknown).
    Status(u16),
}

/// The run's HTTP client: keep-alive connections, one per virtual client, kept for the whole run;
/// no Nagle delay; every request bounded by `--timeout`.
pub(crate) fn http(args: &HammerArgs) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections())
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(args.timeout)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .context("cannot build the HTTP client")
}

impl Api {
    /// The increment URLs of `names` for `args`, on `http`.
    pub fn new(args: &HammerArgs, http: reqwest::Client, names: &[String]) -> Result<Self> {
        let bases = args.bases();
        let mut query = Vec::new();
        if let Some(lock) = args.lock.query_value() {
            query.push(format!("lock={lock}"));
        }
        if let (Some(ms), LockArg::Wait) = (args.lock_timeout_ms, args.lock) {
            query.push(format!("lock_timeout_ms={ms}"));
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        let increment_urls = bases
            .all()
            .iter()
            .map(|base| {
                names
                    .iter()
                    .map(|n| reqwest::Url::parse(&format!("{base}/counters/{n}/increment{query}")))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<_, _>>()
            .context("cannot build the increment URLs")?;
        Ok(Self {
            http,
            bases,
            increment_urls,
            next: Default::default(),
            names: names.to_vec(),
            body: format!("{{\"by\":{}}}", args.by),
        })
    }

    /// Increments counter number `index`, with `If-Match` when `if_match` is given.
    pub async fn increment(
        &self,
        index: usize,
        if_match: Option<i64>,
    ) -> Result<Answer, reqwest::Error> {
        let instance = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let urls = &self.increment_urls[instance % self.increment_urls.len()];
        let mut request = self
            .http
            .post(urls[index].clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(self.body.clone());
        if let Some(version) = if_match {
            request = request.header(IF_MATCH, format!("\"{version}\""));
        }
        let response = request.send().await?;
        let status = response.status();
        if status == StatusCode::OK {
            Ok(Answer::Applied(response.json().await?))
        } else {
            // Read the body anyway so that the connection can be reused.
            let _ = response.bytes().await;
            Ok(Answer::Status(status.as_u16()))
        }
    }

    /// Reads counter number `index` during the load: its state, or the status it answered.
    pub async fn state(&self, index: usize) -> Result<Result<CounterState, u16>, reqwest::Error> {
        let response = self
            .http
            .get(format!(
                "{}/counters/{}",
                self.bases.next(),
                self.names[index]
            ))
            .send()
            .await?;
        if response.status() == StatusCode::OK {
            Ok(Ok(response.json().await?))
        } else {
            let status = response.status().as_u16();
            let _ = response.bytes().await;
            Ok(Err(status))
        }
    }

    /// Reads counter `name`; `None` when it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<CounterState>> {
        let response = self
            .http
            .get(format!("{}/counters/{name}", self.bases.next()))
            .send()
            .await
            .with_context(|| format!("cannot read counter '{name}'"))?;
        match response.status() {
            StatusCode::OK => Ok(Some(response.json().await?)),
            StatusCode::NOT_FOUND => Ok(None),
            other => bail!("reading counter '{name}' answered {other}"),
        }
    }

    /// Reads counter `name`, creating it with value 0 when it does not exist.
    pub async fn get_or_create(&self, name: &str) -> Result<CounterState> {
        if let Some(state) = self.get(name).await? {
            return Ok(state);
        }
        let response = self
            .http
            .put(format!("{}/counters/{name}", self.bases.next()))
            .json(&serde_json::json!({"value": 0}))
            .send()
            .await
            .with_context(|| format!("cannot create counter '{name}'"))?;
        match response.status() {
            // 200: someone else created it in between; reading again gives its real state.
            StatusCode::CREATED | StatusCode::OK => self
                .get(name)
                .await?
                .with_context(|| format!("counter '{name}' vanished right after its creation")),
            other => bail!("creating counter '{name}' answered {other}"),
        }
    }
}

/// The base URLs of a run's rowlock instances, handed out in turn.
#[derive(Debug, Default)]
pub struct Bases {
    urls: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
}

impl Bases {
    pub fn new(urls: &[String]) -> Self {
        Self {
            urls: urls
                .iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            next: Default::default(),
        }
    }

    /// The next instance's base URL (round-robin).
    pub fn next(&self) -> &str {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.urls
            .get(i % self.urls.len().max(1))
            .map_or("", String::as_str)
    }

    /// Every base URL, in order.
    pub fn all(&self) -> &[String] {
        &self.urls
    }
}
