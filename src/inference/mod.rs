//! From request instances to predictions, independent of any protocol: the model contract,
//! instance decoding, the predictor service, and output presentation.

mod canary_run;
mod capture_hook;
mod error;
mod explain_error;
mod explain_subject;
mod explain_text;
mod explainer;
mod predictor;
mod shadow;
mod target;
mod traffic;

pub use crate::contract::{
    at_most, bounded_data, bounded_inputs, bounded_instances, bounded_outputs, bounded_parameters,
    bounded_shape, check_tensors, decode_instances, predictions, within, ContractViolation,
    DecodeBudget, FeatureSpec, InputContract, InputTensor, Instance, ModelContract, OutputContract,
    Overrun, Prediction, RawOutput, ViolationKind,
};
pub use crate::monitoring::Protocol;
pub use error::PredictError;
pub use explain_error::ExplainError;
pub use explainer::{
    ExplainLimits, ExplainOptions, ExplainOutcome, Explainer, InstanceExplanation, MethodChoice,
    DEFAULT_PATCH,
};
pub use predictor::{InferOutcome, Limits, PredictOutcome, Predictor, Target};
pub use shadow::{compare, Mirror};
pub use traffic::{Routed, Traffic};
