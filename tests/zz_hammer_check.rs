#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "api/hammer.rs"]
mod hammer;
