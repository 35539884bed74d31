//! The reconcile path: one controller per binding, and each reconcile as a
//! pipeline in the order data flows through it, no step calling back up:
//!
//! 1. [`gather`]: the object, its children and the servers it may use,
//!    from watch caches ([`cache`]);
//! 2. [`decide`]: the sandboxed plugin call, reading through
//!    [`plugin_reads`];
//! 3. [`check`]: the decision against the plugin's grants, in one place;
//! 4. [`execute`]: SQL plans, children applied, children pruned;
//! 5. [`report`]: status (one writer for success and failure), conditions,
//!    events.
//!
//! On deletion, step 2 calls the plugin's `finalize` and steps 3 and 4
//! carry out only its SQL; once it is done, [`release`] lets go of the
//! children marked to outlive their owner before the finalizer goes.
//!
//! [`pipeline`] strings the steps together behind the finalizer;
//! [`controller`] runs kube-runtime's `Controller` over it, with the queue
//! account ([`queue`]) and the version in service ([`versions`]).

mod budget;
mod cache;
mod check;
mod context;
mod controller;
mod decide;
mod error;
mod execute;
mod gather;
mod pipeline;
mod plugin_reads;
mod queue;
mod release;
mod report;
mod versions;

pub use cache::NotSynced;
pub use context::Settings;
pub use controller::run;
pub use error::ReconcileError;
