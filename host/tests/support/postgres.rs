//! Throwaway PostgreSQL servers for the host tests: a thin layer over the
//! `test-postgres` crate (which finds the installs and runs the servers)
//! adding the operator's connection settings.

use std::ops::Deref;
use std::path::Path;

pub use test_postgres::{ADMIN_PASSWORD, ADMIN_USER, PgInstall};
use wasm_operator::postgres::ServerConnection;

/// A running throwaway PostgreSQL server (stopped and deleted on drop), with
/// its data under `CARGO_TARGET_TMPDIR`.
pub struct PgServer {
    server: test_postgres::PgServer,
    /// The TCP port it listens on (127.0.0.1).
    pub port: u16,
}

impl PgServer {
    /// Starts a server of the default install: `$WASM_OPERATOR_PG_BIN`, or
    /// the newest Debian one.
    pub fn start() -> Self {
        Self::wrap(test_postgres::PgServer::start_default_in(tmpdir()))
    }

    /// Starts a server of `install` (see `test_postgres::installs`).
    pub fn start_with(install: &PgInstall) -> Self {
        Self::wrap(test_postgres::PgServer::start_in(install, tmpdir()))
    }

    fn wrap(server: Result<test_postgres::PgServer, test_postgres::Error>) -> Self {
        let server = server.unwrap_or_else(|e| panic!("starting PostgreSQL: {e}"));
        Self {
            port: server.port(),
            server,
        }
    }

    /// Admin connection settings for the operator.
    pub fn connection(&self) -> ServerConnection {
        connection(&self.server)
    }
}

impl Deref for PgServer {
    type Target = test_postgres::PgServer;

    fn deref(&self) -> &Self::Target {
        &self.server
    }
}

fn tmpdir() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// The operator's admin connection settings for `server`.
pub fn connection(server: &test_postgres::PgServer) -> ServerConnection {
    ServerConnection {
        host: server.host().into(),
        port: server.port(),
        user: ADMIN_USER.into(),
        password: ADMIN_PASSWORD.into(),
        maintenance_database: test_postgres::ADMIN_DATABASE.into(),
        ssl_mode: postgres_api::SslMode::Disable,
    }
}
