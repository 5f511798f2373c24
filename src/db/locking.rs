//! How a request asks for its rows to be locked, and the fixed SQL each choice selects.
//!
//! Clients pick among a few enum values; each value maps to a `&'static str` written here. No
//! text a client sends ever reaches SQL.

use serde::Deserialize;

/// `lock=`: how the target rows are locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// `SELECT … FOR UPDATE`: wait for the row lock (bounded by `lock_timeout`).
    #[default]
    Wait,
    /// `FOR UPDATE NOWAIT`: fail at once when a row is locked.
    Nowait,
    /// `FOR UPDATE SKIP LOCKED`: a locked row is skipped.
    SkipLocked,
    /// No explicit row lock: one atomic `UPDATE … SET v = v + $1 … RETURNING`.
    None,
}

/// `strength=`: which row-level lock `SELECT … FOR …` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// `FOR UPDATE`: conflicts with every other row lock, `FOR KEY SHARE` included.
    #[default]
    Update,
    /// `FOR NO KEY UPDATE`: does not block inserts of rows that reference this one.
    NoKeyUpdate,
}

/// `isolation=`: the transaction isolation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// `read_committed` (the default): each statement sees what committed before it began.
    #[default]
    ReadCommitted,
    /// `repeatable_read`: one snapshot for the whole transaction; a concurrent update of a row
    /// it then writes fails with 40001 and is retried.
    RepeatableRead,
    /// `serializable`: as repeatable read, and any outcome no serial order could give fails
    /// with 40001 and is retried.
    Serializable,
}

impl Isolation {
    /// The `BEGIN` that opens a transaction at this level. Spelled out even for read committed so
    /// that a server-wide `default_transaction_isolation` cannot change what a client asked for.
    pub fn begin_sql(self) -> &'static str {
        match self {
            Self::ReadCommitted => "BEGIN ISOLATION LEVEL READ COMMITTED",
            Self::RepeatableRead => "BEGIN ISOLATION LEVEL REPEATABLE READ",
            Self::Serializable => "BEGIN ISOLATION LEVEL SERIALIZABLE",
        }
    }
}

/// A row lock to take explicitly: the modes of [`LockMode`] that run `SELECT … FOR …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowLock {
    /// What to do when another transaction holds the row.
    pub wait: WaitPolicy,
    /// Which row lock to take.
    pub strength: Strength,
}

/// What `SELECT … FOR …` does when another transaction holds the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitPolicy {
    /// Wait for it, up to the lock timeout (then 423).
    Wait,
    /// `NOWAIT`: fail at once (423).
    Nowait,
    /// `SKIP LOCKED`: leave the row out, as if it did not exist.
    SkipLocked,
}

impl RowLock {
    /// The lock described by `lock=` and `strength=`; `None` for `lock=none`.
    pub fn from_params(mode: LockMode, strength: Strength) -> Option<Self> {
        let wait = match mode {
            LockMode::Wait => WaitPolicy::Wait,
            LockMode::Nowait => WaitPolicy::Nowait,
            LockMode::SkipLocked => WaitPolicy::SkipLocked,
            LockMode::None => return None,
        };
        Some(Self { wait, strength })
    }

    /// The `lock=` value this lock came from, as a metrics label.
    pub fn mode_name(self) -> &'static str {
        match self.wait {
            WaitPolicy::Wait => "wait",
            WaitPolicy::Nowait => "nowait",
            WaitPolicy::SkipLocked => "skip_locked",
        }
    }

    /// Picks one of six fixed statements produced by `$select` (a macro taking the locking
    /// clause as a literal), so the SQL text stays static.
    pub fn pick(self, statements: &LockStatements) -> &'static str {
        let by_wait = match self.strength {
            Strength::Update => &statements.for_update,
            Strength::NoKeyUpdate => &statements.for_no_key_update,
        };
        match self.wait {
            WaitPolicy::Wait => by_wait[0],
            WaitPolicy::Nowait => by_wait[1],
            WaitPolicy::SkipLocked => by_wait[2],
        }
    }
}

/// The six variants of one locking `SELECT`: `[wait, nowait, skip_locked]` for each strength.
pub struct LockStatements {
    /// The `SELECT … FOR UPDATE` variants.
    pub for_update: [&'static str; 3],
    /// The `SELECT … FOR NO KEY UPDATE` variants.
    pub for_no_key_update: [&'static str; 3],
}

/// Builds the [`LockStatements`] of a `SELECT` written without its locking clause (a literal, or
/// `concat!` of literals). With a second one, the clause goes between the two: for a locking `SELECT` inside a larger statement.
#[macro_export]
macro_rules! lock_statements {
    ($select:expr) => {
        $crate::lock_statements!($select, "")
    };
    ($select:expr, $rest:expr) => {
        $crate::db::locking::LockStatements {
            for_update: [
                concat!($select, " FOR UPDATE", $rest),
                concat!($select, " FOR UPDATE NOWAIT", $rest),
                concat!($select, " FOR UPDATE SKIP LOCKED", $rest),
            ],
            for_no_key_update: [
                concat!($select, " FOR NO KEY UPDATE", $rest),
                concat!($select, " FOR NO KEY UPDATE NOWAIT", $rest),
                concat!($select, " FOR NO KEY UPDATE SKIP LOCKED", $rest),
            ],
        }
    };
}
