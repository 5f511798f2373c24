//! pgbouncer in transaction pooling mode in front of one database, as a child process: for the
//! tests and the benchmark of several rowlock instances behind a pooler.
//!
//! It listens on a free loopback port, authenticates with the database's own user and password
//! (SCRAM), and runs as the cluster's unprivileged OS user when rowlock runs as root (pgbouncer
//! refuses root too). It is killed when dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const READY_DEADLINE: Duration = Duration::from_secs(20);

/// A running pgbouncer.
pub struct Pgbouncer {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Pgbouncer {
    /// Starts pgbouncer with `pool_size` server connections in front of `database_url` (a
    /// loopback URL with a user and a password) and waits until it forwards a query.
    pub async fn start(database_url: &str, pool_size: usize) -> Result<Self> {
        let cfg: tokio_postgres::Config = database_url.parse().context("bad database URL")?;
        let user = cfg.get_user().context("the database URL has no user")?;
        let password = cfg
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .context("the database URL has no password")?;
        let database = cfg
            .get_dbname()
            .context("the database URL has no database")?;
        let pg_port = *cfg.get_ports().first().unwrap_or(&5432);
        let port = super::free_port()?;
        let dir = std::env::temp_dir().join(format!("rowlock-pgbouncer-{port}"));
        fs::create_dir_all(&dir)?;
        write(&dir, "users.txt", &format!("\"{user}\" \"{password}\"\n"))?;
        let ini = format!(
            "[databases]\n{database} = host=127.0.0.1 port={pg_port} dbname={database}\n\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = scram-sha-256\nauth_file = {users}\npool_mode = transaction\n\
             default_pool_size = {pool_size}\nmax_client_conn = 1000\nlogfile = {log}\n",
            users = dir.join("users.txt").display(),
            log = dir.join("pgbouncer.log").display(),
        );
        write(&dir, "pgbouncer.ini", &ini)?;
        let mut command = Command::new(binary());
        let _ = command
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        super::run_unprivileged(&mut command, &dir)?;
        give_files_to_dir_owner(&dir)?;
        let child = command
            .spawn()
            .context("cannot start pgbouncer (apt-get install pgbouncer)")?;
        let bouncer = Self {
            child,
            url: format!("postgres://{user}:{password}@127.0.0.1:{port}/{database}"),
            dir,
        };
        bouncer.wait_until_ready().await?;
        Ok(bouncer)
    }

    /// The database through pgbouncer.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// pgbouncer's process id (for its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_until_ready(&self) -> Result<()> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Ok((client, connection)) =
                tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await
            {
                let connection = tokio::spawn(connection);
                let ready = client.simple_query("SELECT 1").await.is_ok();
                drop(client);
                let _ = connection.await;
                if ready {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                let log = fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default();
                bail!("pgbouncer was not ready within {READY_DEADLINE:?}:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Debian installs pgbouncer in /usr/sbin, which is not on every PATH.
fn binary() -> PathBuf {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| "pgbouncer".into())
}

fn write(dir: &Path, name: &str, contents: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// The files written as root belong to whoever pgbouncer runs as (the directory's owner).
fn give_files_to_dir_owner(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let owner = fs::metadata(dir)?;
    for entry in fs::read_dir(dir)? {
        std::os::unix::fs::chown(entry?.path(), Some(owner.uid()), Some(owner.gid()))?;
    }
    Ok(())
}
