//! PostgreSQL as plugins use it: the directory of `PostgresServer`s (which
//! object may use which server, with what credentials), pooled connections,
//! and the executor that runs SQL plans and read-only queries.
//!
//! Data flows down the list: the directory resolves a [`ServerKey`] to a
//! connection, the pool reuses one, a session lends it to one query and
//! resets it, the executor runs the statements with their values bound.
//!
//! [`ServerKey`]: crate::vocabulary::ServerKey

mod connection;
mod directory;
mod error;
mod executor;
mod pool;
mod reader;
mod session;
mod values;

pub use connection::{ServerConnection, connect};
pub use directory::ServerDirectory;
pub use error::{ServerError, SqlError};
pub use executor::{PlanReport, ResultLimits, query_read_only, run_plan};
pub use reader::{READER_ROLE, prepare as prepare_reader};
pub use session::query;
