//! Multi-counter transactions: all or nothing, savepoints, ordering that cannot deadlock.

mod atomic;
mod checks;
mod contention;
