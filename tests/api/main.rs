//! rowlock's black-box tests: a real server on port 0, a real PostgreSQL, one database per test.

mod counters;
mod database_crash;
mod errors;
mod group_commit;
mod group_commit_faults;
mod hammer;
mod hammer_transfers;
mod helpers;
mod housekeeping;
mod idempotency;
mod jobs;
mod jobs_batches;
mod jobs_concurrency;
mod jobs_groups;
mod jobs_hammer;
mod leases;
mod local_cluster;
mod locking;
mod lost_commit;
mod observability;
mod operations;
mod panic_safety;
mod pgbouncer;
mod transactions;
mod ui;
mod waiting;
