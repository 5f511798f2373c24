//! The OS side of a local cluster: where the server binaries are, and the unprivileged OS user
//! that PostgreSQL (and pgbouncer) run as when rowlock runs as root.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Finds the directory holding `initdb`, `postgres` and `pg_isready`.
pub fn find_bin_dir() -> Result<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "postgres", "pg_isready"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    // initdb on PATH, following symlinks (Debian links /usr/local/bin/initdb into its bindir).
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if let Ok(initdb) = dir.join("initdb").canonicalize() {
                if let Some(parent) = initdb.parent().filter(|p| complete(p)) {
                    return Ok(parent.to_path_buf());
                }
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && complete(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(dir) = versions.into_iter().rev().find(|d| complete(d)) {
        return Ok(dir);
    }
    bail!(
        "no PostgreSQL server binaries found (initdb, postgres, pg_isready on PATH, via pg_config \
         or under /usr/lib/postgresql/*/bin): install PostgreSQL (e.g. `apt-get install \
         postgresql`) or set DATABASE_URL to an existing database"
    )
}

/// The unprivileged OS user the cluster runs as when rowlock runs as root.
pub(super) struct OsUser {
    pub(super) name: String,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

impl OsUser {
    pub(super) fn for_cluster() -> Result<Option<Self>> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(None);
        }
        let name = std::env::var("ROWLOCK_PG_OS_USER").unwrap_or_else(|_| "postgres".into());
        let passwd = fs::read_to_string("/etc/passwd").context("cannot read /etc/passwd")?;
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() > 3 && fields[0] == name {
                return Ok(Some(Self {
                    uid: fields[2].parse().context("bad uid in /etc/passwd")?,
                    gid: fields[3].parse().context("bad gid in /etc/passwd")?,
                    name,
                }));
            }
        }
        bail!(
            "rowlock runs as root and PostgreSQL refuses to: create the OS user '{name}' \
             (or set ROWLOCK_PG_OS_USER to an existing unprivileged user), or set DATABASE_URL"
        )
    }
}

impl OsUser {
    /// Fails with advice when a directory above `dir` does not let this user through (a data
    /// directory under `/root` or under a `mktemp -d` directory, say): initdb's own message
    /// would only say "Permission denied".
    pub(super) fn check_can_reach(&self, dir: &Path) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        for ancestor in dir.ancestors().skip(1) {
            let meta = fs::metadata(ancestor)?;
            let traversable = meta.mode() & 0o001 != 0
                || (meta.uid() == self.uid && meta.mode() & 0o100 != 0)
                || (meta.gid() == self.gid && meta.mode() & 0o010 != 0);
            if !traversable {
                bail!(
                    "the local PostgreSQL runs as OS user '{}', which cannot enter {}: choose a \
                     data directory elsewhere (--data-dir / ROWLOCK_DATA_DIR), make that directory \
                     traversable (chmod o+x), or set DATABASE_URL",
                    self.name,
                    ancestor.display()
                );
            }
        }
        Ok(())
    }
}

/// Makes `cmd` run as the OS user the local cluster runs as (when rowlock runs as root), and
/// gives that user `dir`: for helper processes that, like PostgreSQL, refuse to run as root
/// (pgbouncer in the tests).
pub fn run_unprivileged(cmd: &mut Command, dir: &Path) -> Result<()> {
    let user = OsUser::for_cluster()?;
    if let Some(user) = &user {
        user.check_can_reach(dir)?;
        std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))?;
    }
    run_as(cmd, &user);
    Ok(())
}

pub(super) fn run_as(cmd: &mut Command, user: &Option<OsUser>) {
    if let Some(user) = user {
        // std also drops root's supplementary groups (setgroups(0)) when a uid is set.
        let _ = cmd.uid(user.uid).gid(user.gid);
    }
}
