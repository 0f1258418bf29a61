//! A version's background rows for explanations: `background.json` beside the model, or, when
//! there is none, an approximation from the reference profile's quantile bins.

use std::sync::Arc;

use super::layout::{VersionDir, PROFILE_FILE};
use crate::contract::{InputContract, ModelContract};
use crate::explain::Background;
use crate::monitoring::ReferenceProfile;

/// The background file beside `model.onnx`.
pub const BACKGROUND_FILE: &str = "background.json";
/// Most rows read from a background file (requests use at most `--explain-max-background-rows`).
const MAX_FILE_ROWS: usize = 1024;
/// Rows of the approximate background built from the profile's quantiles.
const PROFILE_ROWS: usize = 10;

/// The version's background, or why it has none (tensor models, no file and no profile, or an
/// unusable file: logged, since the repository is then inconsistent).
pub fn load_background(
    model: &str,
    dir: &VersionDir,
    contract: &ModelContract,
) -> Result<Arc<Background>, String> {
    let InputContract::Tabular { features, .. } = &contract.input else {
        return Err("only tabular models have a background".into());
    };
    let names: Vec<String> = features.iter().map(|f| f.name.clone()).collect();
    let file = dir.model_file.with_file_name(BACKGROUND_FILE);
    let background = if file.is_file() {
        Background::read(&file, &names, MAX_FILE_ROWS)
    } else if let Some(profile) = &dir.profile_file {
        from_profile(profile, &names)
    } else {
        return Err(format!(
            "no {BACKGROUND_FILE} or {PROFILE_FILE} beside the model"
        ));
    };
    background.map(Arc::new).inspect_err(|reason| {
        tracing::warn!(model, version = dir.version, %reason, "no background for explanations");
    })
}

fn from_profile(path: &std::path::Path, names: &[String]) -> Result<Background, String> {
    let profile = ReferenceProfile::read(path)?;
    let profiled: Vec<&String> = profile.features.iter().map(|f| &f.name).collect();
    if profiled.iter().copied().ne(names.iter()) {
        return Err(format!(
            "{}: features differ from the model card's",
            path.display()
        ));
    }
    let bins: Vec<(Vec<f64>, Vec<f64>)> = profile
        .features
        .iter()
        .map(|f| (f.edges.clone(), f.shares.clone()))
        .collect();
    Background::from_quantiles(
        &bins,
        PROFILE_ROWS,
        format!(
            "{PROFILE_FILE} quantiles ({PROFILE_ROWS} rows; approximate: features vary together)"
        ),
    )
}
