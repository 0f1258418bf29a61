//! The model repository on disk:
//!
//! ```text
//! <root>/repository.toml            optional: default_model = "name"
//! <root>/<model>/model.toml         optional manifest (model card + contract)
//! <root>/<model>/<version>/model.onnx
//! <root>/<model>/<version>/golden.json   optional golden inputs + reference outputs
//! ```
//! Versions are positive integers; the highest serves by default. A subdirectory holding its own
//! `repository.toml` is a separate repository (e.g. `models/conformance/`), not a model.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::RepositoryError;
use super::manifest::Manifest;

pub const MANIFEST_FILE: &str = "model.toml";
pub const MODEL_FILE: &str = "model.onnx";
pub const GOLDEN_FILE: &str = "golden.json";
/// The reference profile beside a model version, for drift monitoring.
pub const PROFILE_FILE: &str = "profile.json";
pub const REPOSITORY_FILE: &str = "repository.toml";
/// Labelled evaluation rows beside a model version, for the validation gate.
pub const EVAL_FILE: &str = "eval.json";

/// `repository.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepositoryConfig {
    default_model: Option<String>,
}

/// What a scan of the repository found.
#[derive(Debug)]
pub struct Layout {
    pub root: PathBuf,
    pub default_model: Option<String>,
    pub models: Vec<ModelDir>,
}

#[derive(Debug)]
pub struct ModelDir {
    pub name: String,
    /// The parsed manifest, None when there is none, or why it could not be read.
    pub manifest: Result<Option<Manifest>, String>,
    /// Sorted by version number.
    pub versions: Vec<VersionDir>,
}

#[derive(Debug, Clone)]
pub struct VersionDir {
    pub version: u64,
    pub model_file: PathBuf,
    pub golden_file: Option<PathBuf>,
    /// `profile.json`: the reference profile of the training data, for drift monitoring.
    pub profile_file: Option<PathBuf>,
    /// `eval.json`: labelled rows the validation gate scores the version on.
    pub eval_file: Option<PathBuf>,
}

/// Model names: what may appear in a URL path segment and a metric label.
pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Reads the directory structure and manifests (no model is loaded here).
pub fn scan(root: &Path) -> Result<Layout, RepositoryError> {
    let entries = std::fs::read_dir(root).map_err(|e| RepositoryError::io(root, &e))?;
    let config = read_config(&root.join(REPOSITORY_FILE))?;
    let mut models = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| RepositoryError::io(root, &e))?;
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if !path.is_dir() || name.starts_with('.') {
            continue;
        }
        if path.join(REPOSITORY_FILE).is_file() {
            tracing::debug!(dir = %path.display(), "skipping nested model repository");
            continue;
        }
        if !valid_model_name(&name) {
            tracing::warn!(dir = %path.display(), "skipping directory: not a valid model name");
            continue;
        }
        models.push(scan_model(&path, name)?);
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Layout {
        root: root.to_path_buf(),
        default_model: config.default_model,
        models,
    })
}

fn read_config(path: &Path) -> Result<RepositoryConfig, RepositoryError> {
    if !path.exists() {
        return Ok(RepositoryConfig::default());
    }
    let text = std::fs::read_to_string(path).map_err(|e| RepositoryError::io(path, &e))?;
    toml::from_str(&text).map_err(|e| RepositoryError::Config {
        path: path.display().to_string(),
        reason: e.message().to_string(),
    })
}

fn scan_model(dir: &Path, name: String) -> Result<ModelDir, RepositoryError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest = if manifest_path.exists() {
        Manifest::read(&manifest_path)
            .map(Some)
            .map_err(|e| e.to_string())
    } else {
        Ok(None)
    };
    let mut versions = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| RepositoryError::io(dir, &e))? {
        let path = entry.map_err(|e| RepositoryError::io(dir, &e))?.path();
        let version = path.file_name().and_then(|n| n.to_str()).and_then(|n| {
            n.parse::<u64>()
                .ok()
                .filter(|v| *v > 0 && v.to_string() == n)
        });
        let (Some(version), true) = (version, path.is_dir()) else {
            continue;
        };
        let model_file = path.join(MODEL_FILE);
        if !model_file.is_file() {
            tracing::warn!(dir = %path.display(), "skipping version directory without {MODEL_FILE}");
            continue;
        }
        let golden = path.join(GOLDEN_FILE);
        let profile = path.join(PROFILE_FILE);
        let eval = path.join(EVAL_FILE);
        versions.push(VersionDir {
            version,
            model_file,
            golden_file: golden.is_file().then_some(golden),
            profile_file: profile.is_file().then_some(profile),
            eval_file: eval.is_file().then_some(eval),
        });
    }
    versions.sort_by_key(|v| v.version);
    Ok(ModelDir {
        name,
        manifest,
        versions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_safe_path_segments() {
        assert!(valid_model_name("iris"));
        assert!(valid_model_name("resnet-18_v2.1"));
        assert!(!valid_model_name(".hidden"));
        assert!(!valid_model_name("a/b"));
        assert!(!valid_model_name("name with space"));
        assert!(!valid_model_name(&"x".repeat(65)));
    }

    #[test]
    fn scan_finds_versions_in_order_and_skips_junk() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m");
        for v in ["2", "10", "0", "x", "01", "+3"] {
            std::fs::create_dir_all(m.join(v)).unwrap();
            std::fs::write(m.join(v).join(MODEL_FILE), b"").unwrap();
        }
        std::fs::create_dir_all(m.join("3")).unwrap(); // no model file
        std::fs::write(dir.path().join(REPOSITORY_FILE), "default_model = \"m\"\n").unwrap();
        std::fs::create_dir_all(dir.path().join("nested")).unwrap();
        std::fs::write(dir.path().join("nested").join(REPOSITORY_FILE), "").unwrap();
        let layout = scan(dir.path()).unwrap();
        assert_eq!(layout.default_model.as_deref(), Some("m"));
        assert_eq!(
            layout.models.len(),
            1,
            "the nested repository is not a model"
        );
        let versions: Vec<u64> = layout.models[0]
            .versions
            .iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(versions, vec![2, 10]);
        assert!(matches!(layout.models[0].manifest, Ok(None)));
    }
}
