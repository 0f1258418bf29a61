//! The model repository: directory layout, manifests (model cards), loading, the live catalog of
//! versions, and golden checks.

mod background;
mod capture_card;
mod catalog;
mod class_names;
mod contract_build;
mod error;
pub mod feature_card;
mod gate;
mod gate_stage;
mod golden;
mod layout;
mod loader;
pub mod manifest;
mod reload;
mod runtime_card;
pub mod traffic;
mod traffic_admin;
mod watch;

pub use background::BACKGROUND_FILE;
pub use catalog::{Catalog, LoadedVersion, ModelEntry, ModelStore, ResolveError, VersionState};
pub use contract_build::build_contract;
pub use error::RepositoryError;
pub use feature_card::{Category, FeatureType, UnknownCategories};
pub use gate::{
    compatible, evaluate as evaluate_gate, score as score_eval, EvalScore, EvalSet, GateReport,
    GateStage, StageResult,
};
pub use golden::{check as check_golden, GoldenFile, GoldenReport};
pub use layout::{scan, valid_model_name, Layout, ModelDir, VersionDir};
pub use loader::{initial_catalog, load_version, LoadContext};
pub use manifest::{
    Batching, CaptureCard, Evaluation, Feature, Gate, Manifest, Monitoring, OutputNames,
    PolicyKind, Runtime, Task, TrainingData, Versions,
};
pub use reload::{AdminError, Change, ReloadReport, Reloader};
pub use traffic::{Canary, RollbackRule, Shadow, TrafficPlan};
pub use traffic_admin::RollbackTrigger;
pub use watch::{watch, RepositoryWatcher, WatchConfig};
