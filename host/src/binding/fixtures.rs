//! Test fixtures shared by the binding modules' unit tests.

use serde_json::json;

use crate::crd::ReconcilerPlugin;

/// A binding at generation 3 loading from ConfigMap `ns/cm`, key `k`.
pub(super) fn binding() -> ReconcilerPlugin {
    serde_json::from_value(json!({
        "apiVersion": "systems.mikemiller.tech/v1alpha1",
        "kind": "ReconcilerPlugin",
        "metadata": {"name": "greeting", "generation": 3},
        "spec": {"source": {"configMap": {"namespace": "ns", "name": "cm", "key": "k"}}},
    }))
    .unwrap()
}
