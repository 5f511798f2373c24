//! Leases with fencing tokens: grants, renewals, releases, waiting, fairness, and the storage
//! refusing writes with a token that is no longer current.

mod bad_input;
mod fencing;
mod grants;
mod waiting;
