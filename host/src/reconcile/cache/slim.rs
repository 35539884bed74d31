//! What the caches keep of an object.

use kube::ResourceExt;
use kube::api::DynamicObject;

/// Drops what no reader needs before an object is cached.
pub(in crate::reconcile) fn slim(object: &mut DynamicObject) {
    object.managed_fields_mut().clear();
}
