//! Optional bearer-token authentication.
//!
//! With no token configured rowlock is open (it listens on loopback by default). With
//! `ROWLOCK_API_TOKEN` (and/or a tokens file, one token per line) every route but `/healthz` and
//! `/readyz` needs `Authorization: Bearer <token>`; `/metrics` and `/debug/*` take
//! `ROWLOCK_OPS_TOKEN` instead when that is set. Tokens are compared in constant time.

use std::path::PathBuf;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::ResponseError;
use anyhow::{Context, Result};
use clap::Args;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// Token settings of `rowlock serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct AuthArgs {
    /// Bearer token every API request must carry (health checks stay open).
    #[arg(long, env = "ROWLOCK_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// File with more accepted API tokens, one per line (blank lines and `#` comments ignored).
    #[arg(long, env = "ROWLOCK_API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,

    /// Bearer token for /metrics and /debug/* (defaults to the API tokens).
    #[arg(long, env = "ROWLOCK_OPS_TOKEN", hide_env_values = true)]
    pub ops_token: Option<String>,

    /// Browser origins allowed to call rowlock (comma-separated, e.g. https://ops.example.com);
    /// other cross-site browser requests are 403.
    #[arg(long, env = "ROWLOCK_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Serve on a non-loopback address without any API token (refused otherwise).
    #[arg(long, env = "ROWLOCK_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
}

/// The accepted tokens and origins, loaded once at startup.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    api: Vec<String>,
    ops: Vec<String>,
    origins: Vec<String>,
}

/// An empty token would open the door to `Authorization: Bearer ` with nothing after it: a token
/// that is set (`setting` names it) must not be blank.
fn refuse_blank(token: Option<&str>, setting: &str) -> Result<()> {
    if token.is_some_and(|t| t.trim().is_empty()) {
        anyhow::bail!("{setting} is set but blank; set a token or unset it");
    }
    Ok(())
}

impl Tokens {
    /// Reads the API tokens (flag and tokens file), the ops token and the allowed origins;
    /// a token that is set but blank is refused.
    pub fn load(args: &AuthArgs) -> Result<Self> {
        let mut api: Vec<String> = args.api_token.iter().cloned().collect();
        if let Some(path) = &args.api_tokens_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read tokens file {}", path.display()))?;
            api.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        let ops: Vec<String> = args.ops_token.iter().cloned().collect();
        refuse_blank(args.api_token.as_deref(), "ROWLOCK_API_TOKEN (--api-token)")?;
        refuse_blank(args.ops_token.as_deref(), "ROWLOCK_OPS_TOKEN (--ops-token)")?;
        let origins = args
            .allowed_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        Ok(Self { api, ops, origins })
    }

    /// Whether API routes need a token.
    pub fn has_api_tokens(&self) -> bool {
        !self.api.is_empty()
    }

    /// Refuses a browser's cross-site request: one whose `Origin` is neither rowlock's own nor an
    /// allowed one, or that the browser marks `Sec-Fetch-Site: cross-site`. Clients that are not
    /// browsers (curl, servers) send neither header and are not affected.
    fn cross_site(&self, req: &ServiceRequest) -> Option<ApiError> {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let origin = header("origin").map(|o| o.trim_end_matches('/'));
        let own = origin.is_some_and(|o| {
            let host = req.connection_info().host().to_owned();
            o.strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
                .is_some_and(|rest| rest.eq_ignore_ascii_case(&host))
        });
        let allowed = origin.is_some_and(|o| own || self.origins.iter().any(|a| a == o));
        let refused = match origin {
            Some(_) => !allowed,
            None => header("sec-fetch-site") == Some("cross-site"),
        };
        refused.then(|| {
            ApiError::CrossSite(format!(
                "cross-site request from origin '{}' refused (see --allowed-origins)",
                origin
                    .unwrap_or("unknown")
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))
        })
    }

    /// The tokens that open `path`, or `None` when it is open to all.
    fn required_for(&self, path: &str) -> Option<&[String]> {
        // `/ui` is a page without data: it asks for the token its data routes need.
        if path == "/healthz" || path == "/readyz" || path == "/ui" {
            return None;
        }
        let ops_route = path == "/metrics" || path.starts_with("/debug/");
        let tokens = if ops_route && !self.ops.is_empty() {
            &self.ops
        } else {
            &self.api
        };
        (!tokens.is_empty()).then_some(tokens.as_slice())
    }
}

/// Refuses requests without an accepted bearer token with 401.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let tokens = req.app_data::<Data<Tokens>>().cloned();
    if let Some(error) = tokens.as_ref().and_then(|t| t.cross_site(&req)) {
        return Ok(req.into_response(error.error_response()));
    }
    // The path as the router sees it (percent-escapes of plain characters decoded), so that
    // `/%6Detrics` is `/metrics` here too.
    let path = req.match_info().as_str().to_owned();
    if let Some(accepted) = tokens.as_ref().and_then(|t| t.required_for(&path)) {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Compare digests (equal length whatever the token's), against every token, without
        // stopping at the first match: the time taken says nothing about any token.
        let presented = Sha256::digest(presented.as_bytes());
        let ok = accepted.iter().fold(subtle::Choice::from(0), |ok, t| {
            ok | Sha256::digest(t.as_bytes()).ct_eq(&presented)
        });
        if !bool::from(ok) {
            let error =
                ApiError::Unauthorized("this route needs Authorization: Bearer <token>".into());
            let mut response = error.error_response();
            let _ = response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return Ok(req.into_response(response));
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_token_is_refused_at_startup() {
        for blank in ["", "  "] {
            let args = AuthArgs {
                api_token: Some(blank.into()),
                ..AuthArgs::default()
            };
            let e = Tokens::load(&args).expect_err("blank API token");
            assert!(e.to_string().contains("ROWLOCK_API_TOKEN"), "{e}");
            let args = AuthArgs {
                ops_token: Some(blank.into()),
                ..AuthArgs::default()
            };
            assert!(Tokens::load(&args).is_err());
        }
    }
}
