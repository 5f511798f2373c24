//! Scale-out: several `rowlock serve` processes behind pgbouncer in transaction pooling mode
//! (`--statement-cache off`), every invariant kept across them.
//!
//! pgbouncer (Debian's 1.18, installed by `.ci/run`) runs as a real process in front of the test
//! database, with a pool far smaller than the instances' pools, so transactions of different
//! instances share server connections: a statement or setting that outlived its transaction
//! would surface here as an error or a lost update.

mod invariants;
mod spread;
