//! HTTP handlers for multi-counter transactions: `POST /transactions`, `GET /transactions/{id}`.

use actix_web::web::{self, Data};
use actix_web::HttpResponse;
use serde::Deserialize;

use super::extract::{int64, validate_name, JsonBody, LockParams, Mutation};
use super::{resource, respond};
use crate::activity::CounterActivity;
use crate::db::statements::Conn;
use crate::db::transactions::{self, Committed, Op, StoredTransaction, MAX_OPS};
use crate::db::Db;
use crate::error::ApiError;

/// Registers `POST /transactions` and `GET /transactions/{id}`.
pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    let _ = cfg
        .service(resource("/transactions").route(web::post().to(create)))
        .service(resource("/transactions/{id}").route(web::get().to(get)));
}

/// `POST /transactions` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionBody {
    /// 1-100 ops, applied in order.
    #[schema(min_items = 1, max_items = 100)]
    ops: Vec<OpBody>,
    /// true: all or nothing; false: each op under its own savepoint.
    #[serde(default = "default_atomic")]
    #[schema(default = true)]
    atomic: bool,
}

fn default_atomic() -> bool {
    true
}

/// One op: add `by` to `counter`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpBody {
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,128}$")]
    counter: String,
    /// Not 0.
    #[schema(value_type = i64)]
    by: Option<serde_json::Number>,
}

impl TransactionBody {
    fn ops(&self) -> Result<Vec<Op>, ApiError> {
        if self.ops.is_empty() || self.ops.len() > MAX_OPS {
            return Err(ApiError::Invalid(format!(
                "a transaction has 1 to {MAX_OPS} ops, not {}",
                self.ops.len()
            )));
        }
        self.ops
            .iter()
            .enumerate()
            .map(|(i, op)| {
                let at = |e: ApiError| match e {
                    ApiError::BadRequest(d) => ApiError::BadRequest(format!("op {}: {d}", i + 1)),
                    ApiError::Invalid(d) => ApiError::Invalid(format!("op {}: {d}", i + 1)),
                    other => other,
                };
                let counter = validate_name(&op.counter).map_err(at)?.to_owned();
                let by = match int64("by", op.by.as_ref()).map_err(at)? {
                    None => return Err(at(ApiError::BadRequest("'by' is required".into()))),
                    Some(0) => return Err(at(ApiError::Invalid("'by' must not be 0".into()))),
                    Some(by) => by,
                };
                Ok(Op { counter, by })
            })
            .collect()
    }
}

/// Applies ops to several counters in one transaction, locking rows in name order.
#[utoipa::path(post, path = "/transactions", tag = "transactions",
    params(LockParams, crate::routes::extract::MutationHeaders),
    request_body(content = TransactionBody, content_type = "application/json"),
    responses((status = 200, description = "Committed", body = Committed)))]
pub async fn create(
    m: Mutation,
    body: JsonBody<TransactionBody>,
    activity: Data<CounterActivity>,
) -> Result<HttpResponse, ApiError> {
    let ops = body.value.ops()?;
    let (lock, strength) = (m.params().row_lock(), m.params().strength);
    let (db, opts) = m.options(&body.raw)?;
    let mut names: Vec<String> = ops.iter().map(|op| op.counter.clone()).collect();
    names.sort_unstable();
    names.dedup();
    let reply = db
        .transaction(ops, body.value.atomic, lock, strength, opts)
        .await?;
    if reply.status == 200 && !reply.replayed {
        for name in &names {
            activity.record(name);
        }
    }
    Ok(respond(reply))
}

/// A committed transaction.
#[utoipa::path(get, path = "/transactions/{id}", tag = "transactions",
    params(("id" = i64, Path, description = "Transaction id")),
    responses((status = 200, description = "The transaction", body = StoredTransaction)))]
pub async fn get(db: Data<Db>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("transaction id '{id}' is not an integer")))?;
    let client = db.pool.get().await?;
    let found = transactions::get(Conn::outside(&client), id).await?;
    Ok(HttpResponse::Ok().json(found))
}
