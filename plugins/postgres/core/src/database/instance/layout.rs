//! The names of a dedicated instance's objects, and the labels that tie
//! them together.
//!
//! Everything is named after the Database (`foo-db`): instances (Pods,
//! their PVCs and PostgresServers) `foo-db-1`, `foo-db-2`; Services
//! `foo-db-rw` (the primary), `foo-db-ro` (replicas), `foo-db-r` (any);
//! Secrets `foo-db-superuser`, `foo-db-replication`; ConfigMap
//! `foo-db-config`; PodDisruptionBudget `foo-db`. The Services select Pods
//! by [`DATABASE_LABEL`] and [`ROLE_LABEL`], which is how a failover moves
//! `foo-db-rw` to the new primary: by relabelling, as CloudNativePG does.

use wasm_operator_sdk::PluginError;

/// The label with the Database's name, on every instance Pod.
pub const DATABASE_LABEL: &str = "systems.mikemiller.tech/database";
/// The label with the instance's name (`foo-db-1`).
pub const INSTANCE_LABEL: &str = "systems.mikemiller.tech/instance";
/// The label with the instance's role: [`PRIMARY`] or [`REPLICA`].
pub const ROLE_LABEL: &str = "systems.mikemiller.tech/role";
/// The role of the instance that takes writes.
pub const PRIMARY: &str = "primary";
/// The role of a streaming replica.
pub const REPLICA: &str = "replica";
/// PostgreSQL's port, in the Pods and on the Services.
pub const PORT: u16 = 5432;
/// The superuser the operator connects as.
pub const SUPERUSER: &str = "postgres";
/// The role replicas stream as (REPLICATION LOGIN, not a superuser).
pub const REPLICATION_USER: &str = "streaming_replica";
/// The longest Database name a dedicated instance takes: its longest child
/// name, the Service `<name>-rw`, must be a DNS label (63 characters), and
/// names are labels' values too.
const MAX_NAME: usize = 50;

/// The names of one Database's dedicated instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// The Database's name.
    pub(crate) name: String,
    /// Its namespace, where every child lives.
    pub(crate) namespace: String,
}

impl Layout {
    /// The layout of Database `name` in `namespace`.
    ///
    /// # Errors
    /// `InvalidSpec` naming `metadata.name` when it cannot name Services
    /// (a DNS label: lower-case letters, digits and `-`, starting with a
    /// letter, at most 50 characters here).
    pub(crate) fn new(name: &str, namespace: &str) -> Result<Self, PluginError> {
        let label = name.len() <= MAX_NAME
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && !name.ends_with('-')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !label {
            return Err(PluginError::invalid_spec(format!(
                "metadata.name: {name:?} cannot name a dedicated instance's Services \
                 ({name}-rw, …): use at most {MAX_NAME} lower-case letters, digits and '-', \
                 starting with a letter (or set spec.serverRef to use an existing server)"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
        })
    }

    /// Instance `n` (from 1): its Pod, PVC and PostgresServer.
    pub(crate) fn instance(&self, n: u32) -> String {
        format!("{}-{n}", self.name)
    }

    /// The instance number of an instance name of this layout.
    pub(crate) fn number(&self, instance: &str) -> Option<u32> {
        let rest = instance.strip_prefix(&self.name)?.strip_prefix('-')?;
        rest.parse().ok().filter(|n| *n >= 1)
    }

    /// `namespace/name` of instance `n`'s PostgresServer: how SQL plans and
    /// queries are aimed at that one instance.
    pub(crate) fn server_key(&self, n: u32) -> String {
        format!("{}/{}", self.namespace, self.instance(n))
    }

    /// The replication slot on the primary for instance `n`.
    pub(crate) fn slot(n: u32) -> String {
        format!("instance_{n}")
    }

    /// The Service of the primary.
    pub(crate) fn read_write(&self) -> String {
        format!("{}-rw", self.name)
    }

    /// The Service of the replicas.
    pub(crate) fn read_only(&self) -> String {
        format!("{}-ro", self.name)
    }

    /// The Service of every instance.
    pub(crate) fn any(&self) -> String {
        format!("{}-r", self.name)
    }

    /// The superuser's Secret.
    pub(crate) fn superuser(&self) -> String {
        format!("{}-superuser", self.name)
    }

    /// The replication role's Secret.
    pub(crate) fn replication(&self) -> String {
        format!("{}-replication", self.name)
    }

    /// The ConfigMap with `postgresql.conf`, `pg_hba.conf` and the
    /// bootstrap script.
    pub(crate) fn config(&self) -> String {
        format!("{}-config", self.name)
    }

    /// The PodDisruptionBudget.
    pub(crate) fn disruption_budget(&self) -> String {
        self.name.clone()
    }

    /// The environment variable kubelets set to the `-rw` Service's
    /// cluster IP in Pods created after it (`FOO_DB_RW_SERVICE_HOST`).
    pub(crate) fn read_write_host_variable(&self) -> String {
        format!(
            "{}_SERVICE_HOST",
            self.read_write().to_ascii_uppercase().replace('-', "_")
        )
    }

    /// The `-rw` Service's DNS name in the cluster.
    pub(crate) fn read_write_dns(&self) -> String {
        format!("{}.{}.svc", self.read_write(), self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_database_and_instances_round_trip() {
        let layout = Layout::new("foo-db", "infra").unwrap();
        assert_eq!(layout.instance(2), "foo-db-2");
        assert_eq!(layout.number("foo-db-2"), Some(2));
        assert_eq!(layout.number("foo-db-rw"), None);
        assert_eq!(layout.number("foo-db-0"), None);
        assert_eq!(layout.number("foo-dbx-1"), None);
        assert_eq!(layout.server_key(1), "infra/foo-db-1");
        assert_eq!(layout.read_write_host_variable(), "FOO_DB_RW_SERVICE_HOST");
        assert_eq!(layout.read_write_dns(), "foo-db-rw.infra.svc");
    }

    #[test]
    fn names_that_cannot_name_services_are_refused_naming_metadata_name() {
        for bad in ["1db", "Foo", "a.b", "db-", &"a".repeat(51)] {
            let error = Layout::new(bad, "infra").unwrap_err();
            assert_eq!(error.reason, "InvalidSpec");
            assert!(
                error.message.starts_with("metadata.name:"),
                "{}",
                error.message
            );
        }
    }
}
