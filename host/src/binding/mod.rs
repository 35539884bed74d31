//! Bindings: a `ReconcilerPlugin` binds a plugin component to the kind it
//! reconciles, with settings, limits and grants.
//!
//! In data-path order: [`load`] turns a binding's component into a
//! [`BoundPlugin`] (reading, pinning, loading, checking settings, computing
//! grants); [`status`] reports the outcome on the binding; the
//! [`supervisor`] follows every binding and the ConfigMap it points at and
//! keeps its controller on the newest good version (a [`controller`] that
//! cannot start is started again until it can), handing versions over
//! through a [`live`] channel and in a map by name ([`InService`]) that the
//! admission server reads.

mod bound;
mod controller;
#[cfg(test)]
mod fixtures;
mod follow;
mod in_service;
mod live;
mod load;
mod signal;
mod status;
mod supervisor;

pub use bound::BoundPlugin;
pub use controller::{ControllerStartError, StartController, StartReport};
pub use in_service::InService;
pub use live::{BindingPublisher, LiveBinding, Published, channel};
pub use load::{
    BindingError, MAX_COMPONENT_BYTES, bind, check_pin, check_replaces, check_size, component_in,
    grants_for, load, read_file, validate_settings,
};
pub use signal::{Shutdown, shutdown_signal};
pub use status::{BindingState, record_status, status_for};
pub use supervisor::{ReloadError, Reloader};
