//! The `postgres-server` plugin: is a registered PostgresServer reachable,
//! and which version does it run.
//!
//! One read-only query per reconcile on the server's own key, repeated on a
//! short interval of its own (not the resync), so the status follows an
//! outage and a recovery within seconds: reachable, `Ready=True`, checked
//! again in 10 s; unreachable or not granted, `Ready=False ServerUnreachable`
//! with the error, checked again in 5 s. A check that changes nothing
//! writes nothing.

use std::time::Duration;

use postgres_api::{CommonStatus, PostgresServerSpec, PostgresServerStatus};
use wasm_operator_sdk::{
    Condition, Context, Event, Plugin, PluginError, PluginInfo, Request, Response, SqlValue,
};

use crate::outcome::{READY_REASON, conditions, not_ready_event};
use crate::{NoSettings, postgres_server_kind};

/// Asks the server for its version.
pub const VERSION_QUERY: &str = "select current_setting('server_version') as server_version, \
     current_setting('server_version_num')::int as server_version_num";
/// The reason of `Ready=False` when the server cannot be queried.
pub const SERVER_UNREACHABLE: &str = "ServerUnreachable";
/// How soon a reachable server is checked again.
pub const REACHABLE_RECHECK: Duration = Duration::from_secs(10);
/// How soon an unreachable server is checked again.
pub const UNREACHABLE_RECHECK: Duration = Duration::from_secs(5);

/// The PostgresServer plugin.
pub struct PostgresServerPlugin;

impl Plugin for PostgresServerPlugin {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "postgres-server",
            env!("CARGO_PKG_VERSION"),
            postgres_server_kind(),
        )
        .sql()
        .settings::<NoSettings>()
    }

    fn reconcile(ctx: &Context<'_>, req: &Request) -> Result<Response, PluginError> {
        let object = &req.object;
        let spec: PostgresServerSpec = object.spec()?;
        let namespace = object.namespace().ok_or_else(|| {
            PluginError::permanent("InvalidObject", "a PostgresServer must have a namespace")
        })?;
        let key = format!("{namespace}/{}", object.name());
        let endpoint = format!("{}:{}", spec.host, spec.port);

        let observed = if req.servers.contains(&key) {
            ctx.query(&key, None, VERSION_QUERY, &[])
                .map_err(|e| e.message)
                .and_then(|result| version(&result))
        } else {
            Err(format!(
                "server {key} is not granted to the plugin binding (spec.grants.servers)"
            ))
        };

        let was_reachable = object
            .pointer("/status/reachable")
            .and_then(serde_json::Value::as_bool);
        let (status, event, requeue) = match observed {
            Ok((version, version_num)) => {
                ctx.debug(
                    "server is reachable",
                    &[("server", &key), ("version", &version)],
                );
                let message = format!("PostgreSQL {version} at {endpoint}");
                let event = (was_reachable != Some(true))
                    .then(|| Event::normal("ServerReachable", "Connect", message.clone()));
                let status = PostgresServerStatus {
                    reachable: Some(true),
                    server_version: Some(version),
                    server_version_num: Some(version_num),
                    last_error: None,
                    common: common(ctx, object, Condition::ready(READY_REASON, message)),
                };
                (status, event, REACHABLE_RECHECK)
            }
            Err(error) => {
                ctx.warn(
                    "server is unreachable",
                    &[("server", &key), ("error", &error)],
                );
                let message = format!("cannot query server {key} at {endpoint}: {error}");
                let event = not_ready_event(object, SERVER_UNREACHABLE, &message);
                let previous: PostgresServerStatus = object.status().unwrap_or_default();
                let status = PostgresServerStatus {
                    reachable: Some(false),
                    server_version: previous.server_version,
                    server_version_num: previous.server_version_num,
                    last_error: Some(error),
                    common: common(
                        ctx,
                        object,
                        Condition::not_ready(SERVER_UNREACHABLE, message),
                    ),
                };
                (status, event, UNREACHABLE_RECHECK)
            }
        };
        let mut response = Response::new().status_of(&status)?.requeue_after(requeue);
        if let Some(event) = event {
            response = response.event(event);
        }
        Ok(response)
    }
}

fn common(ctx: &Context<'_>, object: &wasm_operator_sdk::Object, ready: Condition) -> CommonStatus {
    CommonStatus {
        conditions: conditions(ctx, object, ready),
        ..CommonStatus::default()
    }
}

fn version(result: &wasm_operator_sdk::QueryResult) -> Result<(String, i64), String> {
    match (
        result.get(0, "server_version"),
        result.get(0, "server_version_num"),
    ) {
        // `15.8 (Debian 15.8-0+deb12u1)` → `15.8`.
        (Some(SqlValue::Text(version)), Some(SqlValue::Int(num))) => Ok((
            version
                .split_whitespace()
                .next()
                .unwrap_or(version)
                .to_owned(),
            *num,
        )),
        _ => Err("the server's answer to the version query has an unexpected shape".into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasm_operator_sdk::{QueryResult, TestHost};

    use super::*;
    use crate::fixtures::{SERVER, postgres_server};

    fn version_result() -> QueryResult {
        crate::fixtures::row(&[
            (
                "server_version",
                SqlValue::Text("15.8 (Debian 15.8-1.pgdg120+1)".into()),
            ),
            ("server_version_num", SqlValue::Int(150_008)),
        ])
    }

    fn fresh_server() -> serde_json::Value {
        let mut server = postgres_server();
        server.as_object_mut().unwrap().remove("status");
        server
    }

    fn reconcile(host: &TestHost, request: &Request) -> Response {
        PostgresServerPlugin::reconcile(&Context::new(host), request).unwrap()
    }

    #[test]
    fn reachable_server_records_its_version_and_is_checked_again_in_10_seconds() {
        let host = TestHost::new().with_query_result(VERSION_QUERY, Ok(version_result()));
        let response = reconcile(&host, &Request::new(fresh_server()).with_server(SERVER));
        let status = response.status.clone().unwrap();
        assert_eq!(status["reachable"], true);
        assert_eq!(status["serverVersion"], "15.8");
        assert_eq!(status["serverVersionNum"], 150_008);
        assert!(status.get("lastError").is_none());
        assert_eq!(status["conditions"][0]["status"], "True");
        assert_eq!(
            status["conditions"][0]["message"],
            "PostgreSQL 15.8 at pg.infra.svc:5432"
        );
        assert_eq!(response.requeue_after, Some(REACHABLE_RECHECK));
        assert_eq!(response.events[0].reason, "ServerReachable");
        assert_eq!(host.queries()[0].server, SERVER);

        let mut again = fresh_server();
        again["status"] = status;
        let steady = reconcile(&host, &Request::new(again).with_server(SERVER));
        assert!(steady.events.is_empty(), "no event in a steady state");
        assert_eq!(steady.status, response.status);
    }

    #[test]
    fn unreachable_server_is_not_ready_with_the_error_and_checked_again_in_5_seconds() {
        let host = TestHost::new().with_query_result(
            VERSION_QUERY,
            Err("connection refused (os error 111)".into()),
        );
        let response = reconcile(&host, &Request::new(postgres_server()).with_server(SERVER));
        let status = response.status.clone().unwrap();
        assert_eq!(status["reachable"], false);
        assert_eq!(status["lastError"], "connection refused (os error 111)");
        assert_eq!(
            status["serverVersion"], "15.8",
            "the last known version is kept"
        );
        let ready = &status["conditions"][0];
        assert_eq!(
            (ready["status"].as_str(), ready["reason"].as_str()),
            (Some("False"), Some("ServerUnreachable"))
        );
        assert!(
            ready["message"]
                .as_str()
                .unwrap()
                .contains("connection refused")
        );
        assert_eq!(response.requeue_after, Some(UNREACHABLE_RECHECK));
        assert_eq!(response.events[0].reason, "ServerUnreachable");
    }

    #[test]
    fn server_not_granted_is_unreachable_without_a_query() {
        let host = TestHost::new();
        let response = reconcile(&host, &Request::new(fresh_server()));
        let status = response.status.unwrap();
        assert_eq!(status["conditions"][0]["reason"], "ServerUnreachable");
        assert!(
            status["lastError"]
                .as_str()
                .unwrap()
                .contains("not granted to the plugin binding")
        );
        assert!(host.queries().is_empty());
    }

    #[test]
    fn describe_asks_for_sql_and_nothing_else() {
        let info = PostgresServerPlugin::describe();
        assert_eq!(info.name, "postgres-server");
        assert_eq!(info.target, postgres_server_kind());
        assert!(info.sql && info.child_kinds.is_empty() && info.read_kinds.is_empty());
        assert_eq!(info.settings_schema["additionalProperties"], json!(false));
    }
}
