//! Operator endpoints: `GET /metrics` (Prometheus text format) and `GET /debug/locks` (who
//! waits on whom right now).

use actix_web::web::{self, Data};
use actix_web::HttpResponse;
use serde_json::json;

use crate::db::statements::Conn;
use crate::db::{introspection, Db};
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics))
        .route("/debug/locks", web::get().to(debug_locks))
        .route("/openapi.json", web::get().to(openapi));
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(<crate::openapi::ApiDoc as utoipa::OpenApi>::openapi())
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics", body = String,
               content_type = "application/openmetrics-text")))]
pub async fn metrics(
    db: Data<Db>,
    budget: Data<crate::db::notify::WaitBudget>,
) -> Result<HttpResponse, ApiError> {
    let client = db.pool.get().await?;
    let depths = introspection::queue_depths(Conn::outside(&client)).await?;
    db.metrics.set_queue_depths(&depths);
    db.metrics.set_waiters(budget.waiting());
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(db.metrics.render(&db.pool)))
}

/// Who waits on whom in rowlock's database right now.
#[utoipa::path(get, path = "/debug/locks", tag = "operations",
    responses((status = 200, description = "Waiting backends", body = Object)))]
pub async fn debug_locks(db: Data<Db>) -> Result<HttpResponse, ApiError> {
    let client = db.pool.get().await?;
    let group = db.group.clone();
    let waiting =
        introspection::waiters(Conn::outside(&client), |id| group.as_ref()?.request_ids(id))
            .await?;
    Ok(HttpResponse::Ok().json(json!({ "waiting": waiting })))
}
