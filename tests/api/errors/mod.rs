//! Bad input: always a 4xx application/problem+json with its stable code, and nothing changed.

mod input;
mod refusals;
