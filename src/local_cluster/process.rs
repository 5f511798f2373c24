//! The PostgreSQL processes of a local cluster: `initdb`, the server under its supervisor
//! thread, and the wait until it accepts connections.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::os::{run_as, OsUser};
use super::{Durability, SUPERUSER};

const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// Initialises a new cluster in `data_dir`.
pub(super) fn initdb(bin: &Path, data_dir: &Path, os_user: &Option<OsUser>) -> Result<()> {
    tracing::info!(dir = %data_dir.display(), "initialising a new PostgreSQL cluster");
    let mut initdb = Command::new(bin.join("initdb"));
    let _ = initdb
        .arg("-D")
        .arg(data_dir)
        // No server runs until `require_password` replaced `trust`.
        .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale"])
        .current_dir(data_dir);
    run_as(&mut initdb, os_user);
    let out = initdb.output().context("cannot run initdb")?;
    if !out.status.success() {
        bail!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Starts `postgres` on `port` (loopback only, its output appended to `log_path`) as the child
/// of a supervisor thread that waits for it: the server's pid, and the thread, which finishes
/// when the server exits.
pub(super) fn spawn_postgres(
    bin: &Path,
    data_dir: &Path,
    port: u16,
    durability: Durability,
    os_user: &Option<OsUser>,
    log_path: &Path,
) -> Result<(u32, JoinHandle<()>)> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let mut postgres = Command::new(bin.join("postgres"));
    let _ = postgres
        .arg("-D")
        .arg(data_dir)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "unix_socket_directories="])
        .args(["-c", "max_connections=300"])
        .current_dir(data_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if durability == Durability::Throwaway {
        for setting in [
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
        ] {
            let _ = postgres.args(["-c", setting]);
        }
    }
    run_as(&mut postgres, os_user);
    // SIGINT (fast shutdown) reaches the server when the thread that started it dies, which
    // is the supervisor thread below: it lives until the process exits.
    unsafe {
        let _ = postgres.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }

    let (tx, rx) = mpsc::channel();
    let supervisor = std::thread::Builder::new()
        .name("rowlock-postgres".into())
        .spawn(move || match postgres.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id()));
                let _ = child.wait();
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        })?;
    let pid = rx
        .recv()
        .context("the PostgreSQL supervisor thread died")?
        .context("cannot start postgres")?;
    Ok((pid, supervisor))
}

/// Waits until the server on `port` accepts connections; fails with the end of its log when it
/// exits first (its `supervisor` finished) or takes longer than a minute.
pub(super) fn wait_until_ready(
    bin: &Path,
    port: u16,
    supervisor: Option<&JoinHandle<()>>,
    log_path: &Path,
) -> Result<()> {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ready {
            return Ok(());
        }
        let exited = supervisor.is_some_and(|s| s.is_finished());
        if exited || Instant::now() > deadline {
            let log = fs::read_to_string(log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "PostgreSQL did not become ready ({}); its log ends with:\n{}",
                if exited { "it exited" } else { "timed out" },
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
