//! The statements every transaction begins with: `SET LOCAL` of the request's settings, which
//! also read the transaction's identity (see [`super`]).

use super::Tx;
use crate::db::outcome::{crash_mark, TxIdentity};
use crate::db::statements::Conn;
use crate::error::ApiError;

/// `SET LOCAL` of the request's settings, as parameters (`SET` cannot take one,
/// `set_config(…, is_local => true)` can); they revert by themselves at COMMIT or ROLLBACK.
/// Prepared on every new connection ([`warm_up`]), so they go out in the pipeline at once.
/// Both also read the transaction's id (`txid`) and the server's crash mark (`crash_mark`),
/// ahead of every other statement, so that a `COMMIT` whose answer is lost can be looked up
/// ([`crate::db::outcome`]). `$1` is the `application_name`, `$2` the `lock_timeout`.
macro_rules! settings {
    (application_name) => {
        concat!(
            "SELECT txid_current() AS txid, ",
            crash_mark!(),
            " AS crash_mark, set_config('application_name', $1, true)"
        )
    };
    (application_name, lock_timeout) => {
        concat!(
            settings!(application_name),
            ", set_config('lock_timeout', $2, true)"
        )
    };
}

/// The settings of a transaction that keeps the connection's `lock_timeout`.
pub const SET_APPLICATION_NAME: &str = settings!(application_name);
/// Also a group's first statement ([`crate::db::group`]).
pub const SET_APPLICATION_NAME_AND_LOCK_TIMEOUT: &str = settings!(application_name, lock_timeout);

/// Applies the settings; returns the transaction's identity.
pub(super) async fn set_local(
    tx: &Tx,
    application_name: &str,
    lock_timeout_ms: Option<u32>,
) -> Result<TxIdentity, ApiError> {
    let rows = match lock_timeout_ms {
        None => {
            let stmt = tx.prepare(SET_APPLICATION_NAME).await?;
            tx.client().query(&stmt, &[&application_name]).await?
        }
        Some(ms) => {
            let stmt = tx.prepare(SET_APPLICATION_NAME_AND_LOCK_TIMEOUT).await?;
            let timeout = format!("{ms}ms");
            tx.client()
                .query(&stmt, &[&application_name, &timeout])
                .await?
        }
    };
    rows.first()
        .map(|row| TxIdentity {
            txid: row.get("txid"),
            crash_mark: row.get("crash_mark"),
        })
        .ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("the settings statement answered no row"))
        })
}

/// Prepares, on a new connection, the statements that must never cost a round trip of their
/// own in the middle of a pipeline.
/// Behind a pooler, their parameter types are learned (once per process) instead.
pub async fn warm_up(
    client: &deadpool_postgres::ClientWrapper,
) -> Result<(), tokio_postgres::Error> {
    for sql in [SET_APPLICATION_NAME, SET_APPLICATION_NAME_AND_LOCK_TIMEOUT] {
        let _ = Conn::outside(client).prepare(sql).await?;
    }
    Ok(())
}
