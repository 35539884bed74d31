//! A container's file system and identity, built the way a container runtime would from
//! the host's own files: a private mount namespace and UTS namespace per process, the
//! host's system directories bound into a per-container root, the image's extras (its
//! `/etc/passwd`, its PostgreSQL binaries, its socket directory), every `volumeMount` bound at
//! its `mountPath`, then `chroot`, and the Pod's user and group.
//!
//! The mounts live in the process's own mount namespace, so they vanish with it and never
//! show on the host. Everything the child does between `fork` and `exec` is a plain system
//! call on strings prepared beforehand (no allocation after `fork`, which is not safe in a
//! multi-threaded program).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::images::Image;

/// Host directories every container sees, bound at the same path and writable: a
/// container running as root can change the host's files there (tests run as root; the
/// images' own files are the host's).
const BOUND: &[&str] = &["/usr", "/etc", "/dev", "/proc", "/sys"];

/// Host top-level entries that are either symlinks into `/usr` (merged-`/usr` systems) or
/// directories to bind.
const BOUND_OR_LINKED: &[&str] = &["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/// One bind mount of a volume.
#[derive(Clone, Debug)]
pub(crate) struct VolumeMount {
    /// The directory (or file) on the host.
    pub(crate) source: PathBuf,
    /// The absolute path inside the container.
    pub(crate) mount_path: String,
    /// Whether to remount it read-only.
    pub(crate) read_only: bool,
}

/// Everything needed to start processes of one container.
#[derive(Clone, Debug)]
pub(crate) struct Sandbox {
    root: PathBuf,
    hostname: String,
    uid: u32,
    gid: u32,
    working_dir: String,
    /// System binds: (host path, target, read-only).
    mounts: Vec<(PathBuf, PathBuf, bool)>,
    /// Volume binds, made after `mkdirs`.
    volumes: Vec<(PathBuf, PathBuf, bool)>,
    /// Directories to create inside the container after its binds (below a bound host
    /// directory they cannot be made beforehand).
    mkdirs: Vec<PathBuf>,
}

impl Sandbox {
    /// Lays out the root of one container under `dir` for `image`.
    pub(crate) fn prepare(
        dir: &Path,
        image: &Image,
        hostname: &str,
        uid: u32,
        gid: u32,
        working_dir: Option<&str>,
        volumes: &[VolumeMount],
    ) -> io::Result<Self> {
        let root = dir.join("root");
        std::fs::create_dir_all(&root)?;
        let mut mounts = Vec::new();
        for host in BOUND {
            let target = inside(&root, host);
            std::fs::create_dir_all(&target)?;
            mounts.push((PathBuf::from(host), target, false));
        }
        for host in BOUND_OR_LINKED {
            let target = inside(&root, host);
            match std::fs::read_link(host) {
                Ok(link) => {
                    if std::fs::symlink_metadata(&target).is_err() {
                        symlink(link, &target)?;
                    }
                }
                Err(_) if Path::new(host).is_dir() => {
                    std::fs::create_dir_all(&target)?;
                    mounts.push((PathBuf::from(host), target, false));
                }
                Err(_) => {}
            }
        }
        // Installs outside /usr (the npm builds under target/) are bound whole: the binaries
        // find their libraries and share/ relative to themselves.
        if let Some(prefix) = image.bin.parent().filter(|p| !p.starts_with("/usr")) {
            let target = inside(&root, &prefix.to_string_lossy());
            std::fs::create_dir_all(&target)?;
            mounts.push((prefix.to_owned(), target, false));
        }
        // The image's own writable directories.
        for (path, mode) in [("/tmp", 0o1777), ("/run", 0o755), ("/var/lib", 0o755)] {
            let target = inside(&root, path);
            std::fs::create_dir_all(&target)?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))?;
        }
        let var_run = inside(&root, "/var/run");
        if std::fs::symlink_metadata(&var_run).is_err() {
            symlink("/run", &var_run)?;
        }
        for path in ["/run/postgresql", "/var/lib/postgresql"] {
            let target = inside(&root, path);
            std::fs::create_dir_all(&target)?;
            chown(&target, image.postgres_uid, image.postgres_uid)?;
        }
        std::fs::set_permissions(
            inside(&root, "/run/postgresql"),
            std::fs::Permissions::from_mode(0o3777),
        )?;
        // The image's /etc/passwd and /etc/group name its postgres user; bound over the host's.
        for (file, line) in [
            (
                "passwd",
                format!(
                    "postgres:x:{0}:{0}:PostgreSQL:/var/lib/postgresql:/bin/sh",
                    image.postgres_uid
                ),
            ),
            ("group", format!("postgres:x:{}:", image.postgres_uid)),
        ] {
            let host = std::fs::read_to_string(format!("/etc/{file}")).unwrap_or_default();
            let mut content: String = host
                .lines()
                .filter(|l| !l.starts_with("postgres:"))
                .map(|l| format!("{l}\n"))
                .collect();
            content.push_str(&line);
            content.push('\n');
            let source = dir.join(file);
            std::fs::write(&source, content)?;
            mounts.push((source, inside(&root, &format!("/etc/{file}")), false));
        }
        let mut mkdirs = Vec::new();
        let mut volume_binds = Vec::new();
        for volume in volumes {
            let target = inside(&root, &volume.mount_path);
            mkdirs.push(if volume.source.is_dir() {
                target.clone()
            } else {
                target.parent().unwrap_or(&root).to_owned()
            });
            volume_binds.push((volume.source.clone(), target, volume.read_only));
        }
        let working_dir = working_dir.unwrap_or("/").to_owned();
        mkdirs.push(inside(&root, &working_dir));
        Ok(Self {
            root,
            hostname: hostname.to_owned(),
            uid,
            gid,
            working_dir,
            mounts,
            volumes: volume_binds,
            mkdirs,
        })
    }

    /// A command running `argv` inside the sandbox with exactly `env`, as the leader of a new
    /// process group, its output appended to `log`.
    pub(crate) fn command(
        &self,
        argv: &[String],
        env: &[(String, String)],
        log: &std::fs::File,
    ) -> io::Result<tokio::process::Command> {
        let Some((program, args)) = argv.split_first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?)
            .process_group(0)
            .kill_on_drop(true);
        let child = ChildSetup::new(self)?;
        // SAFETY: the hook only makes system calls on memory prepared before fork.
        unsafe {
            command.pre_exec(move || child.run());
        }
        Ok(command)
    }
}

/// What the forked child does before `exec`, on C strings made before the fork.
/// One bind mount in C strings: source, target, read-only, whether the source is a file.
type Bind = (CString, CString, bool, bool);

struct ChildSetup {
    root: CString,
    working_dir: CString,
    hostname: CString,
    uid: u32,
    gid: u32,
    /// System binds: (source, target, read-only, is a file).
    mounts: Vec<Bind>,
    /// Volume binds, made once `mkdirs` exist.
    volumes: Vec<Bind>,
    /// Every prefix of every directory to create, outermost first.
    mkdirs: Vec<CString>,
}

impl ChildSetup {
    fn new(sandbox: &Sandbox) -> io::Result<Self> {
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
        };
        let mut mkdirs = Vec::new();
        for dir in &sandbox.mkdirs {
            for prefix in dir.ancestors().collect::<Vec<_>>().into_iter().rev() {
                if prefix.starts_with(&sandbox.root) {
                    mkdirs.push(c(prefix)?);
                }
            }
        }
        let binds = |list: &[(PathBuf, PathBuf, bool)]| -> io::Result<Vec<Bind>> {
            list.iter()
                .map(|(source, target, read_only)| {
                    Ok((c(source)?, c(target)?, *read_only, source.is_file()))
                })
                .collect()
        };
        Ok(Self {
            root: c(&sandbox.root)?,
            working_dir: CString::new(sandbox.working_dir.as_bytes())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            hostname: CString::new(sandbox.hostname.as_bytes())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            uid: sandbox.uid,
            gid: sandbox.gid,
            mounts: binds(&sandbox.mounts)?,
            volumes: binds(&sandbox.volumes)?,
            mkdirs,
        })
    }

    /// Runs in the child between fork and exec.
    fn run(&self) -> io::Result<()> {
        let null = std::ptr::null::<libc::c_char>();
        // SAFETY: plain system calls on valid NUL-terminated strings owned by `self`.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS))?;
            // Nothing mounted below may propagate back to the host's namespace.
            check(libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::sethostname(
                self.hostname.as_ptr(),
                self.hostname.as_bytes().len(),
            ))?;
            for bind in &self.mounts {
                self::bind(bind)?;
            }
            // A volume's target below a bound host directory can only be made once that
            // directory is bound (EEXIST is fine).
            for dir in &self.mkdirs {
                libc::mkdir(dir.as_ptr(), 0o755);
            }
            for bind in &self.volumes {
                self::bind(bind)?;
            }
            check(libc::chroot(self.root.as_ptr()))?;
            check(libc::chdir(self.working_dir.as_ptr()))?;
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setgid(self.gid))?;
            check(libc::setuid(self.uid))?;
        }
        Ok(())
    }
}

/// One bind mount (in the child).
fn bind((source, target, read_only, is_file): &Bind) -> io::Result<()> {
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: plain system calls on NUL-terminated strings made before the fork.
    unsafe {
        if *is_file {
            let fd = libc::open(target.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
            if fd >= 0 {
                libc::close(fd);
            }
        }
        check(libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            null,
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ))?;
        if *read_only {
            check(libc::mount(
                null,
                target.as_ptr(),
                null,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                std::ptr::null(),
            ))?;
        }
    }
    Ok(())
}

/// A system call's result as an `io::Result` (reads `errno`, allocates nothing).
fn check(result: libc::c_int) -> io::Result<()> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `path` (absolute, as the container sees it) below `root`.
fn inside(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn chown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
}
