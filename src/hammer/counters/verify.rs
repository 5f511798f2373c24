//! The lost-update check: read every counter the run can touch before and after it, and compare
//! the sum of their changes with the sum of the increments the server acknowledged.
//!
//! A 200 means committed and anything else rowlock answers means rolled back, so without
//! transport errors the two sums must be equal to the unit. An increment whose answer never
//! arrived (or was an unexpected 5xx) may or may not have committed; if such increments can
//! explain the difference the verdict is "inconclusive" rather than a false "fail".

use anyhow::Result;
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::super::client::Api;
use crate::hammer::Verdict;

/// Counters read at once before and after the run (10,000 spread counters take a moment).
const READ_CONCURRENCY: usize = 32;

/// The sum check's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SumCheck {
    /// Counters read before and after the run (`--spread`).
    pub counters: u64,
    /// Acknowledged increments × `by`.
    pub expected_delta: i128,
    /// Σ (after − before) over every counter.
    pub observed_delta: i128,
    /// Increments that may or may not have committed (transport errors, unexpected 5xx).
    pub unknown_outcomes: u64,
    /// PASS when the deltas are equal, INCONCLUSIVE when the unknown outcomes can explain the
    /// difference, else FAIL.
    pub verdict: Verdict,
}

/// Reads (creating when missing) every counter in `names`, in order.
pub async fn read_or_create_all(api: &Api, names: &[String]) -> Result<Vec<i64>> {
    futures_util::stream::iter(names.iter().cloned())
        .map(|name| async move { api.get_or_create(&name).await.map(|s| s.value) })
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await
}

/// Reads every counter in `names`, in order; a counter deleted meanwhile is an error.
pub async fn read_all(api: &Api, names: &[String]) -> Result<Vec<i64>> {
    futures_util::stream::iter(names.iter().cloned())
        .map(|name| async move {
            api.get(&name)
                .await?
                .map(|s| s.value)
                .ok_or_else(|| anyhow::anyhow!("counter '{name}' was deleted during the run"))
        })
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await
}

/// Compares the observed change with `acknowledged` increments of `by`.
pub fn sum_check(
    before: &[i64],
    after: &[i64],
    acknowledged: u64,
    by: i64,
    unknown_outcomes: u64,
) -> SumCheck {
    let observed_delta: i128 = before
        .iter()
        .zip(after)
        .map(|(b, a)| i128::from(*a) - i128::from(*b))
        .sum();
    let expected_delta = i128::from(acknowledged) * i128::from(by);
    // Each unknown increment adds either 0 or `by`.
    let extra = observed_delta - expected_delta;
    let unknown_span = i128::from(unknown_outcomes) * i128::from(by);
    let explained = if by > 0 {
        (0..=unknown_span).contains(&extra)
    } else {
        (unknown_span..=0).contains(&extra)
    };
    let verdict = if extra == 0 {
        Verdict::Pass
    } else if unknown_outcomes > 0 && explained {
        Verdict::Inconclusive
    } else {
        Verdict::Fail
    };
    SumCheck {
        counters: before.len() as u64,
        expected_delta,
        observed_delta,
        unknown_outcomes,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_sums_pass() {
        let check = sum_check(&[0, 10], &[3, 12], 5, 1, 0);
        assert_eq!(check.verdict, Verdict::Pass);
        assert_eq!((check.expected_delta, check.observed_delta), (5, 5));
    }

    #[test]
    fn a_lost_update_fails() {
        assert_eq!(sum_check(&[0], &[4], 5, 1, 0).verdict, Verdict::Fail);
    }

    #[test]
    fn a_difference_within_the_unknown_outcomes_is_inconclusive() {
        assert_eq!(
            sum_check(&[0], &[6], 5, 1, 2).verdict,
            Verdict::Inconclusive
        );
        assert_eq!(
            sum_check(&[0], &[-12], 5, -2, 1).verdict,
            Verdict::Inconclusive
        );
        // Fewer than acknowledged is never explained by unknown outcomes.
        assert_eq!(sum_check(&[0], &[4], 5, 1, 2).verdict, Verdict::Fail);
    }
}
