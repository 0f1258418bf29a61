//! Errors of the model repository.

use std::path::Path;

use thiserror::Error;

use crate::engine::EngineError;

#[derive(Debug, Error)]
pub enum RepositoryError {
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },

    #[error("invalid manifest {path}: {reason}")]
    Manifest { path: String, reason: String },

    #[error("invalid repository config {path}: {reason}")]
    Config { path: String, reason: String },

    #[error("model {model} version {version}: the manifest contradicts the graph: {reason}")]
    Contract {
        model: String,
        version: u64,
        reason: String,
    },

    #[error("model {model} version {version}: {source}")]
    Engine {
        model: String,
        version: u64,
        #[source]
        source: EngineError,
    },

    #[error("model {model} version {version}: warm-up failed: {reason}")]
    WarmUp {
        model: String,
        version: u64,
        reason: String,
    },

    #[error("model {0} has no versions (expected <repository>/{0}/<version>/model.onnx)")]
    NoVersions(String),

    #[error("the default model {0:?} is not in the repository")]
    UnknownDefault(String),

    #[error("model {model} version {version} not admitted: {reason}")]
    NotAdmitted {
        model: String,
        version: u64,
        reason: String,
    },

    #[error("golden file {path}: {reason}")]
    Golden { path: String, reason: String },
}

impl RepositoryError {
    pub(crate) fn io(path: &Path, e: &std::io::Error) -> RepositoryError {
        RepositoryError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    }
}
