//! `GET /openapi.json`: the OpenAPI 3.1 document of every route, generated from the handlers'
//! annotations. The problem responses every route can give are added in one place
//! ([`ProblemResponses`]) rather than repeated on each handler.

use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::Problem;
use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rowlock",
        description = "Concurrent row updates done right on PostgreSQL: counters, transactions, \
                       idempotency keys, job queues and leases, each mutation one locked transaction."
    ),
    paths(
        routes::health::healthz,
        routes::health::readyz,
        routes::ops::metrics,
        routes::ops::debug_locks,
        routes::ops::dashboard,
        routes::ops::ui,
        routes::ops::openapi,
        routes::counters::get,
        routes::counters::put,
        routes::counters::delete,
        routes::counters::increment,
        routes::transactions::create,
        routes::transactions::get,
        routes::leases::acquire,
        routes::leases::renew,
        routes::leases::release,
        routes::leases::get,
        routes::jobs::enqueue,
        routes::jobs::worker::claim,
        routes::jobs::worker::complete_batch,
        routes::jobs::get,
        routes::jobs::complete,
        routes::jobs::fail,
        routes::jobs::heartbeat,
        routes::jobs::retry,
        routes::jobs::delete,
        routes::jobs::cancel,
        routes::queues::get,
        routes::queues::put,
        routes::queues::pause,
        routes::queues::resume,
    ),
    components(schemas(Problem)),
    modifiers(&ProblemResponses)
)]
/// The OpenAPI document of every route, built by `ApiDoc::openapi()` and served at
/// `GET /openapi.json`.
pub struct ApiDoc;

/// The error statuses of API routes, each answered with a problem document.
const API_PROBLEMS: &[(u16, &str)] = &[
    (
        400,
        "Malformed JSON, unknown parameter or value, bad name or header",
    ),
    (
        401,
        "A bearer token is configured and the request has none, or a wrong one",
    ),
    (404, "No such resource"),
    (
        409,
        "Bound violation, serialization failure, deadlock, stale token or key in flight",
    ),
    (412, "If-Match did not match"),
    (413, "Body over the limit"),
    (422, "Well-formed but meaningless"),
    (
        423,
        "Row locked and the request asked not to wait, or its lock timeout ran out",
    ),
    (
        503,
        "Database unreachable or busy, or no pooled connection in time; nothing was applied; \
         has Retry-After",
    ),
    (
        504,
        "The connection was lost after COMMIT was sent and the outcome could not be learned",
    ),
    (
        403,
        "A browser's cross-site request (Origin not allowed, or Sec-Fetch-Site: cross-site)",
    ),
    (
        408,
        "The body did not arrive, whole, within the body timeout",
    ),
];

/// Adds the problem responses to every operation: all of them to API routes, 503 to `/readyz`
/// and 401 to the operator routes.
struct ProblemResponses;

impl Modify for ProblemResponses {
    fn modify(&self, doc: &mut Document) {
        for (path, item) in doc.paths.paths.iter_mut() {
            let statuses: Vec<(u16, &str)> = match path.as_str() {
                "/healthz" => Vec::new(),
                "/readyz" => vec![API_PROBLEMS[8]],
                "/metrics" | "/debug/locks" | "/openapi.json" => {
                    vec![API_PROBLEMS[1], API_PROBLEMS[8]]
                }
                _ => API_PROBLEMS.to_vec(),
            };
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                add_problems(operation, &statuses);
            }
        }
    }
}

fn add_problems(operation: &mut Operation, statuses: &[(u16, &str)]) {
    for (status, description) in statuses {
        let status = status.to_string();
        if operation.responses.responses.contains_key(&status) {
            continue;
        }
        let response = ResponseBuilder::new()
            .description(*description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        // Nothing was there before: a response the route declares itself is kept (see above).
        let _ = operation
            .responses
            .responses
            .insert(status, response.into());
    }
}
