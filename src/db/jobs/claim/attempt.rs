//! One claim transaction of the long poll ([`super::claim`]), and the slots a claim statement
//! deals out.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use super::{idle_for, ClaimSpec, ClaimedJob, MAX_CLAIM_BYTES};
use crate::db::jobs::sql::{CLAIM, COMPLETE_BATCH, NEXT_DUE, RESCUE};
use crate::db::jobs::{item_results, ItemResult};
use crate::db::{Reply, Tx};
use crate::error::ApiError;

/// The claim slots of one queue in one claim statement: each claim's token, lease and owner,
/// once per job it may take.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    /// Each slot's token: its claim's, the same for every slot of the claim.
    pub(crate) tokens: Vec<String>,
    /// Each slot's lease, in seconds from the claim.
    pub(crate) lease_secs: Vec<f64>,
    /// Each slot's claim, as the index of its member in the group.
    pub(crate) owners: Vec<i32>,
}

impl Slots {
    /// Adds `spec.limit` slots for the claim `owner`, with a fresh token.
    pub(crate) fn add(&mut self, spec: &ClaimSpec, owner: i32) {
        let token = format!("{:032x}", rand::random::<u128>());
        for _ in 0..spec.limit {
            self.tokens.push(token.clone());
            self.lease_secs.push(spec.lease_secs);
            self.owners.push(owner);
        }
    }

    /// How many jobs the statement may take.
    pub(crate) fn limit(&self) -> i64 {
        self.tokens.len() as i64
    }
}

/// One claim transaction. Finding nothing on the `last` attempt is a 204; finding nothing
/// before that is an error that rolls the transaction back (so no idempotency record stores an
/// empty answer the long poll has not given yet), with `idle` telling the caller how long to
/// sleep.
pub(super) async fn attempt(
    tx: &Tx,
    spec: &ClaimSpec,
    last: bool,
    idle: &Cell<Option<Option<Duration>>>,
    items: Option<&[(i64, String)]>,
    acked: &RefCell<Option<Vec<ItemResult>>>,
) -> Result<Reply, ApiError> {
    let (rescue, claim) = (tx.prepare(RESCUE).await?, tx.prepare(CLAIM).await?);
    // Prepared before the pipeline, like the others: it must go out first.
    let complete = match items {
        Some(_) => Some(tx.prepare(COMPLETE_BATCH).await?),
        None => None,
    };
    let mut slots = Slots::default();
    slots.add(spec, 0);
    let client = tx.client();
    let claim_params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
        &spec.queue,
        &spec.limit,
        &slots.tokens,
        &slots.lease_secs,
        &MAX_CLAIM_BYTES,
        &slots.owners,
    ];
    let rescue_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&spec.queue, &spec.limit];
    let (ids, tokens): (Vec<i64>, Vec<&str>) = items
        .unwrap_or_default()
        .iter()
        .map(|(id, token)| (*id, token.as_str()))
        .unzip();
    let complete_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&spec.queue, &ids, &tokens];
    let completing = async {
        match &complete {
            Some(stmt) => client.query(stmt, &complete_params).await.map(Some),
            None => Ok(None),
        }
    };
    // Completions, rescue, claim and COMMIT go out in one pipeline.
    let (completed, rescued, rows) = futures_util::join!(
        completing,
        client.execute(&rescue, &rescue_params),
        tx.commit_with(client.query(&claim, &claim_params)),
    );
    // The first statement's error is the cause; the later ones would only say "aborted".
    if let Some(rows) = completed? {
        *acked.borrow_mut() = Some(item_results(&rows));
    }
    let _ = rescued?;
    let rows = rows?;
    if !rows.is_empty() {
        let jobs: Vec<ClaimedJob> = rows
            .iter()
            .map(ClaimedJob::of)
            .collect::<Result<_, ApiError>>()?;
        return Reply::json(200, &jobs);
    }
    if last {
        return Ok(Reply::empty(204));
    }
    // Only an empty claim asks when to look again (after COMMIT, or inside the transaction when
    // an idempotency record defers it; either way it only reads).
    let next = tx.prepare(NEXT_DUE).await?;
    let secs: Option<f64> = client.query_one(&next, &[&spec.queue]).await?.get("secs");
    idle.set(Some(idle_for(secs)));
    Err(ApiError::RowSkipped("nothing to claim yet".into()))
}
