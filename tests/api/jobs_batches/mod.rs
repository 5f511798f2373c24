//! The queue at queue speed: batch enqueue and completion, completions piggy-backed on claims,
//! unique jobs, per-queue concurrency limits and cancel.

mod batches;
mod limits;
