//! Starting one container: its environment, command line, identity, mounts and sandbox,
//! turned into a running process group (or the reason the kubelet gives for not starting
//! it).

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::process::Child;

use crate::images::Image;
use crate::sandbox::{Sandbox, VolumeMount};
use crate::volumes::HostVolume;
use crate::{Shared, env};

/// A container's process, started.
pub(crate) struct Launched {
    pub(crate) child: Child,
    pub(crate) sandbox: Sandbox,
    pub(crate) env: Vec<(String, String)>,
    /// Its process group (the process is the leader).
    pub(crate) pgid: i32,
}

/// Starts `spec` of `pod` (whose status carries its IPs already) in a sandbox under
/// `container_dir`. `Err((reason, message))` as the kubelet reports a container it could
/// not create: `CreateContainerConfigError`, `CreateContainerError`, `RunContainerError`.
pub(crate) async fn launch(
    shared: &Shared,
    pod: &Pod,
    spec: &Container,
    image: &Image,
    volumes: &BTreeMap<String, HostVolume>,
    container_dir: &Path,
) -> Result<Launched, (String, String)> {
    let config = |m: String| ("CreateContainerConfigError".to_owned(), m);
    let name = pod.metadata.name.clone().unwrap_or_default();
    let env = env::resolve(&shared.client, pod, spec, &image.env)
        .await
        .map_err(config)?;
    let mut argv: Vec<String> = spec.command.clone().unwrap_or_default();
    if argv.is_empty() {
        return Err((
            "CreateContainerError".to_owned(),
            "the test node does not run an image's entrypoint: give the container a command"
                .to_owned(),
        ));
    }
    argv.extend(spec.args.clone().unwrap_or_default());
    let argv: Vec<String> = argv.iter().map(|a| env::expand(a, &env)).collect();
    let (uid, gid) = identity(pod, spec, image).map_err(config)?;
    let mut mounts = Vec::new();
    for mount in spec.volume_mounts.iter().flatten() {
        let host = volumes.get(&mount.name).ok_or_else(|| {
            config(format!(
                "volume {:?} of mount {:?} is not a volume of the Pod",
                mount.name, mount.mount_path
            ))
        })?;
        let mut source = host.path.clone();
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            source = source.join(sub);
            if !source.exists() {
                std::fs::create_dir_all(&source).map_err(|e| config(e.to_string()))?;
            }
        }
        mounts.push(VolumeMount {
            source,
            mount_path: mount.mount_path.clone(),
            read_only: host.read_only || mount.read_only.unwrap_or(false),
        });
    }
    let run_error = |e: std::io::Error| ("RunContainerError".to_owned(), e.to_string());
    let sandbox = Sandbox::prepare(
        container_dir,
        image,
        &name,
        uid,
        gid,
        spec.working_dir.as_deref(),
        &mounts,
    )
    .map_err(run_error)?;
    let log = shared.open_log(pod, &spec.name).map_err(run_error)?;
    let child = sandbox
        .command(&argv, &env, &log)
        .and_then(|mut c| c.spawn())
        .map_err(run_error)?;
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .unwrap_or(0);
    Ok(Launched {
        child,
        sandbox,
        env,
        pgid,
    })
}

/// The user and group a container runs as: the container's `securityContext`, else the
/// Pod's, else the image's user; the group defaults to the user's primary group in the
/// image's `/etc/passwd` (root's otherwise), as container runtimes do.
fn identity(pod: &Pod, container: &Container, image: &Image) -> Result<(u32, u32), String> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = container.security_context.as_ref();
    let pick = |c: Option<i64>, p: Option<i64>| c.or(p).map(|v| u32::try_from(v).unwrap_or(0));
    let uid = pick(
        sc.and_then(|s| s.run_as_user),
        pod_sc.and_then(|s| s.run_as_user),
    )
    .unwrap_or(image.default_uid);
    let gid = pick(
        sc.and_then(|s| s.run_as_group),
        pod_sc.and_then(|s| s.run_as_group),
    )
    .unwrap_or(if uid == image.postgres_uid { uid } else { 0 });
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or(pod_sc.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    if non_root && uid == 0 {
        return Err("container has runAsNonRoot and image will run as root".to_owned());
    }
    Ok((uid, gid))
}
