//! Watch caches a controller reads from instead of the API server: one per
//! kind, serving the children of each declared kind (indexed by owner) and
//! the plugin's reads. A reconcile then costs no API call unless it writes.
//!
//! Cached objects carry no `managedFields` ([`slim`]): nothing here reads
//! them, and they are often half an object's size. The host's own writes
//! are read through ([`fresh`]) until the watch delivers them.

mod fresh;
mod kind;
mod reads;
mod slim;

pub(super) use fresh::WrittenObjects;
pub(super) use kind::KindCache;
pub use kind::NotSynced;
pub(super) use reads::ReadCaches;
pub(super) use slim::slim;
