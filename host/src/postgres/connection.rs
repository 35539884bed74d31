//! Connections to a PostgreSQL server as its administrator, with TLS as
//! libpq's `sslmode` describes it.

use std::fmt;
use std::time::Duration;

use postgres_api::SslMode;
use tokio_postgres::{Client, NoTls};

use super::error::{SqlError, db_message};

/// How to reach a PostgreSQL server as its administrator.
#[derive(Clone)]
pub struct ServerConnection {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Administrator role.
    pub user: String,
    /// Its password; never shown by `Debug`.
    pub password: String,
    /// Maintenance database used when a plan names none.
    pub maintenance_database: String,
    /// TLS towards the server.
    pub ssl_mode: SslMode,
}

impl fmt::Debug for ServerConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConnection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("maintenance_database", &self.maintenance_database)
            .field("ssl_mode", &self.ssl_mode)
            .finish()
    }
}

/// Opens a connection to `database` (or the maintenance database).
///
/// # Errors
/// [`SqlError::Connect`] naming the server and the reason.
pub async fn connect(
    server: &ServerConnection,
    database: Option<&str>,
) -> Result<Client, SqlError> {
    let database = database.unwrap_or(&server.maintenance_database);
    let mut config = tokio_postgres::Config::new();
    config
        .host(&server.host)
        .port(server.port)
        .user(&server.user)
        .password(&server.password)
        .dbname(database)
        .application_name("wasm-operator")
        .connect_timeout(Duration::from_secs(10));
    let connect_error = |e: tokio_postgres::Error| SqlError::Connect {
        host: server.host.clone(),
        port: server.port,
        database: database.to_owned(),
        reason: db_message(&e),
    };
    let client = match server.ssl_mode {
        SslMode::Disable => {
            let (client, connection) = config.connect(NoTls).await.map_err(connect_error)?;
            tokio::spawn(drive(connection));
            client
        }
        mode => {
            config.ssl_mode(if mode == SslMode::Require {
                tokio_postgres::config::SslMode::Require
            } else {
                tokio_postgres::config::SslMode::Prefer
            });
            let tls =
                tokio_postgres_rustls::MakeRustlsConnect::new(tls::unverified_client_config());
            let (client, connection) = config.connect(tls).await.map_err(connect_error)?;
            tokio::spawn(drive(connection));
            client
        }
    };
    Ok(client)
}

/// Asks the server to stop what `token`'s session is running (a query the
/// host no longer waits for), over a connection like `server`'s.
pub(super) async fn cancel(token: tokio_postgres::CancelToken, server: &ServerConnection) {
    let result = match server.ssl_mode {
        SslMode::Disable => token.cancel_query(NoTls).await,
        _ => {
            token
                .cancel_query(tokio_postgres_rustls::MakeRustlsConnect::new(
                    tls::unverified_client_config(),
                ))
                .await
        }
    };
    if let Err(error) = result {
        tracing::warn!(error = %db_message(&error), host = %server.host, "could not cancel an abandoned query");
    }
}

/// Stops the query of a session unless disarmed: a query whose caller went
/// away (the plugin's deadline passed) must not keep running on the server.
pub(super) struct CancelOnDrop {
    armed: Option<(tokio_postgres::CancelToken, ServerConnection)>,
}

impl CancelOnDrop {
    /// Armed for `client`'s session on `server`.
    pub(super) fn new(client: &Client, server: &ServerConnection) -> Self {
        Self {
            armed: Some((client.cancel_token(), server.clone())),
        }
    }

    /// The query finished: nothing to cancel.
    pub(super) fn disarm(mut self) {
        self.armed = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some((token, server)) = self.armed.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { cancel(token, &server).await });
        }
    }
}

/// Runs a connection's I/O until it closes.
async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(error) = connection.await {
        tracing::debug!(error = %db_message(&error), "PostgreSQL connection closed");
    }
}

/// TLS as libpq's `prefer` and `require` do it: encrypted, without checking
/// the server's certificate (PostgreSQL servers mostly present self-signed
/// ones).
mod tls {
    use std::sync::{Arc, LazyLock};

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

    /// Accepts any certificate; still checks the handshake signatures.
    #[derive(Debug)]
    struct Unverified(WebPkiSupportedAlgorithms);

    impl ServerCertVerifier for Unverified {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_schemes()
        }
    }

    /// The client configuration, built once: every new connection uses it.
    pub(super) fn unverified_client_config() -> ClientConfig {
        static CONFIG: LazyLock<ClientConfig> = LazyLock::new(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let algorithms = provider.signature_verification_algorithms;
            ClientConfig::builder_with_provider(Arc::clone(&provider) as Arc<CryptoProvider>)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(algorithms)))
                .with_no_client_auth()
        });
        CONFIG.clone()
    }
}
