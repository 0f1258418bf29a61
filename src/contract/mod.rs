//! A model version's contract: what its instances and tensors must look like and how its outputs
//! are presented, plus the codecs that apply it. The repository builds a contract when it loads
//! a version (the card checked against the graph: `repository/contract_build.rs`) and stores it
//! in the catalog; `inference` decodes requests and presents answers with it; the validation gate
//! uses the same codecs on golden and evaluation rows. Depends only on `engine`.

mod bounded_lists;
mod columns;
mod decode_budget;
mod instances;
mod json_instance;
mod list_limits;
mod map_instances;
mod prediction;
mod tensors;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::engine::{DataType, ModelSignature, TensorSpec};

pub use bounded_lists::{bounded_inputs, bounded_outputs, bounded_parameters, bounded_shape};
pub use columns::{check_columns, CategorySet, Column, FeatureSpec, FeatureType, Unseen};
pub use decode_budget::{at_most, bounded_data, bounded_instances, within, DecodeBudget, Overrun};
pub use instances::{ContractViolation, ViolationKind};
pub use json_instance::Instance;
pub use list_limits::{ListLimits, RequestList};
pub use map_instances::map_elements;
pub use prediction::{predictions, Prediction, RawOutput};
pub use tensors::{check_tensors, protocol_outputs, InputTensor};

/// Turns `instances` into one tensor per model input (batch dimension first): one JSON object
/// per instance for a model whose only input is a map (`map_instances.rs`), rows of features or
/// tensors otherwise (`instances.rs`).
pub fn decode_instances(
    contract: &InputContract,
    instances: &[Instance],
) -> Result<Vec<crate::engine::Tensor>, ContractViolation> {
    if let InputContract::Tensors { inputs } = contract {
        if let Some(map) = map_instances::single_map(inputs) {
            return map_instances::decode(&map, instances);
        }
    }
    instances::decode(contract, instances)
}

/// What kind of answer a model gives; decides how its outputs are presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Class index, label name and per-class probabilities.
    Classification,
    /// One number per instance.
    Regression,
    /// The output tensors as they are.
    Raw,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
            Task::Raw => "raw",
        }
    }
}

/// How instances are read.
#[derive(Debug, Clone, PartialEq)]
pub enum InputContract {
    /// One float input `[batch, F]`: an instance is an array of F numbers, or, when the manifest
    /// names the features, an object of them.
    Tabular {
        features: Vec<FeatureSpec>,
        /// Feature name -> column, when the manifest names the features.
        index: HashMap<String, usize>,
        dtype: DataType,
    },
    /// Any other graph: an instance is a (nested) array for a single-input model, or an object
    /// keyed by input name.
    Tensors { inputs: Vec<TensorSpec> },
}

impl InputContract {
    /// True when some input has a variable dimension besides the batch: an instance's size is
    /// then known only from the request.
    pub fn has_variable_rows(&self) -> bool {
        match self {
            InputContract::Tabular { .. } => false,
            InputContract::Tensors { inputs } => inputs.iter().any(TensorSpec::has_variable_rows),
        }
    }

    /// Elements one instance carries across all inputs (from the contract, not the request;
    /// variable dimensions count as 1).
    /// Saturates: a contract too large to count is refused by any finite limit.
    pub fn row_elements(&self) -> usize {
        match self {
            InputContract::Tabular { features, .. } => features.len(),
            InputContract::Tensors { inputs } => inputs
                .iter()
                .map(|s| {
                    s.row_shape()
                        .iter()
                        .fold(1usize, |a, d| a.saturating_mul(*d))
                })
                .fold(0usize, usize::saturating_add),
        }
    }
}

/// How outputs are presented.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputContract {
    Classification {
        /// Index of the integer class output, when the graph has one (else argmax).
        label: Option<usize>,
        /// Index of the `[batch, classes]` probability output.
        probabilities: usize,
        /// Class index -> name.
        labels: Vec<String>,
    },
    Regression {
        value: usize,
    },
    Raw,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelContract {
    pub task: Task,
    pub input: InputContract,
    pub output: OutputContract,
    pub signature: ModelSignature,
    /// The card's features and where each one's values are in the input tensors (empty when
    /// the card names none): typed checks and categorical drift read them (`columns.rs`).
    pub columns: Vec<Column>,
}

impl ModelContract {
    /// Whether the card's features are the graph's inputs, one value per instance each (a
    /// DataFrame export), rather than the columns of one tabular input.
    pub fn one_input_per_column(&self) -> bool {
        matches!(self.input, InputContract::Tensors { .. }) && !self.columns.is_empty()
    }

    /// Names of the classes, for classifiers.
    pub fn labels(&self) -> &[String] {
        match &self.output {
            OutputContract::Classification { labels, .. } => labels,
            _ => &[],
        }
    }
}
