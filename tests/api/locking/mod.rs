//! Lock modes against a row held by a second plain connection, exactly as an operator in psql
//! would hold it: `BEGIN; SELECT … FOR UPDATE`.

mod limits;
mod modes;
