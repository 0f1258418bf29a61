//! The model repository: directory layout, manifests (model cards), loading, the live catalog of
//! versions, and golden checks.

mod background;
mod catalog;
mod error;
mod golden;
mod layout;
mod loader;
pub mod manifest;

pub use background::BACKGROUND_FILE;
pub use catalog::{Catalog, LoadedVersion, ModelEntry, ModelStore, ResolveError, VersionState};
pub use error::RepositoryError;
pub use golden::{check as check_golden, GoldenFile, GoldenReport};
pub use layout::{scan, valid_model_name, Layout, ModelDir, VersionDir};
pub use loader::{initial_catalog, load_all, load_version, LoadContext};
pub use manifest::{
    Batching, Evaluation, Feature, Manifest, Monitoring, OutputNames, Task, TrainingData,
};
