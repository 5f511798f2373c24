//! A PostgreSQL cluster that rowlock starts itself: for `rowlock serve` without `DATABASE_URL`,
//! for the test harness and for the benchmark.
//!
//! The server binaries are found on PATH, through `pg_config --bindir`, or under
//! `/usr/lib/postgresql/*/bin`. The first start runs `initdb`. `postgres` runs as a direct child
//! of a supervisor thread that lives exactly as long as the server, with a parent-death signal,
//! so that a rowlock that is killed outright does not leave a server behind. `initdb` and
//! `postgres` refuse to run as root, so when rowlock runs as root the cluster runs as the
//! unprivileged `postgres` OS user (configurable with `ROWLOCK_PG_OS_USER`).
//!
//! The server listens on loopback only, and even there it asks for a password: the superuser's
//! is a random secret kept in `rowlock-password` (mode 0600) in the data directory, so another
//! local user can neither connect as superuser nor run programs as the cluster's OS user. A data
//! directory made by an earlier rowlock (which trusted every loopback connection) is given a
//! password on its first start.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

mod os;
mod password;
mod pgbouncer;
mod process;

use os::OsUser;
pub use os::{find_bin_dir, run_unprivileged};
pub use pgbouncer::Pgbouncer;

/// Superuser name created by `initdb`.
pub const SUPERUSER: &str = "postgres";
/// The superuser's password, in the data directory.
pub const PASSWORD_FILE: &str = "rowlock-password";
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// How the cluster trades durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// PostgreSQL's defaults: every commit is flushed. For `serve` and the benchmark.
    Durable,
    /// `fsync=off` and friends: for throwaway test clusters only.
    Throwaway,
}

/// A running local PostgreSQL server.
pub struct LocalCluster {
    data_dir: PathBuf,
    port: u16,
    password: String,
    pid: u32,
    durability: Durability,
    supervisor: Option<JoinHandle<()>>,
    remove_on_stop: bool,
}

impl LocalCluster {
    /// Starts (and on first use initialises) the cluster kept in `data_dir`.
    pub fn start(data_dir: &Path, durability: Durability) -> Result<Self> {
        Self::start_on(data_dir, durability, None)
    }

    /// Stops the server the way a crash would (`-m immediate`: no checkpoint, open
    /// transactions lost, connections dropped) and starts it again on the same port, after
    /// crash recovery. For fault tests.
    pub fn crash_and_restart(&mut self) -> Result<()> {
        self.restart_with(libc::SIGQUIT)
    }

    /// `pg_ctl restart -m fast`: open transactions rolled back, connections closed, a
    /// checkpoint, and the server started again on the same port. For fault tests.
    pub fn restart_fast(&mut self) -> Result<()> {
        self.restart_with(libc::SIGINT)
    }

    fn restart_with(&mut self, signal: libc::c_int) -> Result<()> {
        if let Some(supervisor) = self.supervisor.take() {
            // SAFETY: plain kill(2) on the pid of our own child.
            unsafe {
                // An error (ESRCH) means it has already exited: the join below returns.
                let _ = libc::kill(self.pid as libc::pid_t, signal);
            }
            let _ = supervisor.join();
        }
        let mut restarted = Self::start_on(&self.data_dir, self.durability, Some(self.port))?;
        self.password = std::mem::take(&mut restarted.password);
        self.pid = restarted.pid;
        self.supervisor = restarted.supervisor.take();
        Ok(())
    }

    fn start_on(data_dir: &Path, durability: Durability, port: Option<u16>) -> Result<Self> {
        let bin = find_bin_dir()?;
        fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        let data_dir = data_dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", data_dir.display()))?;
        let os_user = OsUser::for_cluster()?;
        if let Some(user) = &os_user {
            tracing::info!(user = %user.name, "running as root: the local PostgreSQL runs as an unprivileged OS user");
            user.check_can_reach(&data_dir)?;
            std::os::unix::fs::chown(&data_dir, Some(user.uid), Some(user.gid))
                .with_context(|| format!("cannot hand {} to {}", data_dir.display(), user.name))?;
        }
        fs::set_permissions(&data_dir, fs::Permissions::from_mode(0o700))?;

        if !data_dir.join("PG_VERSION").exists() {
            process::initdb(&bin, &data_dir, &os_user)?;
        }
        let password = password::require_password(&bin, &data_dir, &os_user)?;

        let port = match port {
            Some(port) => port,
            None => free_port()?,
        };
        let log_path = data_dir.join("rowlock-postgres.log");
        let (pid, supervisor) =
            process::spawn_postgres(&bin, &data_dir, port, durability, &os_user, &log_path)?;
        let cluster = Self {
            data_dir,
            port,
            password,
            pid,
            durability,
            supervisor: Some(supervisor),
            remove_on_stop: false,
        };
        process::wait_until_ready(&bin, cluster.port, cluster.supervisor.as_ref(), &log_path)?;
        tracing::info!(port, pid, dir = %cluster.data_dir.display(), "local PostgreSQL is ready");
        Ok(cluster)
    }

    /// Starts a fresh throwaway cluster in a temporary directory that is removed on [`stop`].
    /// Directories left behind by processes that died are removed first.
    ///
    /// [`stop`]: LocalCluster::stop
    pub fn start_throwaway(durability: Durability) -> Result<Self> {
        remove_stale_throwaway_dirs();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("{THROWAWAY_PREFIX}{}-{nanos}", std::process::id()));
        let mut cluster = Self::start(&dir, durability)?;
        cluster.remove_on_stop = true;
        Ok(cluster)
    }

    /// The port the server listens on (loopback only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `database` as the superuser, with its password.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// The superuser's password (for tools that take it from `PGPASSWORD`).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Fast shutdown: open transactions are rolled back, the server exits, the call waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(supervisor) = self.supervisor.take() else {
            return;
        };
        // SAFETY: plain kill(2) on the pid of our own child.
        unsafe {
            // An error (ESRCH) means it has already exited.
            let _ = libc::kill(self.pid as libc::pid_t, libc::SIGINT);
        }
        let deadline = Instant::now() + SHUTDOWN_DEADLINE;
        while !supervisor.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !supervisor.is_finished() {
            tracing::warn!(
                pid = self.pid,
                "PostgreSQL did not stop in time; sending SIGQUIT"
            );
            unsafe {
                let _ = libc::kill(self.pid as libc::pid_t, libc::SIGQUIT);
            }
        }
        let _ = supervisor.join();
        if self.remove_on_stop {
            let _ = fs::remove_dir_all(&self.data_dir);
        }
        tracing::info!(pid = self.pid, "local PostgreSQL stopped");
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

const THROWAWAY_PREFIX: &str = "rowlock-pg-";

fn remove_stale_throwaway_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(THROWAWAY_PREFIX) else {
            continue;
        };
        let owner_alive = rest
            .split('-')
            .next()
            .is_some_and(|pid| Path::new("/proc").join(pid).exists());
        if !owner_alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}
