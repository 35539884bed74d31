//! The instance ConfigMap: `postgresql.conf`, `pg_hba.conf` and the
//! bootstrap script every instance's init container runs.
//!
//! One script for every instance, primary or replica: the Pod spec of an
//! instance then does not depend on its role (a Pod spec cannot change, a
//! label can), and a failover only moves [`ROLE_LABEL`](super::layout::ROLE_LABEL).
//! The script reads the role from that label (`ROLE`, a downward-API
//! variable) when the Pod starts:
//! - primary, empty volume → `initdb` with the superuser's password;
//! - replica, empty volume → `pg_basebackup -R` from the `-rw` Service
//!   through this instance's replication slot;
//! - replica whose volume holds a primary's data (no `standby.signal`: the
//!   old primary after a failover) → the data is moved aside and the
//!   instance is cloned again from the new primary;
//! - otherwise the data is used as it is.

use std::collections::BTreeMap;

use super::layout::{Layout, PORT, REPLICATION_USER, SUPERUSER};

/// Where the instance's volume is mounted.
pub(crate) const DATA_MOUNT: &str = "/var/lib/postgresql/data";
/// The data directory: below the mount, since a volume's root may hold
/// `lost+found`, which `initdb` refuses.
pub(crate) const PGDATA: &str = "/var/lib/postgresql/data/pgdata";
/// Where the ConfigMap is mounted.
pub(crate) const CONFIG_MOUNT: &str = "/etc/postgresql-instance/config";
/// Where the superuser's Secret is mounted (for `initdb --pwfile`).
pub(crate) const SUPERUSER_MOUNT: &str = "/etc/postgresql-instance/superuser";
/// The ConfigMap key of the main configuration file.
pub(crate) const POSTGRESQL_CONF: &str = "postgresql.conf";
/// The ConfigMap key of the client authentication file.
pub(crate) const PG_HBA_CONF: &str = "pg_hba.conf";
/// The ConfigMap key of the bootstrap script.
pub(crate) const BOOTSTRAP: &str = "bootstrap.sh";

/// `postgresql.conf` of every instance: streaming replication with slots,
/// WAL kept for a dead replica's slot bounded to a tenth of the volume, and
/// the settings' extra parameters. Listen address, port and `cluster_name`
/// come from the command line (they differ per Pod).
pub(crate) fn postgresql_conf(size_bytes: u128, parameters: &BTreeMap<String, String>) -> String {
    let keep_mb = (size_bytes / 10) >> 20;
    let mut conf = format!(
        "# Written by wasm-operator's postgres-database plugin; changes are overwritten.\n\
         hba_file = '{CONFIG_MOUNT}/{PG_HBA_CONF}'\n\
         password_encryption = 'scram-sha-256'\n\
         wal_level = 'replica'\n\
         hot_standby = on\n\
         max_wal_senders = 10\n\
         max_replication_slots = 10\n\
         wal_log_hints = on\n\
         # A replica that stops consuming its slot cannot fill the primary's volume.\n\
         max_slot_wal_keep_size = '{keep_mb}MB'\n"
    );
    for (name, value) in parameters {
        conf.push_str(&format!("{name} = '{}'\n", value.replace('\'', "''")));
    }
    conf
}

/// `pg_hba.conf`: the local superuser by peer, replication only for the
/// replication role, everything else with SCRAM passwords.
pub(crate) fn pg_hba_conf() -> String {
    format!(
        "# Written by wasm-operator's postgres-database plugin; changes are overwritten.\n\
         local all all peer\n\
         host replication {REPLICATION_USER} all scram-sha-256\n\
         host all all all scram-sha-256\n"
    )
}

/// The bootstrap script (see the module docs). `PRIMARY_HOST` is the `-rw`
/// Service's cluster IP from the variable kubelets set, else its DNS name.
pub(crate) fn bootstrap_script(layout: &Layout) -> String {
    let variable = layout.read_write_host_variable();
    let service = layout.read_write_dns();
    format!(
        r#"#!/bin/sh
# Prepares $PGDATA for this instance's role ($ROLE, from the Pod's role label).
# Written by wasm-operator's postgres-database plugin.
set -eu
if [ -s "$PGDATA/PG_VERSION" ]; then
  if [ "$ROLE" = primary ] || [ -f "$PGDATA/standby.signal" ]; then
    exit 0
  fi
  echo "the volume holds a former primary's data: moving it aside and cloning the new primary"
  rm -rf "$PGDATA.former-primary"
  mv "$PGDATA" "$PGDATA.former-primary"
fi
if [ "$ROLE" = primary ]; then
  initdb -D "$PGDATA" --username={SUPERUSER} --pwfile={SUPERUSER_MOUNT}/password \
    --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8
  exit 0
fi
PRIMARY_HOST="${{{variable}:-{service}}}"
attempt=1
until pg_basebackup -D "$PGDATA" -h "$PRIMARY_HOST" -p {PORT} -U {REPLICATION_USER} -w \
    -X stream -R -S "$SLOT" -c fast; do
  rm -rf "$PGDATA"
  if [ "$attempt" -ge 30 ]; then
    echo "pg_basebackup from $PRIMARY_HOST failed $attempt times" >&2
    exit 1
  fi
  attempt=$((attempt + 1))
  sleep 2
done
rm -rf "$PGDATA.former-primary"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_kept_for_slots_is_a_tenth_of_the_volume() {
        let conf = postgresql_conf(120 << 30, &BTreeMap::new());
        assert!(
            conf.contains("max_slot_wal_keep_size = '12288MB'\n"),
            "{conf}"
        );
        assert!(conf.contains("hba_file = '/etc/postgresql-instance/config/pg_hba.conf'"));
    }

    #[test]
    fn extra_parameters_are_quoted() {
        let conf = postgresql_conf(
            1 << 30,
            &BTreeMap::from([("search_path".to_owned(), "'$user', public".to_owned())]),
        );
        assert!(
            conf.ends_with("search_path = '''$user'', public'\n"),
            "{conf}"
        );
    }

    #[test]
    fn hba_allows_replication_only_for_the_replication_role_with_scram() {
        let hba = pg_hba_conf();
        assert!(hba.contains("host replication streaming_replica all scram-sha-256\n"));
        assert!(!hba.contains("trust"));
    }

    #[test]
    fn the_replica_clones_from_the_rw_service_through_its_slot() {
        let script = bootstrap_script(&Layout::new("foo-db", "infra").unwrap());
        assert!(
            script.contains(r#"PRIMARY_HOST="${FOO_DB_RW_SERVICE_HOST:-foo-db-rw.infra.svc}""#)
        );
        assert!(script.contains("-U streaming_replica -w \\\n    -X stream -R -S \"$SLOT\""));
        assert!(script.contains("--pwfile=/etc/postgresql-instance/superuser/password"));
    }
}
