//! The images the node can "pull": names of PostgreSQL images mapped to the PostgreSQL
//! binaries of that major version installed on this machine, with what the real image
//! brings beside them (its `PATH`, its `postgres` user, its socket directory).

use std::path::PathBuf;

/// The official Docker image's `postgres` user and group (`docker-library/postgres`).
const DOCKER_POSTGRES_UID: u32 = 999;

/// The CloudNativePG images' `postgres` user and group (they run as `USER 26`).
const CNPG_POSTGRES_UID: u32 = 26;

/// What the node runs for one image name.
#[derive(Clone, Debug)]
pub(crate) struct Image {
    /// The directory of the PostgreSQL binaries, first on `PATH`.
    pub(crate) bin: PathBuf,
    /// The environment the image declares (`ENV`), before the container's own.
    pub(crate) env: Vec<(String, String)>,
    /// The image's `postgres` user (and group) id: present in its `/etc/passwd`.
    pub(crate) postgres_uid: u32,
    /// The user the image runs as when the Pod names none (`USER`); `0` is root.
    pub(crate) default_uid: u32,
}

/// The image `name` stands for, or `None` when the node does not know it (or the major
/// version it names is not installed).
pub(crate) fn resolve(name: &str) -> Option<Image> {
    let (repository, tag) = split(name)?;
    let (postgres_uid, default_uid, pgdata) = match repository {
        "postgres" | "library/postgres" | "docker.io/library/postgres" | "docker.io/postgres" => {
            (DOCKER_POSTGRES_UID, 0, true)
        }
        "ghcr.io/cloudnative-pg/postgresql" => (CNPG_POSTGRES_UID, CNPG_POSTGRES_UID, false),
        _ => return None,
    };
    let major: u32 = tag
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .filter(|digits| !digits.is_empty())?
        .parse()
        .ok()?;
    let install = test_postgres::install_of_major(major).ok()?;
    let mut env = vec![
        (
            "PATH".to_owned(),
            format!(
                "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                install.bin.display()
            ),
        ),
        ("PG_MAJOR".to_owned(), major.to_string()),
    ];
    if pgdata {
        env.push(("PGDATA".to_owned(), "/var/lib/postgresql/data".to_owned()));
    }
    Some(Image {
        bin: install.bin,
        env,
        postgres_uid,
        default_uid,
    })
}

/// `repository` and `tag` of an image reference (`docker.io/postgres:16.4-bookworm`); a
/// digest or a missing tag is not something the node can map to a major version.
fn split(name: &str) -> Option<(&str, &str)> {
    let name = name.split('@').next()?;
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    let colon = name[slash..].find(':')? + slash;
    Some((&name[..colon], &name[colon + 1..]))
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn references_split_into_repository_and_tag_even_with_a_registry_port() {
        assert_eq!(split("postgres:14"), Some(("postgres", "14")));
        assert_eq!(
            split("ghcr.io/cloudnative-pg/postgresql:16.4-bookworm"),
            Some(("ghcr.io/cloudnative-pg/postgresql", "16.4-bookworm"))
        );
        assert_eq!(
            split("localhost:5000/postgres:15"),
            Some(("localhost:5000/postgres", "15"))
        );
        assert_eq!(split("postgres"), None);
    }

    #[test]
    fn unknown_repositories_are_not_images_the_node_has() {
        assert!(super::resolve("busybox:1.36").is_none());
        assert!(super::resolve("postgres:latest").is_none());
    }
}
