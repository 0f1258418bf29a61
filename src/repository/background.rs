//! A version's background rows for explanations: `background.json` beside the model, or, when
//! there is none, an approximation from the reference profile's quantile bins.

use std::sync::Arc;

use super::layout::{VersionDir, PROFILE_FILE};
use crate::contract::{FeatureType, InputContract, ModelContract};
use crate::explain::{Background, Bins};
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
    let (names, text): (Vec<String>, Vec<bool>) = match &contract.input {
        InputContract::Tabular { features, .. } => {
            features.iter().map(|f| (f.name.clone(), false)).unzip()
        }
        // A DataFrame export: one input per card feature, strings included.
        InputContract::Tensors { .. } if contract.one_input_per_column() => contract
            .columns
            .iter()
            .map(|c| (c.spec.name.clone(), c.spec.kind == FeatureType::String))
            .unzip(),
        InputContract::Tensors { .. } => {
            return Err("only models of named features have a background".into())
        }
    };
    let file = dir.model_file.with_file_name(BACKGROUND_FILE);
    let background = if file.is_file() {
        Background::read(&file, &names, &text, MAX_FILE_ROWS)
    } else if let Some(profile) = &dir.profile_file {
        from_profile(profile, &names, &text)
    } else {
        return Err(format!(
            "no {BACKGROUND_FILE} or {PROFILE_FILE} beside the model"
        ));
    };
    background.map(Arc::new).inspect_err(|reason| {
        tracing::warn!(model, version = dir.version, %reason, "no background for explanations");
    })
}

fn from_profile(
    path: &std::path::Path,
    names: &[String],
    text: &[bool],
) -> Result<Background, String> {
    let profile = ReferenceProfile::read(path)?;
    let profiled: Vec<&String> = profile.features.iter().map(|f| &f.name).collect();
    if profiled.iter().copied().ne(names.iter()) {
        return Err(format!(
            "{}: features differ from the model card's",
            path.display()
        ));
    }
    let mut bins = Vec::with_capacity(names.len());
    for (f, &is_text) in profile.features.iter().zip(text) {
        bins.push(match (f.categories.is_empty(), is_text) {
            (true, false) => Bins::Numbers {
                edges: f.edges.clone(),
                shares: f.shares.clone(),
            },
            (false, true) => Bins::Categories {
                categories: f.categories.clone(),
                shares: f.shares.clone(),
            },
            (true, true) => {
                return Err(format!(
                    "{}: string feature {:?} is profiled without categories",
                    path.display(),
                    f.name
                ))
            }
            // Categories of a number column (an integer code): not a background value.
            (false, false) => {
                return Err(format!(
                    "{}: number feature {:?} is profiled by categories; write a {BACKGROUND_FILE}",
                    path.display(),
                    f.name
                ))
            }
        });
    }
    Background::from_quantiles(
        &bins,
        PROFILE_ROWS,
        format!(
            "{PROFILE_FILE} quantiles ({PROFILE_ROWS} rows; approximate: features vary together)"
        ),
    )
}
