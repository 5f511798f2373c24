//! Jobs: enqueue, claim order, batch claims, pause, the token-checked transitions, and bad input.
//! Leases, retries, long polls and many concurrent workers are in `jobs_concurrency`.

mod bad_input;
mod claims;
mod transitions;
