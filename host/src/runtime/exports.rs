//! The functions a component exports, found under the contract version it
//! was built for and called with the host's (newest) types.
//!
//! bindgen's generated `GuestIndices` look exports up under the newest
//! version's names only (`…/reconciler@0.2.0`), which a 0.1.0 component
//! does not have. Within a major version the contract only grows, so an
//! older version's functions have the same types as the newest's; wasmtime
//! checks typed functions structurally (record field names and types, not
//! type names), so the newest bindings call them safely, and a component
//! whose types differ is refused with wasmtime's type error, never
//! misread.

use wasmtime::Store;
use wasmtime::component::{Component, ComponentExportIndex, Instance};

use super::bindings::{admission, admission_info, reconciler, types};
use super::contract::ContractInfo;
use super::sandbox::CallState;

/// Looks up `names` in the export `interface` (a full, versioned name).
fn find<const N: usize>(
    component: &Component,
    interface: &str,
    names: [&str; N],
) -> Result<[ComponentExportIndex; N], String> {
    let instance = component
        .get_export_index(None, interface)
        .ok_or_else(|| interface.to_owned())?;
    let mut found = [instance; N];
    for (slot, name) in found.iter_mut().zip(names) {
        *slot = component
            .get_export_index(Some(&instance), name)
            .ok_or_else(|| format!("{interface}#{name}"))?;
    }
    Ok(found)
}

/// The exports of one component: what the contract check found, indexed.
#[derive(Clone, Copy)]
pub(crate) struct Exports {
    /// `reconciler`, when the component reconciles.
    pub(crate) reconciler: Option<Reconciler>,
    /// `admission`, when it admits.
    pub(crate) admission: Option<Admission>,
    /// `admission-info`, when it describes what it admits.
    pub(crate) admission_info: Option<AdmissionInfo>,
}

impl Exports {
    /// Indexes the exports `contract` found.
    ///
    /// # Errors
    /// The export (`interface#function`) that is missing.
    pub(crate) fn find(component: &Component, contract: &ContractInfo) -> Result<Self, String> {
        let name = |interface| contract.export_name(interface);
        let reconciler = contract
            .reconciles
            .then(|| {
                find(
                    component,
                    &name("reconciler"),
                    ["describe", "reconcile", "finalize"],
                )
            })
            .transpose()?
            .map(|[describe, reconcile, finalize]| Reconciler {
                describe,
                reconcile,
                finalize,
            });
        let admission = contract
            .offers_admission
            .then(|| find(component, &name("admission"), ["validate", "mutate"]))
            .transpose()?
            .map(|[validate, mutate]| Admission { validate, mutate });
        let admission_info = contract
            .describes_admission
            .then(|| find(component, &name("admission-info"), ["describe"]))
            .transpose()?
            .map(|[describe]| AdmissionInfo { describe });
        Ok(Self {
            reconciler,
            admission,
            admission_info,
        })
    }

    /// Type-checks every exported function the host calls against the
    /// host's types, on a live instance: a component whose types differ
    /// from the contract's is refused at load time rather than failing its
    /// first reconcile.
    ///
    /// # Errors
    /// wasmtime's type error, naming the function.
    pub(crate) fn typecheck(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
    ) -> wasmtime::Result<()> {
        let context = |function: &'static str| move |e: wasmtime::Error| e.context(function);
        if let Some(r) = &self.reconciler {
            instance
                .get_typed_func::<(), (reconciler::PluginInfo,)>(&mut *store, r.describe)
                .map_err(context("reconciler#describe"))?;
            instance
                .get_typed_func::<(&reconciler::ReconcileRequest,), (Reconciled,)>(
                    &mut *store,
                    r.reconcile,
                )
                .map_err(context("reconciler#reconcile"))?;
            instance
                .get_typed_func::<(&reconciler::ReconcileRequest,), (Finalized,)>(
                    &mut *store,
                    r.finalize,
                )
                .map_err(context("reconciler#finalize"))?;
        }
        if let Some(a) = &self.admission {
            instance
                .get_typed_func::<(&admission::AdmissionRequest,), (Validated,)>(
                    &mut *store,
                    a.validate,
                )
                .map_err(context("admission#validate"))?;
            instance
                .get_typed_func::<(&admission::AdmissionRequest,), (Mutated,)>(
                    &mut *store,
                    a.mutate,
                )
                .map_err(context("admission#mutate"))?;
        }
        if let Some(i) = &self.admission_info {
            instance
                .get_typed_func::<(), (admission_info::AdmitterInfo,)>(&mut *store, i.describe)
                .map_err(context("admission-info#describe"))?;
        }
        Ok(())
    }
}

type Reconciled = Result<reconciler::ReconcileResponse, types::PluginError>;
type Finalized = Result<reconciler::FinalizeResponse, types::PluginError>;
type Validated = Result<admission::Validation, types::PluginError>;
type Mutated = Result<admission::Mutation, types::PluginError>;

/// The functions of an exported `reconciler`.
#[derive(Clone, Copy)]
pub(crate) struct Reconciler {
    describe: ComponentExportIndex,
    reconcile: ComponentExportIndex,
    finalize: ComponentExportIndex,
}

impl Reconciler {
    /// Calls `describe`.
    pub(crate) async fn describe(
        self,
        store: &mut Store<CallState>,
        instance: &Instance,
    ) -> wasmtime::Result<reconciler::PluginInfo> {
        let func =
            instance.get_typed_func::<(), (reconciler::PluginInfo,)>(&mut *store, self.describe)?;
        Ok(func.call_async(store, ()).await?.0)
    }

    /// Calls `reconcile`.
    pub(crate) async fn reconcile(
        self,
        store: &mut Store<CallState>,
        instance: &Instance,
        request: &reconciler::ReconcileRequest,
    ) -> wasmtime::Result<Reconciled> {
        let func = instance.get_typed_func::<(&reconciler::ReconcileRequest,), (Reconciled,)>(
            &mut *store,
            self.reconcile,
        )?;
        Ok(func.call_async(store, (request,)).await?.0)
    }

    /// Calls `finalize`.
    pub(crate) async fn finalize(
        self,
        store: &mut Store<CallState>,
        instance: &Instance,
        request: &reconciler::ReconcileRequest,
    ) -> wasmtime::Result<Finalized> {
        let func = instance.get_typed_func::<(&reconciler::ReconcileRequest,), (Finalized,)>(
            &mut *store,
            self.finalize,
        )?;
        Ok(func.call_async(store, (request,)).await?.0)
    }
}

/// The functions of an exported `admission`.
#[derive(Clone, Copy)]
pub(crate) struct Admission {
    validate: ComponentExportIndex,
    mutate: ComponentExportIndex,
}

impl Admission {
    /// Calls `validate`.
    pub(crate) async fn validate(
        self,
        store: &mut Store<CallState>,
        instance: &Instance,
        request: &admission::AdmissionRequest,
    ) -> wasmtime::Result<Validated> {
        let func = instance.get_typed_func::<(&admission::AdmissionRequest,), (Validated,)>(
            &mut *store,
            self.validate,
        )?;
        Ok(func.call_async(store, (request,)).await?.0)
    }

    /// Calls `mutate`.
    pub(crate) async fn mutate(
        self,
        store: &mut Store<CallState>,
        instance: &Instance,
        request: &admission::AdmissionRequest,
    ) -> wasmtime::Result<Mutated> {
        let func = instance.get_typed_func::<(&admission::AdmissionRequest,), (Mutated,)>(
            &mut *store,
            self.mutate,
        )?;
        Ok(func.call_async(store, (request,)).await?.0)
    }
}

/// The function of an exported `admission-info`.
#[derive(Clone, Copy)]
pub(crate) struct AdmissionInfo {
    describe: ComponentExportIndex,
}

impl AdmissionInfo {
    /// Calls `describe`.
    pub(crate) async fn describe(
        self,
        store: &mut Store<CallState>,
        instance: &Instance,
    ) -> wasmtime::Result<admission_info::AdmitterInfo> {
        let func = instance
            .get_typed_func::<(), (admission_info::AdmitterInfo,)>(&mut *store, self.describe)?;
        Ok(func.call_async(store, ()).await?.0)
    }
}
