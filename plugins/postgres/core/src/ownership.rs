//! Which resource a role or a database on a server belongs to, and whether
//! a resource may take it.
//!
//! The record lives on the object itself, as its comment (`COMMENT ON ROLE`,
//! `COMMENT ON DATABASE`): `wasm-operator: created for Database apps/app
//! (uid …)`. A comment needs no schema of ours on the server, works for an
//! administrator that is no superuser (one with CREATEROLE may comment on
//! the roles it created), is set in the same transaction as `CREATE ROLE`,
//! and is bound to the object's oid: a role dropped and recreated by hand
//! carries no mark and is not taken back. Plain login roles cannot comment
//! on roles; the owner of a database can rewrite its comment, which only
//! makes the operator refuse (and never drop) that owner's own database.
//!
//! The rules: a resource manages only what carries its own mark. An
//! unmarked object is refused (`AlreadyExists`) unless its PostgresServer
//! sets `spec.adoptExisting`, and then it is marked `adopted`; adopted
//! objects are never dropped. Roles with SUPERUSER, CREATEROLE, REPLICATION
//! or BYPASSRLS are never managed. An object marked for another resource is
//! refused (`OwnedByAnother`, naming it).

use wasm_operator_sdk::{Object, PluginError, SqlStatement};

use crate::names::{ident, literal};

/// The reason of `Ready=False` for a role or database another resource owns.
pub const OWNED_BY_ANOTHER: &str = "OwnedByAnother";
/// The reason of `Ready=False` for a role or database the operator did not create.
pub const ALREADY_EXISTS: &str = "AlreadyExists";
/// The reason of `Ready=False` for a role with attributes the operator never manages.
pub const PRIVILEGED_ROLE: &str = "PrivilegedRole";

/// What every mark starts with.
const PREFIX: &str = "wasm-operator: ";

/// The columns an observe query returns for a role, from `pg_roles r`: its
/// mark and the attributes that forbid managing it (a macro, for `concat!`).
macro_rules! role_columns {
    () => {
        "shobj_description(r.oid, 'pg_authid') as role_mark, \
         coalesce(r.rolsuper, false) as role_superuser, \
         coalesce(r.rolcreaterole, false) as role_createrole, \
         coalesce(r.rolreplication, false) as role_replication, \
         coalesce(r.rolbypassrls, false) as role_bypassrls"
    };
}
pub(crate) use role_columns;

/// How the marked resource came to own the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum How {
    /// The operator created it for the resource: dropped with `reclaimPolicy: Delete`.
    Created,
    /// It existed and was adopted: never dropped.
    Adopted,
}

/// The resource a reconcile acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    /// `Database apps/app`.
    resource: String,
    /// `metadata.uid`.
    uid: String,
}

impl Owner {
    /// The resource `object` is.
    ///
    /// # Errors
    /// `InvalidObject` without `metadata.uid` (the API server always sets
    /// it; a mark without one could never be recognised again).
    pub(crate) fn of(object: &Object) -> Result<Self, PluginError> {
        if object.uid().is_empty() {
            return Err(PluginError::permanent(
                "InvalidObject",
                format!("{} {:?} has no metadata.uid", object.kind(), object.name()),
            ));
        }
        Ok(Self {
            resource: format!(
                "{} {}/{}",
                object.kind(),
                object.namespace().unwrap_or_default(),
                object.name()
            ),
            uid: object.uid().to_owned(),
        })
    }

    /// The comment that marks an object as this resource's.
    pub(crate) fn mark(&self, how: How) -> String {
        let how = match how {
            How::Created => "created for",
            How::Adopted => "adopted by",
        };
        format!("{PREFIX}{how} {} (uid {})", self.resource, self.uid)
    }
}

/// A mark read back from a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mark {
    /// Created or adopted.
    pub(crate) how: How,
    /// `Database apps/app`.
    pub(crate) resource: String,
    /// The owner's uid.
    pub(crate) uid: String,
}

impl Mark {
    /// The mark in `comment`; `None` for any other comment.
    pub(crate) fn parse(comment: &str) -> Option<Self> {
        let rest = comment.strip_prefix(PREFIX)?;
        let (how, rest) = if let Some(rest) = rest.strip_prefix("created for ") {
            (How::Created, rest)
        } else {
            (How::Adopted, rest.strip_prefix("adopted by ")?)
        };
        let (resource, uid) = rest.strip_suffix(')')?.rsplit_once(" (uid ")?;
        (!uid.is_empty()).then(|| Self {
            how,
            resource: resource.to_owned(),
            uid: uid.to_owned(),
        })
    }

    /// Whether `owner` created the object (and may drop it).
    pub(crate) fn created_by(comment: Option<&str>, owner: &Owner) -> bool {
        comment
            .and_then(Self::parse)
            .is_some_and(|mark| mark.how == How::Created && mark.uid == owner.uid)
    }
}

/// A role or a database on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// A role.
    Role(&'a str),
    /// A database.
    Database(&'a str),
}

impl Target<'_> {
    fn describe(self) -> String {
        match self {
            Self::Role(name) => format!("role {name:?}"),
            Self::Database(name) => format!("database {name:?}"),
        }
    }

    /// `COMMENT ON ROLE|DATABASE "name" IS '<mark>'`.
    ///
    /// # Errors
    /// `InvalidSpec` when the name cannot be quoted (validation prevents it).
    pub(crate) fn mark(self, owner: &Owner, how: How) -> Result<SqlStatement, PluginError> {
        let (kind, name) = match self {
            Self::Role(name) => ("ROLE", name),
            Self::Database(name) => ("DATABASE", name),
        };
        let quoted = ident(name)?;
        let word = match how {
            How::Created => "record",
            How::Adopted => "record the adoption of",
        };
        Ok(SqlStatement::new(
            format!(
                "COMMENT ON {kind} {quoted} IS {}",
                literal(&owner.mark(how))?
            ),
            format!("{word} {} as {}", self.describe(), owner.resource),
        ))
    }
}

/// An existing role, as [`role_columns`] report it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExistingRole {
    /// Its comment.
    pub(crate) comment: Option<String>,
    /// The attributes it has of SUPERUSER, CREATEROLE, REPLICATION, BYPASSRLS.
    pub(crate) privileges: Vec<&'static str>,
}

impl ExistingRole {
    /// Reads [`role_columns`] from the first row of `result`.
    pub(crate) fn from_row(result: &wasm_operator_sdk::QueryResult) -> Self {
        let privileges = [
            ("role_superuser", "SUPERUSER"),
            ("role_createrole", "CREATEROLE"),
            ("role_replication", "REPLICATION"),
            ("role_bypassrls", "BYPASSRLS"),
        ]
        .into_iter()
        .filter(|(column, _)| crate::rows::flag(result, column))
        .map(|(_, attribute)| attribute)
        .collect();
        Self {
            comment: crate::rows::text(result, "role_mark"),
            privileges,
        }
    }
}

/// What a resource may do with an object it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// It does not exist: create it, with the resource's mark.
    Create,
    /// It carries the resource's mark.
    Owned(How),
    /// It exists unmarked and may be adopted: mark it, then manage it.
    Adopt,
    /// A database created for the resource whose mark was not written (the
    /// reconcile stopped between `CREATE DATABASE` and the comment): mark it
    /// as created.
    Resume,
}

/// Whether the server lets resources take objects that exist unmarked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Adoption {
    /// `spec.adoptExisting` of the PostgresServer.
    pub(crate) allowed: bool,
}

/// Decides what `owner` may do with `target` on server `key`, given its
/// comment when it exists (`Some(None)`: exists, no comment).
///
/// # Errors
/// `OwnedByAnother` or `AlreadyExists`, naming the object and what to do.
pub(crate) fn claim(
    target: Target<'_>,
    existing: Option<Option<&str>>,
    owner: &Owner,
    key: &str,
    adoption: Adoption,
) -> Result<Claim, PluginError> {
    let Some(comment) = existing else {
        return Ok(Claim::Create);
    };
    match comment.and_then(Mark::parse) {
        Some(mark) if mark.uid == owner.uid => Ok(Claim::Owned(mark.how)),
        Some(mark) => Err(PluginError::permanent(
            OWNED_BY_ANOTHER,
            format!(
                "{} on server {key} belongs to {} (uid {}); a second resource gets access \
                 through a DatabaseUser with access: owner, not by naming it",
                target.describe(),
                mark.resource,
                mark.uid
            ),
        )),
        None if adoption.allowed => Ok(Claim::Adopt),
        None => Err(PluginError::permanent(
            ALREADY_EXISTS,
            format!(
                "{} already exists on server {key} and was not created by wasm-operator; \
                 choose another name, or set spec.adoptExisting: true on PostgresServer {key} \
                 to let resources adopt existing roles and databases (adopted ones are never \
                 dropped)",
                target.describe()
            ),
        )),
    }
}

/// [`claim`] for a role, which must also lack the attributes the operator
/// never manages.
///
/// # Errors
/// `PrivilegedRole` naming the attribute, or as [`claim`].
pub(crate) fn claim_role(
    name: &str,
    existing: Option<&ExistingRole>,
    owner: &Owner,
    key: &str,
    adoption: Adoption,
) -> Result<Claim, PluginError> {
    if let Some(attribute) = existing.and_then(|role| role.privileges.first()) {
        return Err(PluginError::permanent(
            PRIVILEGED_ROLE,
            format!(
                "role {name:?} on server {key} has {attribute}; wasm-operator never manages \
                 roles with SUPERUSER, CREATEROLE, REPLICATION or BYPASSRLS: choose another name"
            ),
        ));
    }
    claim(
        Target::Role(name),
        existing.map(|role| role.comment.as_deref()),
        owner,
        key,
        adoption,
    )
}

/// [`claim`] for a database whose owner role `owner_role` was claimed as
/// `role_claim`: an unmarked database owned by a role this resource created
/// is one it created and did not get to mark (such a role has no CREATEDB:
/// only an administrator could have made it the owner of another).
///
/// # Errors
/// As [`claim`].
pub(crate) fn claim_database(
    name: &str,
    existing: Option<(Option<&str>, Option<&str>)>,
    owner_role: &str,
    role_claim: Claim,
    owner: &Owner,
    key: &str,
    adoption: Adoption,
) -> Result<Claim, PluginError> {
    if let Some((comment, database_owner)) = existing
        && comment.and_then(Mark::parse).is_none()
        && database_owner == Some(owner_role)
        && role_claim == Claim::Owned(How::Created)
    {
        return Ok(Claim::Resume);
    }
    claim(
        Target::Database(name),
        existing.map(|(comment, _)| comment),
        owner,
        key,
        adoption,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn owner(uid: &str) -> Owner {
        Owner::of(&Object::new(json!({
            "apiVersion": "systems.mikemiller.tech/v1alpha1", "kind": "Database",
            "metadata": {"name": "app", "namespace": "apps", "uid": uid}
        })))
        .unwrap()
    }

    const KEY: &str = "infra/main";
    const REFUSE: Adoption = Adoption { allowed: false };
    const ADOPT: Adoption = Adoption { allowed: true };

    #[test]
    fn a_mark_reads_back_as_written_and_other_comments_are_no_mark() {
        let me = owner("u-1");
        let created = Mark::parse(&me.mark(How::Created)).unwrap();
        assert_eq!(
            (created.how, created.resource.as_str(), created.uid.as_str()),
            (How::Created, "Database apps/app", "u-1")
        );
        assert_eq!(
            Mark::parse(&me.mark(How::Adopted)).unwrap().how,
            How::Adopted
        );
        for other in [
            "payments team",
            "wasm-operator: created for Database apps/app",
            "wasm-operator: created for Database apps/app (uid )",
            "wasm-operator: owned by Database apps/app (uid u-1)",
            "",
        ] {
            assert_eq!(Mark::parse(other), None, "{other:?}");
        }
    }

    #[test]
    fn only_the_creator_may_drop() {
        let me = owner("u-1");
        assert!(Mark::created_by(Some(&me.mark(How::Created)), &me));
        assert!(!Mark::created_by(Some(&me.mark(How::Adopted)), &me));
        assert!(!Mark::created_by(
            Some(&owner("u-2").mark(How::Created)),
            &me
        ));
        assert!(!Mark::created_by(None, &me));
        assert!(!Mark::created_by(Some("hand-made"), &me));
    }

    #[test]
    fn claims_follow_the_mark_and_the_servers_adoption_policy() {
        let me = owner("u-1");
        let target = Target::Database("app");
        let mine = me.mark(How::Created);
        assert_eq!(claim(target, None, &me, KEY, REFUSE), Ok(Claim::Create));
        assert_eq!(
            claim(target, Some(Some(&mine)), &me, KEY, REFUSE),
            Ok(Claim::Owned(How::Created))
        );
        let other = owner("u-2").mark(How::Created);
        let refused = claim(target, Some(Some(&other)), &me, KEY, ADOPT).unwrap_err();
        assert_eq!(refused.reason, OWNED_BY_ANOTHER);
        assert!(
            refused.message.contains("Database apps/app (uid u-2)"),
            "{}",
            refused.message
        );
        let refused = claim(target, Some(None), &me, KEY, REFUSE).unwrap_err();
        assert_eq!(refused.reason, ALREADY_EXISTS);
        assert!(refused.message.contains("spec.adoptExisting"));
        assert_eq!(
            claim(target, Some(Some("hand-made")), &me, KEY, ADOPT),
            Ok(Claim::Adopt)
        );
    }

    #[test]
    fn an_unmarked_database_is_resumed_only_when_its_owner_is_a_role_this_resource_created() {
        let me = owner("u-1");
        let created = Claim::Owned(How::Created);
        let unmarked = Some((None, Some("foo")));
        assert_eq!(
            claim_database("app", unmarked, "foo", created, &me, KEY, REFUSE),
            Ok(Claim::Resume)
        );
        for (existing, role_claim) in [
            (Some((None, Some("bar"))), created),
            (unmarked, Claim::Owned(How::Adopted)),
            (unmarked, Claim::Create),
            (unmarked, Claim::Adopt),
        ] {
            let refused =
                claim_database("app", existing, "foo", role_claim, &me, KEY, REFUSE).unwrap_err();
            assert_eq!(refused.reason, ALREADY_EXISTS);
        }
        let other = owner("u-2").mark(How::Created);
        let refused = claim_database(
            "app",
            Some((Some(&other), Some("foo"))),
            "foo",
            created,
            &me,
            KEY,
            ADOPT,
        )
        .unwrap_err();
        assert_eq!(refused.reason, OWNED_BY_ANOTHER);
    }

    #[test]
    fn privileged_roles_are_refused_whoever_marked_them() {
        let me = owner("u-1");
        for attribute in ["SUPERUSER", "CREATEROLE", "REPLICATION", "BYPASSRLS"] {
            for comment in [None, Some(me.mark(How::Created))] {
                let role = ExistingRole {
                    comment: comment.clone(),
                    privileges: vec![attribute],
                };
                let refused = claim_role("dba", Some(&role), &me, KEY, ADOPT).unwrap_err();
                assert_eq!(refused.reason, PRIVILEGED_ROLE);
                assert!(refused.message.contains(attribute), "{}", refused.message);
            }
        }
    }

    #[test]
    fn the_mark_statement_quotes_the_name_and_the_comment() {
        let statement = Target::Role("we\"ird")
            .mark(&owner("u-1"), How::Created)
            .unwrap();
        assert_eq!(
            statement.statement,
            "COMMENT ON ROLE \"we\"\"ird\" IS 'wasm-operator: created for Database apps/app (uid u-1)'"
        );
        assert!(!statement.sensitive && !statement.non_transactional);
    }
}
