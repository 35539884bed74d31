//! Where a binding's component comes from: its ConfigMap (followed by a
//! watch of its own) or a file.

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

use super::state::Followed;
use crate::binding::load::{self, BindingError};
use crate::crd::{ConfigMapSource, ReconcilerPluginSpec};

/// The ConfigMap a spec loads from, when it names exactly that source.
pub(super) fn config_map_source(spec: &ReconcilerPluginSpec) -> Option<&ConfigMapSource> {
    match (&spec.source.config_map, &spec.source.file) {
        (Some(source), None) => Some(source),
        _ => None,
    }
}

/// The component a binding points at, given what its ConfigMap watch has
/// seen (`None` before its first list is complete; then `None` inside while
/// the ConfigMap does not exist), or `None` while that is not known yet.
pub(super) async fn component(
    spec: &ReconcilerPluginSpec,
    config_map: Option<&Option<ConfigMap>>,
) -> Option<Result<Vec<u8>, BindingError>> {
    match (config_map_source(spec), &spec.source.file) {
        (Some(source), _) => config_map.map(|cm| match cm {
            Some(cm) => load::component_in(cm, source),
            None => Err(BindingError::ConfigMapNotFound {
                namespace: source.namespace.clone(),
                name: source.name.clone(),
            }),
        }),
        (None, Some(path)) if spec.source.config_map.is_none() => Some(load::read_file(path).await),
        (None, _) => Some(Err(BindingError::Source)),
    }
}

pub(super) type ConfigMapEvents =
    BoxStream<'static, Result<watcher::Event<ConfigMap>, watcher::Error>>;

/// The next event of the ConfigMap watch, or never when there is none.
pub(super) async fn next_event(
    events: &mut Option<ConfigMapEvents>,
) -> Option<Result<watcher::Event<ConfigMap>, watcher::Error>> {
    match events {
        Some(events) => events.next().await,
        None => std::future::pending().await,
    }
}

impl Followed {
    /// Watches the ConfigMap `source`, and nothing else.
    pub(super) fn watch_config_map(&self, source: &ConfigMapSource) -> ConfigMapEvents {
        let api: Api<ConfigMap> = Api::namespaced(self.loader.client.clone(), &source.namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={}", source.name));
        watcher(api, config).default_backoff().boxed()
    }
}
