//! The superuser's password of a local cluster: set once, kept in the data directory, and
//! asked of every connection (`pg_hba.conf`).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::os::{run_as, OsUser};
use super::{PASSWORD_FILE, SUPERUSER};

/// The `pg_hba.conf` of a local cluster: password (SCRAM) authentication for everyone, on the
/// loopback addresses the server listens on; no unix socket is opened.
const HBA: &str = "# Written by rowlock: the local cluster asks every connection for a password.
# The superuser's is in rowlock-password, readable by its owner only.
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
host replication all 127.0.0.1/32 scram-sha-256
";

/// The superuser's password, read from [`PASSWORD_FILE`]. A cluster without one (new, or made
/// by an earlier rowlock that trusted loopback) gets one first: a random secret is set as the
/// superuser's password in single-user mode (no server listens meanwhile), `pg_hba.conf` is
/// replaced by [`HBA`], and only then is the file written, so an interrupted attempt is simply
/// made again on the next start.
pub(super) fn require_password(
    bin: &Path,
    data_dir: &Path,
    os_user: &Option<OsUser>,
) -> Result<String> {
    let path = data_dir.join(PASSWORD_FILE);
    match fs::read_to_string(&path) {
        Ok(password) if !password.trim().is_empty() => return Ok(password.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    tracing::info!(dir = %data_dir.display(), "giving the local PostgreSQL superuser a password");
    let password = format!("{:032x}", rand::random::<u128>());
    let mut single = Command::new(bin.join("postgres"));
    let _ = single
        .arg("--single")
        .arg("-D")
        .arg(data_dir)
        .args(["-c", "exit_on_error=on", SUPERUSER])
        .current_dir(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run_as(&mut single, os_user);
    let mut child = single.spawn().context("cannot run postgres --single")?;
    {
        use std::io::Write;
        let mut stdin = child
            .stdin
            .take()
            .context("postgres --single has no stdin")?;
        // The secret is generated here (hex digits only), never taken from input.
        writeln!(stdin, "ALTER ROLE {SUPERUSER} PASSWORD '{password}'")?;
    }
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || stderr.contains("ERROR") {
        bail!(
            "cannot set the local PostgreSQL superuser's password: {}",
            stderr.trim()
        );
    }
    write_owned(&data_dir.join("pg_hba.conf"), HBA, 0o600, os_user)?;
    write_owned(&path, &password, 0o600, os_user)?;
    Ok(password)
}

/// Writes `contents` to `path` (through a temporary file and a rename, so a reader never sees
/// half of it) with `mode`, owned by the cluster's OS user when rowlock runs as root.
fn write_owned(path: &Path, contents: &str, mode: u32, os_user: &Option<OsUser>) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("rowlock-tmp");
    let _ = fs::remove_file(&temporary);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    if let Some(user) = os_user {
        std::os::unix::fs::chown(&temporary, Some(user.uid), Some(user.gid))?;
    }
    fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
