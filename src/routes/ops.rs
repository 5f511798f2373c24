//! Operator endpoints: `GET /metrics` (Prometheus text format), `GET /debug/locks` (who waits on
//! whom right now), `GET /debug/dashboard` (the lists the dashboard shows) and `GET /ui` (the
//! dashboard itself, one page embedded in the binary).

use actix_web::web::{self, Data};
use actix_web::HttpResponse;
use serde_json::json;

use crate::activity::CounterActivity;
use crate::db::leases::Leases;
use crate::db::statements::Conn;
use crate::db::{dashboard, introspection, Db};
use crate::error::ApiError;

/// Registers the operations routes: `/metrics`, `/debug/*`, the UI and `/openapi.json`.
pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    let _ = cfg
        .route("/metrics", web::get().to(metrics))
        .route("/debug/locks", web::get().to(debug_locks))
        .route("/debug/dashboard", web::get().to(dashboard))
        .route("/ui", web::get().to(ui))
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

/// The dashboard's page: one self-contained HTML file (its script and styles inline), embedded at
/// build time. It holds no data; everything it shows comes from `/debug/dashboard`,
/// `/debug/locks` and `/metrics`, with the ops token it asks for when they answer 401.
const UI: &str = include_str!("../ui/index.html");

/// The live dashboard.
#[utoipa::path(get, path = "/ui", tag = "operations",
    responses((status = 200, description = "The dashboard (HTML)", body = String, content_type = "text/html")))]
pub async fn ui() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-cache"))
        .insert_header((
            "content-security-policy",
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
        ))
        .body(UI)
}

/// `GET /debug/dashboard`'s query.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DashboardQuery {
    /// Only counters whose name contains this text.
    #[param(max_length = 128)]
    pub search: Option<String>,
}

/// The dashboard's lists, as one snapshot.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Dashboard {
    /// The busiest counters (changes per second here over the last ten seconds), then the most
    /// recently changed ones; only names containing `search` when it is given.
    pub counters: Vec<dashboard::CounterRow>,
    /// Every queue that has jobs or settings.
    pub queues: Vec<dashboard::QueueRow>,
    /// Every held lease, with its waiters in this instance.
    pub leases: Vec<dashboard::LeaseRow>,
    /// Who waits on whom (as `GET /debug/locks`).
    #[schema(value_type = Vec<Object>)]
    pub waiting: Vec<introspection::Waiter>,
    /// This instance's connection pool.
    #[schema(value_type = Object)]
    pub pool: serde_json::Value,
}

/// What the dashboard shows: the busiest counters, every queue, held leases, who waits on whom.
#[utoipa::path(get, path = "/debug/dashboard", tag = "operations", params(DashboardQuery),
    responses((status = 200, description = "The dashboard's lists", body = Dashboard)))]
pub async fn dashboard(
    db: Data<Db>,
    activity: Data<CounterActivity>,
    leases: Data<Leases>,
    query: web::Query<DashboardQuery>,
) -> Result<HttpResponse, ApiError> {
    let search = query.search.as_deref().unwrap_or("");
    if search.chars().count() > 128 || search.contains('\0') {
        return Err(ApiError::Invalid(
            "search is at most 128 characters, without NUL".into(),
        ));
    }
    let pooled = db.pool.get().await?;
    let client = Conn::outside(&pooled);
    let counters = dashboard::counters(client, &activity.busiest(20), search).await?;
    let queues = dashboard::queues(client).await?;
    let held = dashboard::leases(client, |key| leases.waiting(key)).await?;
    let group = db.group.clone();
    let waiting = introspection::waiters(client, |id| group.as_ref()?.request_ids(id)).await?;
    let status = db.pool.status();
    let pool = json!({
        "size": status.size,
        "max_size": status.max_size,
        "available": status.available,
        "waiting": status.waiting,
    });
    Ok(HttpResponse::Ok().json(Dashboard {
        counters,
        queues,
        leases: held,
        waiting,
        pool,
    }))
}
