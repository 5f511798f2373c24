//! The linearizability check for a counter's increment history.
//!
//! Every acknowledged increment of a hot counter returns the value it produced. For a history of
//! increments by the same non-zero amount to be linearizable, two things must hold:
//! - **values are distinct**: two increments can never both have produced the same value;
//! - **real-time order is respected**: an increment that finished before another one started
//!   took effect first, so it returned a smaller value (larger, when decrementing).
//!
//! The check is O(n log n): sort by end time and by start time, and sweep the starts while
//! keeping the largest value returned by any increment that had already finished.

use serde::{Deserialize, Serialize};

/// One acknowledged increment: when it was sent, when its answer arrived (nanoseconds since the
/// start of the run) and the value it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// When the increment was sent.
    pub start_ns: u64,
    /// When its 200 arrived.
    pub end_ns: u64,
    /// The counter's value the increment returned (the value right after it).
    pub value: i64,
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Linearizability {
    /// Acknowledged increments in the history checked.
    pub operations: u64,
    /// Returned values that another increment returned too (each extra copy counts once).
    pub duplicate_values: u64,
    /// Increments that returned a value at or below one returned by an increment that had
    /// finished before they started.
    pub order_violations: u64,
    /// One violation, explained, for the report.
    pub example: Option<String>,
    /// True when there is neither a duplicate value nor an order violation.
    pub linearizable: bool,
}

/// Checks `ops`, increments by an amount of sign `direction` (+1 or -1).
pub fn check(ops: &[Op], direction: i64) -> Linearizability {
    // Orient values so that "later" always means "larger"; i128 so negation cannot overflow.
    let key = |op: &Op| i128::from(op.value) * i128::from(direction.signum());
    let mut example = None;

    let mut keys: Vec<i128> = ops.iter().map(key).collect();
    keys.sort_unstable();
    let mut duplicate_values = 0;
    for pair in keys.windows(2) {
        if pair[0] == pair[1] {
            duplicate_values += 1;
            let _ = example.get_or_insert_with(|| {
                format!(
                    "two increments both returned {}",
                    pair[0] * i128::from(direction.signum())
                )
            });
        }
    }

    let mut by_end: Vec<&Op> = ops.iter().collect();
    by_end.sort_unstable_by_key(|op| op.end_ns);
    let mut by_start: Vec<&Op> = ops.iter().collect();
    by_start.sort_unstable_by_key(|op| op.start_ns);
    let mut finished = by_end.iter().peekable();
    // The finished increment with the largest value so far.
    let mut latest: Option<&Op> = None;
    let mut order_violations = 0;
    for op in by_start {
        while let Some(done) = finished.next_if(|done| done.end_ns < op.start_ns) {
            if latest.is_none_or(|l| key(done) > key(l)) {
                latest = Some(done);
            }
        }
        if let Some(before) = latest.filter(|before| key(before) >= key(op)) {
            order_violations += 1;
            let _ = example.get_or_insert_with(|| {
                format!(
                    "an increment that finished at {} ns returned {}, yet one that started later, \
                     at {} ns, returned {}",
                    before.end_ns, before.value, op.start_ns, op.value
                )
            });
        }
    }

    Linearizability {
        operations: ops.len() as u64,
        duplicate_values,
        order_violations,
        linearizable: duplicate_values == 0 && order_violations == 0,
        example,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(start_ns: u64, end_ns: u64, value: i64) -> Op {
        Op {
            start_ns,
            end_ns,
            value,
        }
    }

    #[test]
    fn overlapping_increments_may_return_values_in_any_order() {
        // All three overlap: any order of effects is a valid linearization.
        let ops = [op(0, 30, 3), op(5, 20, 1), op(10, 25, 2)];
        let result = check(&ops, 1);
        assert!(result.linearizable, "{result:?}");
        assert_eq!(result.operations, 3);
    }

    #[test]
    fn a_sequential_history_in_order_is_linearizable() {
        let ops = [op(0, 1, 1), op(2, 3, 2), op(4, 5, 3), op(4, 9, 4)];
        assert!(check(&ops, 1).linearizable);
    }

    #[test]
    fn a_later_increment_returning_a_smaller_value_is_rejected() {
        // The second started after the first had finished, yet returned a smaller value: a
        // stale read, the signature of a lost update.
        let ops = [op(0, 10, 5), op(20, 30, 4)];
        let result = check(&ops, 1);
        assert!(!result.linearizable);
        assert_eq!(result.order_violations, 1);
        assert!(result.example.is_some());
    }

    #[test]
    fn two_increments_returning_the_same_value_are_rejected() {
        // Overlapping, so the order is fine — but both read 4 and wrote 5: one update is lost.
        let ops = [op(0, 10, 5), op(1, 11, 5), op(2, 12, 6)];
        let result = check(&ops, 1);
        assert!(!result.linearizable);
        assert_eq!(result.duplicate_values, 1);
    }

    #[test]
    fn decrements_must_return_decreasing_values() {
        let ops = [op(0, 1, -1), op(2, 3, -2)];
        assert!(check(&ops, -1).linearizable);
        assert!(!check(&ops, 1).linearizable);
    }

    #[test]
    fn an_answer_at_the_very_instant_another_starts_is_concurrent() {
        // end == start is not "finished before": the two may have overlapped.
        let ops = [op(0, 10, 2), op(10, 20, 1)];
        assert!(check(&ops, 1).linearizable);
    }

    #[test]
    fn an_empty_history_is_linearizable() {
        assert!(check(&[], 1).linearizable);
    }
}
