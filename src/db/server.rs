//! Which server rowlock is talking to, read once at startup, before anything is migrated.
//!
//! rowlock's guarantees rest on PostgreSQL's own: row locks that wait and are held until
//! `COMMIT`, `lock_timeout` on those waits, transaction-scoped advisory locks, `txid_status` to
//! learn the fate of a `COMMIT` whose answer was lost, and one sequence for versions. Servers
//! that speak PostgreSQL's protocol but would let one of these silently not hold are refused
//! with a message naming what would break (README, "Beyond one PostgreSQL"):
//!
//! - **PostgreSQL before 15**: crash detection needs `pg_stat_wal` reset by crash recovery.
//! - **CockroachDB** (`version()` starts with `CockroachDB`): row locks are best-effort under its
//!   default SERIALIZABLE isolation, `FOR SHARE` takes no lock there, and it has no
//!   `txid_status`, no `pg_advisory_xact_lock` and no `LISTEN`.
//! - **YugabyteDB** (`-YB-` in `version()`): `lock_timeout` does not bound row-lock waits,
//!   READ COMMITTED runs as snapshot isolation unless a server flag is set, and it has no xid
//!   functions and no `LISTEN`.
//!
//! Citus is recognised by its extension; [`super::citus`] distributes rowlock's tables.

use anyhow::{bail, Context, Result};
use tokio_postgres::{Client, SimpleQueryMessage};

/// The oldest PostgreSQL rowlock runs on: it reads `pg_stat_wal` to learn of crashes, and needs
/// crash recovery to reset it, which PostgreSQL does since 15 (see [`super::outcome`]).
const MIN_SERVER_VERSION: i32 = 150_000;

/// What startup learned about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Server {
    /// PostgreSQL without the Citus extension.
    PostgreSql {
        /// `version()` as the server reported it.
        version: String,
    },
    /// The Citus extension is installed (rowlock distributes its tables: [`super::citus`]).
    Citus {
        /// `version()` as the server reported it.
        version: String,
        /// The installed version of the `citus` extension.
        citus: String,
    },
}

/// Reads the server's identity and refuses one on which a guarantee would silently not hold.
pub async fn identify(client: &Client) -> Result<Server> {
    // The simple protocol: no statement is prepared, which a transaction pooler could not keep.
    let row = first_row(
        client,
        "SELECT version(), current_setting('server_version_num')",
    )
    .await?
    .context("the server did not say its version")?;
    let version = row.first().cloned().flatten().unwrap_or_default();
    let number = row.get(1).cloned().flatten().unwrap_or_default();
    let server = classify(&version, &number)?;
    let citus = first_row(
        client,
        "SELECT extversion FROM pg_extension WHERE extname = 'citus'",
    )
    .await?;
    let Some(citus) = citus else {
        return Ok(server);
    };
    let citus = citus.first().cloned().flatten().unwrap_or_default();
    Ok(Server::Citus {
        version: server.version().to_owned(),
        citus,
    })
}

impl Server {
    /// `version()` as the server reported it.
    pub fn version(&self) -> &str {
        match self {
            Self::PostgreSql { version } | Self::Citus { version, .. } => version,
        }
    }
}

/// Refuses, by its `version()` and `server_version_num`, a server rowlock's guarantees do not
/// hold on.
fn classify(version: &str, number: &str) -> Result<Server> {
    if version.starts_with("CockroachDB") {
        bail!(
            "{version} is not supported: under its default SERIALIZABLE isolation row locks are \
             best-effort and FOR SHARE takes none, and it has no txid_status (a COMMIT whose \
             answer was lost could not be resolved), no pg_advisory_xact_lock and no LISTEN — \
             see README, \"Beyond one PostgreSQL\""
        );
    }
    if version.contains("-YB-") {
        bail!(
            "{version} (YugabyteDB) is not supported: lock_timeout does not bound its row-lock \
             waits, READ COMMITTED runs as snapshot isolation unless \
             yb_enable_read_committed_isolation is set, and it has no txid_status and no LISTEN \
             — see README, \"Beyond one PostgreSQL\""
        );
    }
    let number: i32 = number
        .parse()
        .with_context(|| format!("the server's version number {number:?} is not a number"))?;
    if number < MIN_SERVER_VERSION {
        bail!("{version} is too old: rowlock needs PostgreSQL 15 or later");
    }
    Ok(Server::PostgreSql {
        version: version.to_owned(),
    })
}

/// The first row of `sql`'s answer as text columns, if it answered one.
async fn first_row(client: &Client, sql: &str) -> Result<Option<Vec<Option<String>>>> {
    let messages = client.simple_query(sql).await?;
    Ok(messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(
            (0..row.len())
                .map(|i| row.get(i).map(str::to_owned))
                .collect(),
        ),
        _ => None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgresql_15_and_later_is_accepted() {
        let v = "PostgreSQL 15.18 (Debian 15.18-0+deb12u1) on x86_64-pc-linux-gnu";
        assert_eq!(
            classify(v, "150018").unwrap(),
            Server::PostgreSql { version: v.into() }
        );
        assert!(classify("PostgreSQL 17.2 on aarch64", "170002").is_ok());
    }

    #[test]
    fn postgresql_before_15_is_refused() {
        let e = classify("PostgreSQL 14.9 on x86_64", "140009").unwrap_err();
        assert!(e.to_string().contains("needs PostgreSQL 15"), "{e}");
    }

    #[test]
    fn cockroachdb_is_refused_naming_what_would_not_hold() {
        // CockroachDB reports server_version_num 130000; it is named, not called "too old".
        let v =
            "CockroachDB CCL v24.3.0 (x86_64-pc-linux-gnu, built 2024/11/21 17:04:09, go1.22.8)";
        let e = classify(v, "130000").unwrap_err().to_string();
        assert!(e.starts_with("CockroachDB CCL v24.3.0"), "{e}");
        assert!(
            e.contains("best-effort") && e.contains("txid_status"),
            "{e}"
        );
    }

    #[test]
    fn yugabytedb_is_refused_even_on_its_postgresql_15_line() {
        let v = "PostgreSQL 15.2-YB-2.25.0.0-b0 on x86_64-pc-linux-gnu, compiled by clang 17.0.6";
        let e = classify(v, "150002").unwrap_err().to_string();
        assert!(
            e.contains("YugabyteDB") && e.contains("lock_timeout"),
            "{e}"
        );
        assert!(classify("PostgreSQL 11.2-YB-2.20.1.0-b0 on x86_64", "110002").is_err());
    }
}
