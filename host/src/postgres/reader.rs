//! The role plugin queries run as: `wasm_operator_reader`, a role with no
//! login and no privileges of its own, switched to (`SET LOCAL ROLE`)
//! inside each read-only transaction. Whatever the admin role may do, a
//! plugin's query can then read the catalogs and nothing more: no program
//! or file on the database host, no other session, no configuration.
//!
//! The one read the Postgres plugins need that such a role lacks, a login
//! role's stored password verifier (for drift repair), is provided by the
//! host as a function, `wasm_operator.role_verifier(name)`, that answers
//! only for plain roles (never a superuser or a role with CREATEROLE,
//! REPLICATION or BYPASSRLS).
//!
//! What the role may still execute is what PUBLIC may: functions an
//! extension grants to PUBLIC (dblink, for one) are the DBA's grants, and
//! the host does not revoke them.

use tokio_postgres::Client;

use super::error::{SqlError, db_message, sqlstate};

/// The role plugin queries run as.
pub const READER_ROLE: &str = "wasm_operator_reader";

/// Creates the reader role if it is missing and lets the admin switch to it.
const ROLE_SETUP: &str = "\
DO $setup$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'wasm_operator_reader') THEN
    CREATE ROLE wasm_operator_reader NOLOGIN NOINHERIT;
  END IF;
END $setup$;
GRANT wasm_operator_reader TO CURRENT_USER";

/// The verifier observation, in the maintenance database.
const VERIFIER_SETUP: &str = "\
CREATE SCHEMA IF NOT EXISTS wasm_operator;
CREATE OR REPLACE FUNCTION wasm_operator.role_verifier(role_name text) RETURNS text
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS
  $body$ SELECT rolpassword FROM pg_authid WHERE rolname = role_name
         AND NOT rolsuper AND NOT rolcreaterole AND NOT rolreplication AND NOT rolbypassrls $body$;
REVOKE ALL ON FUNCTION wasm_operator.role_verifier(text) FROM PUBLIC;
GRANT USAGE ON SCHEMA wasm_operator TO wasm_operator_reader;
GRANT EXECUTE ON FUNCTION wasm_operator.role_verifier(text) TO wasm_operator_reader";

/// Sets up the reader role, and the verifier function when the admin may
/// read verifiers (a superuser), on `client`, a maintenance-database
/// session. Safe to run again.
///
/// # Errors
/// [`SqlError::Query`] when the role cannot be set up (the admin needs
/// CREATEROLE); then no plugin query runs on the server.
pub async fn prepare(client: &Client) -> Result<(), SqlError> {
    client
        .batch_execute(ROLE_SETUP)
        .await
        .map_err(|e| SqlError::Query {
            code: sqlstate(&e),
            message: format!(
                "cannot set up the role {READER_ROLE} that plugin queries run as: {}; the admin role needs CREATEROLE",
                db_message(&e)
            ),
        })?;
    if let Err(error) = client.batch_execute(VERIFIER_SETUP).await {
        // Not a superuser: the verifier is not observable, as before.
        tracing::info!(error = %db_message(&error), "password verifiers are not observable on this server: plugins cannot check password drift");
    }
    Ok(())
}
