//! The HTTP surface: one module per resource, plus the extractors they share.

pub mod auth;
pub mod counters;
pub mod extract;
pub mod health;
pub mod jobs;
pub mod leases;
pub mod ops;
pub mod queues;
pub mod transactions;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::{self, Data, QueryConfig};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, Resource};
use futures_util::future::LocalBoxFuture;

use crate::db::{Db, Reply, Tx, TxOptions};
use crate::error::ApiError;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let _ = cfg
        .app_data(QueryConfig::default().error_handler(|err, _| {
            ApiError::BadRequest(format!("bad query string: {err}")).into()
        }))
        .configure(health::configure)
        .configure(ops::configure)
        .configure(counters::configure)
        .configure(transactions::configure)
        .configure(jobs::configure)
        .configure(leases::configure)
        .configure(queues::configure);
}

/// The resource at `path`: the methods routed on it, and 405 (`method_not_allowed`) for the rest.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// Runs `body` as one transaction on the resource `name` and answers with its reply. `body` gets
/// its own copy of `name` each time it runs (a retried transaction runs it again).
async fn transact_on<F>(
    db: &Db,
    opts: TxOptions,
    name: String,
    body: F,
) -> Result<HttpResponse, ApiError>
where
    F: for<'t> Fn(&'t Tx, String) -> LocalBoxFuture<'t, Result<Reply, ApiError>> + 'static,
{
    let reply = db.transact(opts, move |tx| body(tx, name.clone())).await?;
    Ok(respond(reply))
}

/// Turns a transaction's [`Reply`] into the HTTP response (a replay says so in a header).
pub fn respond(reply: Reply) -> HttpResponse {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    let mut builder = HttpResponse::build(status);
    let builder = reply
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .chain(reply.replayed.then_some(("idempotent-replayed", "true")))
        .fold(&mut builder, |builder, header| {
            builder.insert_header(header)
        });
    if reply.body.is_empty() {
        return builder.finish();
    }
    builder.content_type("application/json").body(reply.body)
}

/// Default service: no route matches.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

/// A known path with a method it does not serve.
pub async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        req.method(),
        req.path()
    )))
}

/// The request id of the current request (echoed as `x-request-id`).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const REQUEST_ID: &str = "x-request-id";

tokio::task_local! {
    /// The id of the request being handled, for code that has no `HttpRequest` at hand (the
    /// transaction path names its PostgreSQL session after it).
    static CURRENT_REQUEST_ID: String;
}

/// The id of the request this task is handling, if any.
pub fn current_request_id() -> Option<String> {
    CURRENT_REQUEST_ID.try_with(Clone::clone).ok()
}

/// Gives every request an id (the client's `x-request-id` when it is sane), logs it with the
/// outcome, echoes it, and makes sure every error response is `application/problem+json`, even
/// those produced by actix itself.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    let _ = req.extensions_mut().insert(RequestId(id.clone()));
    let (method, path) = (req.method().clone(), req.path().to_owned());
    let metrics = req.app_data::<Data<Db>>().map(|db| db.metrics.clone());
    let started = std::time::Instant::now();

    let res = CURRENT_REQUEST_ID
        .scope(id.clone(), next.call(req))
        .await?
        .map_into_boxed_body();
    let mut res = ensure_problem(res);
    if let Some(metrics) = metrics {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        let code = res
            .response()
            .error()
            .and_then(|e| e.as_error::<ApiError>())
            .map(ApiError::code);
        let status = res.status().as_u16();
        metrics.request(
            &route,
            method_label(&method),
            status,
            started.elapsed(),
            code,
        );
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        // Replaces any `x-request-id` a handler may have set: the one logged is the one echoed.
        let _ = res
            .headers_mut()
            .insert(header::HeaderName::from_static(REQUEST_ID), value);
    }
    let status = res.status().as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(request_id = %id, %method, %path, status, elapsed_ms, "request failed");
    } else {
        tracing::debug!(request_id = %id, %method, %path, status, elapsed_ms, "request");
    }
    Ok(res)
}

/// The `method` label of a request: one of the methods HTTP defines, or `other`, so that no
/// client can grow the metrics with methods of its own making.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

fn ensure_problem(res: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let status = res.status();
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if status.as_u16() < 400 || is_problem {
        return res;
    }
    let detail = res
        .response()
        .error()
        .map(|e| e.to_string())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let error = match status.as_u16() {
        404 => ApiError::NotFound(detail),
        405 => ApiError::MethodNotAllowed(detail),
        413 => ApiError::PayloadTooLarge(detail),
        503 => ApiError::Unavailable(detail),
        s if s >= 500 => ApiError::Internal(anyhow::anyhow!(detail)),
        _ => ApiError::BadRequest(detail),
    };
    let (req, _) = res.into_parts();
    ServiceResponse::from_err(error, req).map_into_boxed_body()
}
