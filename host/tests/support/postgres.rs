//! Throwaway PostgreSQL servers for tests: `initdb` into a fresh directory,
//! start on a free loopback port, stop and delete on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasm_operator::sql::ServerConnection;

/// The administrator's password of every test server (scram-sha-256 over TCP).
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// A running throwaway PostgreSQL server.
pub struct PgServer {
    bin: PathBuf,
    data: PathBuf,
    /// The TCP port it listens on (127.0.0.1).
    pub port: u16,
}

/// The directory of `initdb`, `pg_ctl` and `postgres`: `$WASM_OPERATOR_PG_BIN`,
/// or the newest Debian install.
pub fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("WASM_OPERATOR_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: apt-get install -y postgresql (scripts/test.sh does)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no PostgreSQL server binaries under /usr/lib/postgresql")
}

fn is_root() -> bool {
    std::env::var("USER").is_ok_and(|u| u == "root")
        || Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout == b"0\n")
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (initdb
/// refuses to run as root).
fn run(tool: &Path, args: &[&str]) {
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(tool);
        c
    } else {
        Command::new(tool)
    };
    let output = command
        .args(args)
        .output()
        .expect("running a PostgreSQL tool");
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}{}",
        tool.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl PgServer {
    /// Creates and starts a server.
    pub fn start() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let bin = pg_bin();
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let data = root.join("data");
        let pwfile = root.join("pwfile");
        std::fs::write(&pwfile, ADMIN_PASSWORD).unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&root)
                .status()
                .unwrap();
            assert!(status.success(), "chown of {}", root.display());
        }
        let data_arg = data.to_str().unwrap();
        run(
            &bin.join("initdb"),
            &[
                "-D",
                data_arg,
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c log_statement=all",
            root.display()
        );
        run(
            &bin.join("pg_ctl"),
            &[
                "-D",
                data_arg,
                "-w",
                "-l",
                root.join("server.log").to_str().unwrap(),
                "-o",
                &options,
                "start",
            ],
        );
        Self { bin, data, port }
    }

    /// Admin connection settings for the operator.
    pub fn connection(&self) -> ServerConnection {
        ServerConnection {
            host: "127.0.0.1".into(),
            port: self.port,
            user: "postgres".into(),
            password: ADMIN_PASSWORD.into(),
            maintenance_database: "postgres".into(),
        }
    }

    /// The server log (every statement is logged: `log_statement=all`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.parent().unwrap().join("server.log")).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap().to_owned();
        let tool = self.bin.join("pg_ctl");
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&tool);
            c
        } else {
            Command::new(&tool)
        };
        let _ = command
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(self.data.parent().unwrap());
    }
}
