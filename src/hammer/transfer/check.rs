//! The transaction workloads' invariants, checked on the counters as [`super::accounts`] read
//! them before and after the run:
//!
//! - **sum** (transfers): the balances add up to what they did before — a transfer only moves
//!   money, so this holds whatever happened to the requests whose answer was lost;
//! - **per counter**: each counter changed by exactly the sum of the acknowledged transactions'
//!   ops on it (for orders: initial − final = quantities sold by 200 orders), so a refused
//!   (409) transaction changed nothing and no acknowledged one was lost or half-applied;
//! - **bounds**: no counter is below its `min: 0`;
//! - **answers**: every 200's results were consistent with its request.

use serde::{Deserialize, Serialize};

use super::super::Verdict;
use super::load::RunOutput;
use crate::hammer::WorkloadKind;

/// The checks' figures and the verdict they add up to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checks {
    /// `transfer` or `order`: the sum must hold for transfers only (orders sell stock).
    pub workload: WorkloadKind,
    /// Accounts or items checked.
    pub counters: u64,
    /// Σ of every counter's value before the run.
    pub sum_before: i128,
    /// Σ of every counter's value after the run; equal to `sum_before` for transfers.
    pub sum_after: i128,
    /// Σ `by` over every op of every acknowledged transaction (0 for transfers).
    pub acknowledged_delta: i128,
    /// Counters whose change is not their acknowledged ops' sum.
    pub mismatched: u64,
    /// Every mismatch lies within what the unknown-outcome transactions may have done.
    pub mismatches_explained: bool,
    /// The first mismatched counter, explained; `None` when there is none.
    pub mismatch_example: Option<String>,
    /// Counters below 0 after the run.
    pub negative: u64,
    /// The smallest value after the run (0 when there are no counters).
    pub lowest: i64,
    /// 200 answers whose results contradicted the request.
    pub inconsistent_answers: u64,
    /// The first inconsistent answer, explained; `None` when there is none.
    pub inconsistent_example: Option<String>,
    /// Transactions that may or may not have committed (transport errors, unexpected 5xx).
    pub unknown_outcomes: u64,
    /// FAIL on a negative counter, a 500, an inconsistent answer, a transfer sum that moved or
    /// a mismatch the unknown outcomes cannot explain; INCONCLUSIVE when they can; else PASS.
    pub verdict: Verdict,
}

impl Checks {
    /// Checks the counters `names`, valued `before` and `after` the run, against what the
    /// load `out` saw.
    pub(crate) fn new(
        workload: WorkloadKind,
        names: &[String],
        before: &[i64],
        after: &[i64],
        out: &RunOutput,
    ) -> Self {
        let sum = |v: &[i64]| v.iter().map(|x| i128::from(*x)).sum::<i128>();
        let (mut mismatched, mut explained, mut mismatch_example) = (0, true, None);
        for (i, name) in names.iter().enumerate() {
            let diff = i128::from(after[i]) - i128::from(before[i]);
            let extra = diff - i128::from(out.acknowledged[i]);
            if extra != 0 {
                mismatched += 1;
                let (low, high) = (out.unknown_low[i], out.unknown_high[i]);
                explained &= (i128::from(low)..=i128::from(high)).contains(&extra);
                let _ = mismatch_example.get_or_insert_with(|| {
                    format!(
                        "'{name}' went {} → {} ({diff:+}), acknowledged transactions {:+}",
                        before[i], after[i], out.acknowledged[i]
                    )
                });
            }
        }
        let lowest = after.iter().copied().min().unwrap_or(0);
        let negative = after.iter().filter(|v| **v < 0).count() as u64;
        let (sum_before, sum_after) = (sum(before), sum(after));
        let unknown_outcomes = out.statuses.unknown_outcomes;
        // A 500 is a bug in rowlock by contract: it fails the run whatever the sums say.
        let broken = negative > 0
            || out.statuses.other_statuses.contains_key(&500)
            || out.inconsistent > 0
            || (workload == WorkloadKind::Transfer && sum_before != sum_after);
        let explained = explained && unknown_outcomes > 0;
        let verdict = if broken {
            Verdict::Fail
        } else if mismatched == 0 {
            Verdict::Pass
        } else if explained {
            Verdict::Inconclusive
        } else {
            Verdict::Fail
        };
        Self {
            workload,
            counters: names.len() as u64,
            sum_before,
            sum_after,
            acknowledged_delta: sum(&out.acknowledged),
            mismatched,
            mismatches_explained: explained,
            mismatch_example,
            negative,
            lowest,
            inconsistent_answers: out.inconsistent,
            inconsistent_example: out.inconsistent_example.clone(),
            unknown_outcomes,
            verdict,
        }
    }
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

impl std::fmt::Display for Checks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.workload == WorkloadKind::Order {
            "items"
        } else {
            "accounts"
        };
        if self.workload == WorkloadKind::Order {
            writeln!(
                f,
                "stock       {}: {} units sold, acknowledged orders took {}",
                pass(self.sum_before - self.sum_after == -self.acknowledged_delta),
                self.sum_before - self.sum_after,
                -self.acknowledged_delta
            )?;
        } else {
            writeln!(
                f,
                "sum         {}: balances add up to {} before and {} after",
                pass(self.sum_before == self.sum_after),
                self.sum_before,
                self.sum_after
            )?;
        }
        writeln!(
            f,
            "per {:<7} {}: {} of {} {what} differ from their acknowledged transactions{}{}",
            if self.workload == WorkloadKind::Order {
                "item"
            } else {
                "account"
            },
            match (self.mismatched, self.mismatches_explained) {
                (0, _) => "PASS",
                (_, true) => "INCONCLUSIVE",
                _ => "FAIL",
            },
            self.mismatched,
            self.counters,
            self.mismatch_example
                .as_ref()
                .map_or(String::new(), |e| format!(", e.g. {e}")),
            if self.unknown_outcomes > 0 {
                format!(
                    " ({} transactions of unknown outcome)",
                    self.unknown_outcomes
                )
            } else {
                String::new()
            }
        )?;
        writeln!(
            f,
            "bounds      {}: {} {what} below 0 (lowest {})",
            pass(self.negative == 0),
            self.negative,
            self.lowest
        )?;
        write!(
            f,
            "answers     {}: {} acknowledged transactions with inconsistent results{}",
            pass(self.inconsistent_answers == 0),
            self.inconsistent_answers,
            self.inconsistent_example
                .as_ref()
                .map_or(String::new(), |e| format!(", e.g. {e}"))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("account-{i}")).collect()
    }

    fn out(acknowledged: Vec<i64>, low: Vec<i64>, high: Vec<i64>, unknown: u64) -> RunOutput {
        let mut out = RunOutput::empty(acknowledged.len()).expect("histogram");
        out.acknowledged = acknowledged;
        out.unknown_low = low;
        out.unknown_high = high;
        out.statuses.unknown_outcomes = unknown;
        out
    }

    #[test]
    fn changes_equal_to_the_acknowledged_transfers_pass() {
        let o = out(vec![-30, 30], vec![0, 0], vec![0, 0], 0);
        let c = Checks::new(WorkloadKind::Transfer, &names(2), &[100, 0], &[70, 30], &o);
        assert_eq!(c.verdict, Verdict::Pass, "{c}");
    }

    #[test]
    fn a_lost_debit_fails_the_sum_and_the_account() {
        let o = out(vec![-30, 30], vec![0, 0], vec![0, 0], 0);
        let c = Checks::new(WorkloadKind::Transfer, &names(2), &[100, 0], &[100, 30], &o);
        assert_eq!((c.verdict, c.mismatched), (Verdict::Fail, 1), "{c}");
    }

    #[test]
    fn a_difference_the_unknown_transfers_explain_is_inconclusive() {
        let o = out(vec![0, 0], vec![-30, 0], vec![0, 30], 1);
        let c = Checks::new(WorkloadKind::Transfer, &names(2), &[100, 0], &[70, 30], &o);
        assert_eq!(c.verdict, Verdict::Inconclusive, "{c}");
        // More than the unknown transfers could have moved is a failure.
        let c = Checks::new(WorkloadKind::Transfer, &names(2), &[100, 0], &[60, 40], &o);
        assert_eq!(c.verdict, Verdict::Fail, "{c}");
    }

    #[test]
    fn a_negative_stock_or_a_half_applied_order_fails() {
        let o = out(vec![-5, -5], vec![0, 0], vec![0, 0], 0);
        let c = Checks::new(WorkloadKind::Order, &names(2), &[5, 5], &[0, -1], &o);
        assert_eq!((c.verdict, c.negative), (Verdict::Fail, 1), "{c}");
        // A refused order that still took item 0's stock.
        let c = Checks::new(WorkloadKind::Order, &names(2), &[9, 9], &[2, 4], &o);
        assert_eq!((c.verdict, c.mismatched), (Verdict::Fail, 1), "{c}");
    }

    #[test]
    fn a_500_fails_the_run_even_when_every_balance_adds_up() {
        let mut o = out(vec![-30, 30], vec![0, 0], vec![0, 0], 1);
        let _ = o.statuses.other_statuses.insert(500, 1);
        let c = Checks::new(WorkloadKind::Transfer, &names(2), &[100, 0], &[70, 30], &o);
        assert_eq!(c.verdict, Verdict::Fail, "{c}");
    }
}
