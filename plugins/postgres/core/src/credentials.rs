//! The credentials Secret a Database or DatabaseUser publishes.
//!
//! A `kubernetes.io/basic-auth` Secret whose keys follow the Service Binding
//! conventions: `username`, `password`, `dbname`, `host`, `port`, `uri`,
//! `jdbc-uri`, `pgpass`, `type` (`postgresql`) and `provider`
//! (`wasm-operator`). It is the only place the password lives.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use postgres_api::SslMode;
use serde_json::{Map, Value};
use wasm_operator_sdk::{ChildBuilder, Request};

use crate::secret_kind;

/// The Secret's type.
pub const SECRET_TYPE: &str = "kubernetes.io/basic-auth";
/// The Service Binding `type` of the Secret.
pub const BINDING_TYPE: &str = "postgresql";
/// The Service Binding `provider` of the Secret.
pub const PROVIDER: &str = "wasm-operator";

/// Everything but RFC 3986's unreserved characters is percent-encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where and how clients reach the server, from the PostgresServer spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// Host name or address.
    pub(crate) host: String,
    /// TCP port.
    pub(crate) port: u16,
    /// The server's TLS mode.
    pub(crate) ssl_mode: SslMode,
}

/// What goes into one credentials Secret.
pub(crate) struct Credentials<'a> {
    /// The server clients connect to.
    pub(crate) endpoint: &'a Endpoint,
    /// The database name on the server.
    pub(crate) dbname: &'a str,
    /// The role name.
    pub(crate) username: &'a str,
    /// The role's password.
    pub(crate) password: &'a str,
}

impl Credentials<'_> {
    /// The Secret's keys and plain-text values, sorted by key.
    pub(crate) fn entries(&self) -> Vec<(&'static str, String)> {
        let Endpoint {
            host,
            port,
            ssl_mode,
        } = self.endpoint;
        let user = encode(self.username);
        let password = encode(self.password);
        let db = encode(self.dbname);
        let url_host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let mut uri = format!("postgresql://{user}:{password}@{url_host}:{port}/{db}");
        if *ssl_mode == SslMode::Disable {
            uri.push_str("?sslmode=disable");
        }
        let jdbc =
            format!("jdbc:postgresql://{url_host}:{port}/{db}?user={user}&password={password}");
        let pgpass = [
            host.as_str(),
            &port.to_string(),
            self.dbname,
            self.username,
            self.password,
        ]
        .map(pgpass_escape)
        .join(":");
        vec![
            ("dbname", self.dbname.to_owned()),
            ("host", host.clone()),
            ("jdbc-uri", jdbc),
            ("password", self.password.to_owned()),
            ("pgpass", pgpass),
            ("port", port.to_string()),
            ("provider", PROVIDER.to_owned()),
            ("type", BINDING_TYPE.to_owned()),
            ("uri", uri),
            ("username", self.username.to_owned()),
        ]
    }

    /// The Secret child named `name` in `namespace`.
    pub(crate) fn secret(&self, name: &str, namespace: &str) -> Value {
        let data: Map<String, Value> = self
            .entries()
            .into_iter()
            .map(|(key, value)| (key.to_owned(), Value::String(STANDARD.encode(value))))
            .collect();
        ChildBuilder::new(&secret_kind(), name)
            .namespace(namespace)
            .field("type", Value::String(SECRET_TYPE.to_owned()))
            .field("data", Value::Object(data))
            .build()
    }
}

fn encode(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// Escapes a `.pgpass` field: `\` and `:` get a backslash.
fn pgpass_escape(field: &str) -> String {
    field.replace('\\', "\\\\").replace(':', "\\:")
}

/// The password stored in the existing Secret `name`, if it has a readable one.
pub(crate) fn existing_password(req: &Request, name: &str) -> Option<String> {
    let secret = req.existing_child(&secret_kind(), name)?;
    let encoded = secret.str_at("/data/password")?;
    let bytes = STANDARD.decode(encoded).ok()?;
    String::from_utf8(bytes).ok().filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasm_operator_sdk::Response;

    use super::*;

    fn endpoint(ssl_mode: SslMode) -> Endpoint {
        Endpoint {
            host: "pg.infra.svc".into(),
            port: 5432,
            ssl_mode,
        }
    }

    fn decoded(secret: &Value, key: &str) -> String {
        let text = secret["data"][key].as_str().unwrap();
        String::from_utf8(STANDARD.decode(text).unwrap()).unwrap()
    }

    #[test]
    fn secret_has_every_binding_key_base64_encoded() {
        let endpoint = endpoint(SslMode::Prefer);
        let secret = Credentials {
            endpoint: &endpoint,
            dbname: "app",
            username: "foo",
            password: "pw",
        }
        .secret("app-credentials", "infra");
        assert_eq!(secret["type"], "kubernetes.io/basic-auth");
        assert_eq!(
            secret["metadata"],
            json!({"name": "app-credentials", "namespace": "infra"})
        );
        let keys: Vec<&String> = secret["data"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "dbname", "host", "jdbc-uri", "password", "pgpass", "port", "provider", "type",
                "uri", "username"
            ]
        );
        assert_eq!(secret["data"]["password"], "cHc=");
        assert_eq!(
            decoded(&secret, "uri"),
            "postgresql://foo:pw@pg.infra.svc:5432/app"
        );
        assert_eq!(
            decoded(&secret, "jdbc-uri"),
            "jdbc:postgresql://pg.infra.svc:5432/app?user=foo&password=pw"
        );
        assert_eq!(decoded(&secret, "pgpass"), "pg.infra.svc:5432:app:foo:pw");
        assert_eq!(decoded(&secret, "port"), "5432");
        assert_eq!(decoded(&secret, "type"), "postgresql");
        assert_eq!(decoded(&secret, "provider"), "wasm-operator");
    }

    #[test]
    fn hostile_names_are_percent_encoded_and_pgpass_escaped() {
        let endpoint = endpoint(SslMode::Disable);
        let credentials = Credentials {
            endpoint: &endpoint,
            dbname: "a\"b;drop table x;--",
            username: "$$:us er@x/é",
            password: "p:w\\d",
        };
        let entries: std::collections::BTreeMap<_, _> = credentials.entries().into_iter().collect();
        assert_eq!(
            entries["uri"],
            "postgresql://%24%24%3Aus%20er%40x%2F%C3%A9:p%3Aw%5Cd@pg.infra.svc:5432/\
             a%22b%3Bdrop%20table%20x%3B--?sslmode=disable"
        );
        assert_eq!(
            entries["jdbc-uri"],
            "jdbc:postgresql://pg.infra.svc:5432/a%22b%3Bdrop%20table%20x%3B--\
             ?user=%24%24%3Aus%20er%40x%2F%C3%A9&password=p%3Aw%5Cd"
        );
        assert_eq!(
            entries["pgpass"],
            "pg.infra.svc:5432:a\"b;drop table x;--:$$\\:us er@x/é:p\\:w\\\\d"
        );
        assert_eq!(entries["username"], "$$:us er@x/é");
    }

    #[test]
    fn ipv6_hosts_are_bracketed_in_uris() {
        let endpoint = Endpoint {
            host: "fd00::1".into(),
            port: 5433,
            ssl_mode: SslMode::Require,
        };
        let entries: std::collections::BTreeMap<_, _> = Credentials {
            endpoint: &endpoint,
            dbname: "d",
            username: "u",
            password: "p",
        }
        .entries()
        .into_iter()
        .collect();
        assert_eq!(entries["uri"], "postgresql://u:p@[fd00::1]:5433/d");
        assert_eq!(entries["pgpass"], "fd00\\:\\:1:5433:d:u:p");
    }

    #[test]
    fn existing_password_is_read_from_the_child_secret() {
        let request = Request::new(json!({"metadata": {"name": "app"}})).with_child(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "app-credentials", "namespace": "infra"},
            "data": {"password": "c2VjcmV0"}
        }));
        assert_eq!(
            existing_password(&request, "app-credentials").as_deref(),
            Some("secret")
        );
        assert_eq!(existing_password(&request, "other"), None);
        let kept = &Response::new()
            .keep_child(&request, &secret_kind(), "app-credentials")
            .children[0];
        assert_eq!(kept["data"]["password"], "c2VjcmV0");
        assert_eq!(kept["metadata"]["namespace"], "infra");
    }
}
