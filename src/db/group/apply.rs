//! A group's requests applied one after another, in arrival order, to its locked rows — in
//! memory, between the statement that locked the rows and the one that writes them.
//!
//! Each request is all-or-nothing on its own: a refused one (404, 409 `bound_violation`, 422
//! overflow, an idempotency conflict) leaves the values as they were for the next one. The
//! answers are exactly those of the requests run one after another: each sees the values the
//! ones before it left, and gets the next version from the group's reserved ones.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Counters, Member};
use crate::db::counters::{not_found, Counter, Increment};
use crate::db::idempotency::{self, Reply};
use crate::db::transactions::{name_op, replay, Committed, Op, Refused};
use crate::error::ApiError;

use super::Work;

/// What round 1 of the group's transaction learned about its idempotency keys.
#[derive(Default)]
pub(super) struct Keys {
    /// Whether this transaction got the key's advisory lock (false: another request holds it).
    pub locked: HashMap<String, bool>,
    /// Stored answers by key: the fingerprint of the request that stored it, and the answer.
    pub stored: HashMap<String, (Vec<u8>, Reply)>,
}

/// Everything the group writes, as the columns of its one write statement.
#[derive(Default)]
pub(super) struct Writes {
    pub names: Vec<String>,
    pub values: Vec<i64>,
    pub versions: Vec<i64>,
    pub transaction_ids: Vec<i64>,
    pub transaction_ops: Vec<String>,
    pub transaction_results: Vec<String>,
    pub keys: Vec<String>,
    pub hashes: Vec<Vec<u8>>,
    pub statuses: Vec<i16>,
    pub headers: Vec<String>,
    pub bodies: Vec<Vec<u8>>,
}

impl Writes {
    pub(super) fn is_empty(&self) -> bool {
        self.names.is_empty() && self.transaction_ids.is_empty() && self.keys.is_empty()
    }
}

/// The outcome of applying a group: each member's answer (in member order) and the writes.
pub(super) struct Applied {
    pub answers: Vec<Result<Reply, ApiError>>,
    pub writes: Writes,
}

/// Numbers reserved in round 1 (versions, transaction ids), handed out in ascending order.
pub(super) struct Reserved(std::vec::IntoIter<i64>);

impl Reserved {
    pub(super) fn new(mut numbers: Vec<i64>) -> Self {
        numbers.sort_unstable();
        Self(numbers.into_iter())
    }

    fn next(&mut self, what: &str) -> Result<i64, ApiError> {
        self.0
            .next()
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the group reserved too few {what}")))
    }
}

/// Applies `members` in order to `rows` (the locked counters).
pub(super) fn apply(
    members: &[Member<Counters>],
    rows: Vec<Counter>,
    keys: &Keys,
    mut versions: Reserved,
    mut transaction_ids: Reserved,
) -> Result<Applied, ApiError> {
    let mut counters: BTreeMap<String, Counter> =
        rows.into_iter().map(|c| (c.name.clone(), c)).collect();
    let mut changed: HashSet<String> = HashSet::new();
    let mut writes = Writes::default();
    let mut seen_keys: HashSet<&str> = HashSet::new();
    let mut answers = Vec::with_capacity(members.len());
    for member in members {
        if let Some(idem) = &member.work.idempotency {
            // Two requests with one key in one group: the second is "still in flight".
            let first = seen_keys.insert(idem.key.as_str());
            if !first || !keys.locked.get(&idem.key).copied().unwrap_or(false) {
                answers.push(Err(ApiError::IdempotencyInFlight));
                continue;
            }
            if let Some((hash, stored)) = keys.stored.get(&idem.key) {
                answers.push(idempotency::replay(idem, hash, stored));
                continue;
            }
        }
        let step = Step {
            counters: &mut counters,
            changed: &mut changed,
            versions: &mut versions,
        };
        let reply = match &member.work.work {
            Work::Increment { name, by } => step.increment(name, *by).and_then(|i| i.reply()),
            Work::Transaction { ops } => step
                .transaction(ops, &mut transaction_ids, &mut writes)
                .and_then(|c| c.reply()),
        };
        if let (Ok(reply), Some(idem)) = (&reply, &member.work.idempotency) {
            writes.keys.push(idem.key.clone());
            writes.hashes.push(idem.request_hash.clone());
            writes.statuses.push(reply.status as i16);
            writes.headers.push(to_json(&reply.headers)?);
            writes.bodies.push(reply.body.clone());
        }
        answers.push(reply);
    }
    for name in changed {
        let counter = &counters[&name];
        writes.values.push(counter.value);
        writes.versions.push(counter.version);
        writes.names.push(name);
    }
    Ok(Applied { answers, writes })
}

/// The group's state as one request is applied to it.
struct Step<'a> {
    counters: &'a mut BTreeMap<String, Counter>,
    changed: &'a mut HashSet<String>,
    versions: &'a mut Reserved,
}

impl Step<'_> {
    fn increment(self, name: &str, by: i64) -> Result<Increment, ApiError> {
        let counter = self.counters.get_mut(name).ok_or_else(|| not_found(name))?;
        let value = counter.plus(by)?;
        let version = self.versions.next("versions")?;
        let previous = std::mem::replace(&mut counter.value, value);
        counter.version = version;
        let _ = self.changed.insert(name.to_owned());
        Ok(Increment {
            name: name.to_owned(),
            value,
            previous,
            version,
        })
    }

    fn transaction(
        self,
        ops: &[Op],
        ids: &mut Reserved,
        writes: &mut Writes,
    ) -> Result<Committed, ApiError> {
        let mut names: Vec<&str> = ops.iter().map(|op| op.counter.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let current: BTreeMap<String, Counter> = names
            .iter()
            .filter_map(|n| self.counters.get(*n))
            .map(|c| (c.name.clone(), c.clone()))
            .collect();
        let results = replay(ops, current).map_err(|refused| match refused {
            Refused::Missing(i) => name_op(i, not_found(&ops[i].counter)),
            Refused::Bound(i, why) => name_op(i, why),
        })?;
        // Each op's result carries its counter's value after it: the last one is the final one.
        for result in &results {
            if let (Some(counter), Some(value)) =
                (self.counters.get_mut(&result.counter), result.value)
            {
                counter.value = value;
            }
        }
        for name in names {
            let version = self.versions.next("versions")?;
            if let Some(counter) = self.counters.get_mut(name) {
                counter.version = version;
            }
            let _ = self.changed.insert(name.to_owned());
        }
        let committed = Committed {
            id: ids.next("transaction ids")?,
            atomic: true,
            results,
        };
        writes.transaction_ids.push(committed.id);
        writes.transaction_ops.push(to_json(&ops)?);
        writes
            .transaction_results
            .push(to_json(&committed.results)?);
        Ok(committed)
    }
}

/// JSON text for a `jsonb` column.
fn to_json(value: &impl serde::Serialize) -> Result<String, ApiError> {
    Ok(serde_json::to_string(value).map_err(anyhow::Error::from)?)
}

#[cfg(test)]
mod tests;
