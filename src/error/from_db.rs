//! Database and pool errors → [`ApiError`], in one place: SQLSTATEs, the CHECK constraints a
//! request may run into (by name), and the pool's timeouts.

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use super::ApiError;

/// SQLSTATE → error, in one place. Errors that are the client's doing or the database being busy
/// become their own variants; anything else is a bug (or an outage) and stays internal.
impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        let Some(code) = e.code() else {
            // No SQLSTATE: the connection broke or could not be made.
            if e.is_closed() {
                return Self::Unavailable("the database connection was lost".into());
            }
            return Self::Internal(e.into());
        };
        match *code {
            SqlState::LOCK_NOT_AVAILABLE => {
                Self::LockNotAvailable("the row is locked by another transaction".into())
            }
            SqlState::T_R_SERIALIZATION_FAILURE => Self::SerializationFailure,
            SqlState::T_R_DEADLOCK_DETECTED => Self::Deadlock,
            // Citus: a worker refused its part at COMMIT (a deferred constraint, say), so the
            // coordinator rolled the whole transaction back. The worker's own code is lost.
            SqlState::INTERNAL_ERROR
                if e.as_db_error().is_some_and(|d| {
                    d.message()
                        .starts_with("could not commit transaction for shard")
                }) =>
            {
                Self::Unavailable("a node refused the commit; nothing was applied".into())
            }
            SqlState::QUERY_CANCELED => {
                Self::Unavailable("the database did not finish in time (statement timeout)".into())
            }
            // Constraints are told apart by name ([`on_constraint`]); one rowlock does not
            // expect to be violated is a bug.
            SqlState::CHECK_VIOLATION => match e.as_db_error().and_then(violated_constraint) {
                Some(name) => on_constraint(without_shard_suffix(name))
                    .unwrap_or_else(|| Self::Internal(e.into())),
                None => Self::Internal(e.into()),
            },
            // The only timestamp a client sends is a job's `run_at`.
            SqlState::INVALID_DATETIME_FORMAT
            | SqlState::DATETIME_FIELD_OVERFLOW
            | SqlState::INVALID_TIME_ZONE_DISPLACEMENT_VALUE => {
                Self::Invalid("run_at is not a valid RFC 3339 timestamp".into())
            }
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE => {
                Self::Invalid("the change would overflow a signed 64-bit value".into())
            }
            // Class 22 (data exception) and 54000 (program limit): a value the database cannot
            // take, which only client input can bring. Logged in full, answered generically.
            _ if code.code().starts_with("22") || *code == SqlState::PROGRAM_LIMIT_EXCEEDED => {
                tracing::warn!(error = %e, "the database refused a value of the request");
                Self::Invalid("a value in the request cannot be stored (data exception)".into())
            }
            SqlState::ADMIN_SHUTDOWN
            | SqlState::CANNOT_CONNECT_NOW
            | SqlState::TOO_MANY_CONNECTIONS
            | SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT => {
                Self::Unavailable("the database is not accepting work right now".into())
            }
            _ => Self::Internal(e.into()),
        }
    }
}

/// The CHECK constraint an error names: its constraint field, or — from a Citus worker, whose
/// error the coordinator passes on without that field — the name in its message (`new row for
/// relation "counters_102008" violates check constraint "counters_value_above_min_102008"`).
fn violated_constraint(e: &tokio_postgres::error::DbError) -> Option<&str> {
    e.constraint().or_else(|| {
        let (_, rest) = e.message().split_once("violates check constraint \"")?;
        rest.split_once('"').map(|(name, _)| name)
    })
}

/// A constraint's name as rowlock's migrations gave it: on Citus, a worker names the constraint
/// of its shard, with the shard's id appended (`counters_value_above_min_102008`).
fn without_shard_suffix(name: &str) -> &str {
    match name.rsplit_once('_') {
        Some((base, id)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    }
}

/// CHECK constraints a request may run into, by name, and what the client is told: the tables'
/// own rules are the last line of defence behind rowlock's checks (the bounds of a counter, the
/// alphabet of names, the ranges of numbers). Any other constraint is rowlock's own invariant
/// (`jobs_running_has_lease`, `jobs_state_check`): violating it is a bug, answered 500.
fn on_constraint(name: &str) -> Option<ApiError> {
    let error = match name {
        "counters_value_above_min" | "counters_value_below_max" => ApiError::BoundViolation(
            "the change would take a counter outside its bounds; nothing changed".into(),
        ),
        "counters_bounds_ordered" => ApiError::Invalid("min must not be above max".into()),
        "counters_name_check" | "jobs_queue_check" | "queues_name_check" | "locks_key_check" => {
            ApiError::BadRequest("names are 1-128 characters of A-Z a-z 0-9 . _ -".into())
        }
        "jobs_max_attempts_check" => {
            ApiError::Invalid("max_attempts must be between 1 and 1000".into())
        }
        "jobs_unique_key_check" => {
            ApiError::Invalid("unique_key must be 1 to 255 characters".into())
        }
        "queues_max_running_check" => {
            ApiError::Invalid("max_running must be between 0 and 1000000".into())
        }
        _ => return None,
    };
    Some(error)
}

/// The pool gives up after its wait timeout: that is back-pressure, answered 503 + Retry-After.
impl From<PoolError> for ApiError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Timeout(_) => {
                Self::Unavailable("no database connection became free in time".into())
            }
            // A connection that cannot be made at all means the database is unreachable.
            PoolError::Backend(e) if e.code().is_none() => {
                Self::Unavailable("the database is unreachable".into())
            }
            PoolError::Backend(e) => e.into(),
            PoolError::Closed => Self::Unavailable("rowlock is shutting down".into()),
            other => Self::Internal(anyhow::anyhow!("pool: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_constraint_maps_as_its_table_constraint() {
        assert_eq!(
            without_shard_suffix("counters_value_above_min_102008"),
            "counters_value_above_min"
        );
        assert_eq!(
            without_shard_suffix("counters_name_check"),
            "counters_name_check"
        );
        assert!(matches!(
            on_constraint(without_shard_suffix("counters_value_below_max_102040")),
            Some(ApiError::BoundViolation(_))
        ));
    }
}
