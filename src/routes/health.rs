//! `GET /healthz` (the process is alive) and `GET /readyz` (the database answers).

use actix_web::web::{self, Data};
use actix_web::HttpResponse;
use serde_json::json;

use crate::db::Db;
use crate::error::ApiError;

/// Registers `GET /healthz` and `GET /readyz`.
pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    let _ = cfg
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Object)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready", body = Object)))]
pub async fn readyz(db: Data<Db>) -> Result<HttpResponse, ApiError> {
    let client = db.pool.get().await?;
    let _rows = client.simple_query("SELECT 1").await?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}
