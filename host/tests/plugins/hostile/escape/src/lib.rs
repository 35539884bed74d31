//! Hostile test guest: `reconcile` tries to reach files, the environment, a
//! socket and DNS, and reports each attempt in its status, to test the sandbox.
//!
//! Status: `{"file": {"ok": bool, "detail": "…"}, "dir": …, "env": …,
//! "envCount": …, "socket": …, "dns": …}`; `detail` is the error, or what the
//! attempt got.

use std::io;
use std::net::{TcpStream, ToSocketAddrs};

use serde::Deserialize;
use serde_json::{Value, json};
use wasm_operator_sdk::{
    Context, GroupVersionKind, Plugin, PluginError, PluginInfo, Request, Response, export_plugin,
};

/// `spec` of the Greeting it is bound to: the port to connect to on 127.0.0.1.
#[derive(Debug, Deserialize)]
struct Spec {
    #[serde(default)]
    port: u16,
}

/// Tries to escape the sandbox.
pub struct Escape;

impl Plugin for Escape {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "hostile-escape",
            "0.1.0",
            GroupVersionKind::new("examples.systems.mikemiller.tech", "v1alpha1", "Greeting"),
        )
    }

    fn reconcile(_ctx: &Context<'_>, req: &Request) -> Result<Response, PluginError> {
        let spec: Spec = req.object.spec()?;
        let status = json!({
            "file": attempt(std::fs::read("/etc/hostname").map(|bytes| String::from_utf8_lossy(&bytes).into_owned())),
            "dir": attempt(list_root()),
            "env": attempt(std::env::var("HOME")),
            "envCount": attempt(Ok::<_, io::Error>(std::env::vars().count().to_string())),
            "socket": attempt(
                TcpStream::connect(("127.0.0.1", spec.port)).and_then(|s| s.peer_addr()).map(|a| format!("connected to {a}"))
            ),
            "dns": attempt(("localhost", 0).to_socket_addrs().map(|a| format!("{:?}", a.collect::<Vec<_>>()))),
        });
        Ok(Response::new().status(status))
    }
}

fn list_root() -> io::Result<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir("/")? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(names.join(","))
}

fn attempt<E: std::fmt::Display>(result: Result<String, E>) -> Value {
    match result {
        Ok(got) => json!({ "ok": true, "detail": got }),
        Err(error) => json!({ "ok": false, "detail": error.to_string() }),
    }
}

export_plugin!(Escape);
