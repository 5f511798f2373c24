//! `rowlock serve` as a child process of the benchmark: started on a free loopback port with
//! `DATABASE_URL` set, awaited until `/readyz` answers, sampled for resident memory, stopped with
//! SIGTERM (graceful) and killed if it does not go.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const READY_DEADLINE: Duration = Duration::from_secs(30);
const STOP_DEADLINE: Duration = Duration::from_secs(15);
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// A running `rowlock serve`.
pub(crate) struct Server {
    child: Child,
    pid: u32,
    pub url: String,
}

/// Resident memory of a process, from `/proc/<pid>/status`, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Memory {
    /// VmRSS: resident now.
    pub rss_kib: u64,
    /// VmHWM: the peak resident size since the process started.
    pub hwm_kib: u64,
}

impl Server {
    /// Starts `binary serve` against `database_url` with `pool_size` connections, `workers`
    /// HTTP workers (0: actix's default) and group commit on or off, logging to `log`, with
    /// `env` added to its environment.
    pub(crate) async fn start(
        binary: &Path,
        database_url: &str,
        pool_size: usize,
        workers: usize,
        group_commit: bool,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log_file = std::fs::File::create(log)?;
        let child = Command::new(binary)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--pool-size", &pool_size.to_string()])
            .args(["--workers", &workers.to_string()])
            .env("DATABASE_URL", database_url)
            // `--group-commit` parses as a bare flag (it cannot say `off`); the variable can.
            .env(
                "ROWLOCK_GROUP_COMMIT",
                if group_commit { "on" } else { "off" },
            )
            // Per-request logs would measure the terminal, not rowlock.
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child.id().context("rowlock serve exited at once")?;
        let mut server = Self {
            child,
            pid,
            url: format!("http://127.0.0.1:{port}"),
        };
        server.wait_until_ready(log).await?;
        Ok(server)
    }

    async fn wait_until_ready(&mut self, log: &Path) -> Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let ready = http
                .get(format!("{}/readyz", self.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                bail!("rowlock serve exited ({status}) before it was ready:\n{log}");
            }
            if Instant::now() > deadline {
                bail!("rowlock serve was not ready within {READY_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id of `rowlock serve`.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Resident memory now.
    pub(crate) fn memory(&self) -> Memory {
        memory(self.pid)
    }

    /// Samples VmRSS until the returned sampler is finished; it returns the largest sample.
    pub(crate) fn sample_rss(&self) -> RssSampler {
        let pid = self.pid;
        let (done, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut max = 0;
            let mut tick = tokio::time::interval(RSS_SAMPLE_EVERY);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => max = max.max(memory(pid).rss_kib),
                }
            }
            max.max(memory(pid).rss_kib)
        });
        RssSampler { done, task }
    }

    /// SIGTERM, then wait; SIGKILL if it does not stop in time.
    pub(crate) async fn stop(mut self) -> Result<()> {
        // SAFETY: kill(2) on the pid of our own, not yet reaped, child. Should the signal not
        // arrive, the wait below runs into its deadline and the child is killed.
        let _ = unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        match tokio::time::timeout(STOP_DEADLINE, self.child.wait()).await {
            // How it exited does not matter here: the run's numbers are already taken.
            Ok(status) => {
                let _ = status?;
            }
            Err(_) => {
                tracing::warn!(pid = self.pid, "rowlock serve did not stop; killing it");
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}

/// A running RSS sampler.
pub(crate) struct RssSampler {
    done: oneshot::Sender<()>,
    task: JoinHandle<u64>,
}

impl RssSampler {
    /// Stops sampling; the largest VmRSS seen, in KiB.
    pub(crate) async fn finish(self) -> u64 {
        let _ = self.done.send(());
        self.task.await.unwrap_or(0)
    }
}

fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    }
}
