//! The query parameters and headers a mutation honours (`lock=` and friends, `Idempotency-Key`,
//! `Fencing-Token`), read as one extractor and turned into the transaction's options.

use actix_web::dev::Payload;
use actix_web::web::{Data, Query};
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;

use super::{FencingTokens, IdempotencyKey, LockParams};
use crate::db::{Db, TxOptions};
use crate::error::ApiError;

/// The headers and query parameters every job, queue and transaction mutation honours, as one
/// extractor.
pub struct Mutation {
    req: HttpRequest,
    db: Data<Db>,
    params: Query<LockParams>,
    key: IdempotencyKey,
    fences: FencingTokens,
}

impl FromRequest for Mutation {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        type Parts = (Data<Db>, Query<LockParams>, IdempotencyKey, FencingTokens);
        let parts = Parts::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let (db, params, key, fences) = parts.await?;
            Ok(Mutation {
                req,
                db,
                params,
                key,
                fences,
            })
        })
    }
}

impl Mutation {
    /// The locking query parameters.
    pub fn params(&self) -> &LockParams {
        &self.params
    }

    /// Transaction options for a request whose body was `raw`.
    pub fn options(self, raw: &[u8]) -> Result<(Data<Db>, TxOptions), ApiError> {
        let mut opts = self.params.tx_options()?;
        opts.idempotency = self.key.bind(&self.req, raw, self.db.idempotency_retention);
        opts.fences = self.fences.0;
        Ok((self.db, opts))
    }
}
