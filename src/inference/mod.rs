//! From request instances to predictions, independent of any protocol: the model contract,
//! instance decoding, the predictor service, and output presentation.

mod capture_hook;
mod class_names;
mod contract;
mod error;
mod explain_error;
mod explain_subject;
mod explainer;
mod instances;
mod json_instance;
mod prediction;
mod predictor;
mod shadow;
mod tensors;
mod traffic;

pub use crate::monitoring::Protocol;
pub use contract::{FeatureSpec, InputContract, ModelContract, OutputContract};
pub use error::PredictError;
pub use explain_error::ExplainError;
pub use explainer::{
    ExplainLimits, ExplainOptions, ExplainOutcome, Explainer, InstanceExplanation, MethodChoice,
    DEFAULT_PATCH,
};
pub use instances::{decode as decode_instances, ContractViolation, ViolationKind};
pub use json_instance::Instance;
pub use prediction::{predictions, Prediction, RawOutput};
pub use predictor::{InferOutcome, Limits, PredictOutcome, Predictor, Target};
pub use shadow::{compare, Mirror};
pub use tensors::{check_tensors, InputTensor};
pub use traffic::{Routed, Traffic};
