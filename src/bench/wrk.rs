//! `wrk` as a neutral client: after each hammer run, the same server gets the same load from a
//! load generator that is not rowlock's own code, with the same connection count and duration.
//!
//! `wrk -t min(2, N) -c N -d <duration> --latency -s <script> <url>`, with the Lua scripts
//! written into the benchmark's work directory: `hot` posts `{"by":1}` to `hot`, `spread` to a
//! random `spread-0` … `spread-9999` per request, `transfer` a transfer of 1 … 100 between a
//! random pair of distinct accounts `account-0` … `account-999`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use super::cpu::PerTransaction;
use super::groups::GroupSizes;

const BINARY: &str = "/usr/bin/wrk";

/// Seeds every wrk thread's Lua state differently (`setup` runs once per thread, in the main
/// state; `init` in the thread's own).
const SEED: &str = r#"local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("seed", threads)
end
function init(args)
  math.randomseed(os.time() * 1000 + seed)
end
"#;

/// What wrk sends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Script {
    Hot,
    Spread,
    Transfer,
}

impl Script {
    fn name(self) -> &'static str {
        match self {
            Self::Hot => "hot",
            Self::Spread => "spread",
            Self::Transfer => "transfer",
        }
    }

    /// The URL wrk is given (its path is what `hot` posts to; the others build their own).
    fn url(self, base: &str) -> String {
        match self {
            Self::Hot => format!("{base}/counters/hot/increment"),
            Self::Spread | Self::Transfer => format!("{base}/"),
        }
    }

    fn lua(self) -> String {
        let head = "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n";
        match self {
            Self::Hot => format!("{head}wrk.body = '{{\"by\":1}}'\n"),
            Self::Spread => format!(
                "{head}{SEED}wrk.body = '{{\"by\":1}}'
function request()
  return wrk.format(nil, \"/counters/spread-\" .. math.random(0, 9999) .. \"/increment\")
end
"
            ),
            Self::Transfer => format!(
                "{head}{SEED}function request()
  local a = math.random(0, 999)
  local b = (a + math.random(1, 999)) % 1000
  local k = math.random(1, 100)
  local body = string.format('{{\"ops\":[{{\"counter\":\"account-%d\",\"by\":%d}},{{\"counter\":\"account-%d\",\"by\":%d}}]}}', a, -k, b, k)
  return wrk.format(nil, \"/transactions\", nil, body)
end
"
            ),
        }
    }
}

/// What one wrk run measured (and how the benchmark judged it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct WrkResult {
    pub rps: f64,
    /// Requests answered (any status).
    pub requests: u64,
    /// Answers other than 2xx or 3xx (for transfers: the bound's 409 refusals among them).
    pub non_2xx: u64,
    /// wrk's socket errors: connect, read, write, timeout.
    pub socket_errors: [u64; 4],
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU per request during the run: postgres + serve + wrk (the client).
    pub cpu: PerTransaction,
    /// The counters' total change (counters) or the balances' sum's (transfers).
    pub delta: i64,
    /// `PASS` or `FAIL` (see the benchmark's README).
    pub verification: String,
    /// Largest VmRSS of `rowlock serve` sampled during the run.
    pub rss_mib: f64,
    /// Group sizes during the wrk run.
    pub group_size: Option<GroupSizes>,
}

/// The wrk binary, when it is installed (a warning is printed once by the caller otherwise).
pub(crate) fn binary() -> Option<PathBuf> {
    let fixed = PathBuf::from(BINARY);
    if fixed.is_file() {
        return Some(fixed);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("wrk"))
            .find(|p| p.is_file())
    })
}

/// Runs `script` against `base` with `connections` connections for `duration`; the script goes
/// to `dir`. Fills in what wrk prints; CPU, delta and verification are the caller's.
pub(crate) async fn run(
    wrk: &Path,
    script: Script,
    base: &str,
    connections: usize,
    duration: Duration,
    dir: &Path,
) -> Result<WrkResult> {
    let path = dir.join(format!("wrk-{}.lua", script.name()));
    std::fs::write(&path, script.lua())?;
    let seconds = duration.as_secs().max(1);
    let out = Command::new(wrk)
        .args(["-t", &connections.clamp(1, 2).to_string()])
        .args(["-c", &connections.to_string()])
        .args(["-d", &format!("{seconds}s"), "--latency", "-s"])
        .arg(&path)
        .arg(script.url(base))
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {}", wrk.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse(&stdout).with_context(|| format!("cannot read wrk's output:\n{stdout}"))
}

/// Requests/sec, the 50 % and 99 % latencies, requests, non-2xx answers and socket errors.
pub(crate) fn parse(stdout: &str) -> Result<WrkResult> {
    let line = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::trim))
    };
    let rps = line("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .context("no Requests/sec")?;
    let requests = stdout
        .lines()
        .find_map(|l| {
            let (n, rest) = l.trim().split_once(' ')?;
            rest.starts_with("requests in").then(|| n.parse().ok())?
        })
        .context("no request count")?;
    let non_2xx = line("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut socket_errors = [0; 4];
    if let Some(errors) = line("Socket errors:") {
        for (i, kind) in ["connect", "read", "write", "timeout"].iter().enumerate() {
            socket_errors[i] = errors
                .split(',')
                .find_map(|e| e.trim().strip_prefix(kind))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
        }
    }
    let percentile = |p: &str| line(p).and_then(millis).context("no latency distribution");
    Ok(WrkResult {
        rps,
        requests,
        non_2xx,
        socket_errors,
        p50_ms: percentile("50%")?,
        p99_ms: percentile("99%")?,
        ..WrkResult::default()
    })
}

/// `812.00us`, `1.23ms`, `2.01s`, `1.50m` as milliseconds.
fn millis(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(n * scale)
}

/// Counters: every 2xx answer was one increment of 1, and each connection may have had one more
/// request in flight (applied, unanswered) when wrk stopped.
pub(crate) fn verify_counters(result: &WrkResult, connections: usize) -> &'static str {
    let ok = result.requests.saturating_sub(result.non_2xx) as i64;
    let delta = result.delta;
    if ok <= delta && delta <= ok + connections as i64 {
        "PASS"
    } else {
        "FAIL"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 2s test @ http://127.0.0.1:4000/counters/hot/increment
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms    1.20ms  30.00ms   90.00%
    Req/Sec     1.90k   200.00     2.20k    70.00%
  Latency Distribution
     50%  812.00us
     75%    2.00ms
     90%    3.00ms
     99%    1.25s
  7600 requests in 2.00s, 1.50MB read
  Socket errors: connect 0, read 1, write 0, timeout 3
  Non-2xx or 3xx responses: 12
Requests/sec:   3799.50
Transfer/sec:    768.00KB
";

    #[test]
    fn wrk_output_is_read() {
        let r = parse(OUTPUT).unwrap();
        assert_eq!(r.rps, 3799.5);
        assert_eq!(r.requests, 7600);
        assert_eq!(r.non_2xx, 12);
        assert_eq!(r.socket_errors, [0, 1, 0, 3]);
        assert!((r.p50_ms - 0.812).abs() < 1e-9);
        assert_eq!(r.p99_ms, 1250.0);
    }

    #[test]
    fn counters_allow_one_unanswered_request_per_connection() {
        let mut r = parse(OUTPUT).unwrap();
        for (delta, verdict) in [
            (7588, "PASS"),
            (7596, "PASS"),
            (7587, "FAIL"),
            (7597, "FAIL"),
        ] {
            r.delta = delta;
            assert_eq!(verify_counters(&r, 8), verdict, "delta {delta}");
        }
    }
}
