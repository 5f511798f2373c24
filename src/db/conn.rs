//! A pooled connection that is inside a transaction.
//!
//! A connection goes back to the pool when its handle is dropped, whatever state it is in. If
//! the code between `BEGIN` and `COMMIT` panicked (or an error path forgot to end the
//! transaction), the next request would receive a connection in the middle of someone else's
//! transaction, holding its row locks. [`TxConnection`] closes the gap: unless the transaction was
//! seen to end ([`TxConnection::ended`]), dropping it detaches the connection from the pool and
//! closes it, so PostgreSQL rolls the transaction back and frees its locks.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::{ClientWrapper, Object};

/// A pooled connection that is discarded, not reused, unless its transaction ended.
pub(crate) struct TxConnection {
    client: Option<Object>,
    open: AtomicBool,
}

impl TxConnection {
    /// Takes `client` for a transaction that is about to begin.
    pub(crate) fn new(client: Object) -> Self {
        Self {
            client: Some(client),
            open: AtomicBool::new(true),
        }
    }

    /// The transaction ended (its `COMMIT` or `ROLLBACK` was answered, or its one statement ran
    /// as a transaction of its own): the connection may go back to the pool.
    pub(crate) fn ended(&self) {
        self.open.store(false, Ordering::Relaxed);
    }

    /// Closes the connection instead of returning it to the pool: its state is unknown.
    pub(crate) fn discard(self) {
        self.open.store(true, Ordering::Relaxed);
    }
}

impl Deref for TxConnection {
    type Target = ClientWrapper;

    fn deref(&self) -> &ClientWrapper {
        match &self.client {
            Some(client) => client,
            // `client` is only taken in `drop`.
            None => unreachable!("a TxConnection is used after drop"),
        }
    }
}

impl Drop for TxConnection {
    fn drop(&mut self) {
        if self.open.load(Ordering::Relaxed) {
            if let Some(client) = self.client.take() {
                // Detached from the pool; dropping the client closes the connection.
                drop(Object::take(client));
            }
        }
    }
}
