//! What one request asks of a group, and the rows it needs.

use crate::db::transactions::Op;

/// What one request asks of a group.
#[derive(Debug, Clone)]
pub enum Work {
    /// `POST /counters/{name}/increment`.
    Increment { name: String, by: i64 },
    /// An atomic `POST /transactions`.
    Transaction { ops: Vec<Op> },
}

impl Work {
    /// The counters this work touches (with repeats).
    pub(super) fn rows(&self) -> Vec<&str> {
        match self {
            Self::Increment { name, .. } => vec![name.as_str()],
            Self::Transaction { ops } => ops.iter().map(|op| op.counter.as_str()).collect(),
        }
    }

    /// Whether this work changes counter `row`.
    pub(super) fn touches(&self, row: &str) -> bool {
        match self {
            Self::Increment { name, .. } => name == row,
            Self::Transaction { ops } => ops.iter().any(|op| op.counter == row),
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
                let mut names = self.rows();
                names.sort_unstable();
                names.dedup();
                format!("counters '{}'", names.join("', '"))
            }
        }
    }
}
