//! What one request asks of a group, and the rows it needs.

use crate::db::idempotency::Idempotency;
use crate::db::locking::Strength;
use crate::db::transactions::Op;

/// One counter request of a group: its work and how it asked for it.
pub struct Change {
    /// The increment or atomic transaction asked for.
    pub work: Work,
    /// `strength=` as asked: the group locks its rows `FOR UPDATE` if any member asked for it.
    pub strength: Strength,
    /// `lock=` as asked (`wait` or `none`), for the lock-wait metric.
    pub mode: &'static str,
    /// The request's `Idempotency-Key`, if it sent one: its answer is stored with the group.
    pub idempotency: Option<Idempotency>,
}

/// The rows of a counter request are counters' names, and a group's members may share rows (they
/// are applied one after another in memory).
impl super::Grouped for Change {
    type Row = String;
    const EXCLUSIVE_ROWS: bool = false;

    fn rows(&self) -> Vec<&String> {
        self.work.rows()
    }

    fn ops(&self) -> usize {
        self.work.ops()
    }

    fn describe(&self) -> String {
        self.work.describe()
    }
}

/// What one request asks of a group.
#[derive(Debug, Clone)]
pub enum Work {
    /// `POST /counters/{name}/increment`.
    Increment {
        /// The counter.
        name: String,
        /// What is added to it (negative to decrement).
        by: i64,
    },
    /// An atomic `POST /transactions`.
    Transaction {
        /// The ops, applied in order, all or none.
        ops: Vec<Op>,
    },
}

impl Work {
    /// The counters this work touches (with repeats).
    pub fn rows(&self) -> Vec<&String> {
        match self {
            Self::Increment { name, .. } => vec![name],
            Self::Transaction { ops } => ops.iter().map(|op| &op.counter).collect(),
        }
    }

    /// The ops of a transaction (none for an increment).
    pub fn into_ops(self) -> Vec<Op> {
        match self {
            Self::Increment { .. } => Vec::new(),
            Self::Transaction { ops } => ops,
        }
    }

    /// The resource label of the lock-wait metric.
    pub(super) fn resource(&self) -> &'static str {
        match self {
            Self::Increment { .. } => "counter",
            Self::Transaction { .. } => "transaction",
        }
    }

    pub(super) fn ops(&self) -> usize {
        match self {
            Self::Increment { .. } => 1,
            Self::Transaction { ops } => ops.len(),
        }
    }

    /// How a lock timeout names the rows.
    pub(super) fn describe(&self) -> String {
        match self {
            Self::Increment { name, .. } => format!("counter '{name}'"),
            Self::Transaction { .. } => {
                let mut names: Vec<&str> = self.rows().into_iter().map(String::as_str).collect();
                names.sort_unstable();
                names.dedup();
                format!("counters '{}'", names.join("', '"))
            }
        }
    }
}
