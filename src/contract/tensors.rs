//! Checking named input tensors (the tensor protocols: Open Inference Protocol / KServe V2)
//! against a model's contract: names, element types, shapes, a common batch size, finite values
//! and, for tabular models, the features' valid ranges.

use super::instances::{check_range, violation, ContractViolation, ViolationKind};
use super::{InputContract, ModelContract};
use crate::engine::{Tensor, TensorData, TensorSpec};

/// One input tensor as a client sent it: batch dimension first, or for a model without a batch
/// axis (`Batching::Exact`) exactly the graph's shape.
#[derive(Debug, Clone)]
pub struct InputTensor {
    pub name: String,
    pub tensor: Tensor,
}

fn whole(kind: ViolationKind, message: String) -> ContractViolation {
    ContractViolation {
        kind,
        instance: None,
        message,
    }
}

fn names(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| format!("{:?}", s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Orders `inputs` as the model's inputs and checks them. Returns the tensors and the batch size.
pub fn check_tensors(
    contract: &ModelContract,
    inputs: Vec<InputTensor>,
) -> Result<(Vec<Tensor>, usize), ContractViolation> {
    let specs = &contract.signature.inputs;
    if let Some(unknown) = inputs
        .iter()
        .find(|i| !specs.iter().any(|s| s.name == i.name))
    {
        return Err(whole(
            ViolationKind::UnknownFeature,
            format!(
                "unknown input {:?}; the model's inputs are {}",
                unknown.name,
                names(specs)
            ),
        ));
    }
    let mut slots: Vec<Option<Tensor>> = vec![None; specs.len()];
    for input in inputs {
        let at = specs
            .iter()
            .position(|s| s.name == input.name)
            .expect("checked above");
        if slots[at].is_some() {
            return Err(whole(
                ViolationKind::WrongShape,
                format!("input {:?} is given twice", input.name),
            ));
        }
        slots[at] = Some(engine_tensor(contract, at, input.tensor)?);
    }
    let mut tensors = Vec::with_capacity(specs.len());
    let mut rows: Option<usize> = None;
    for (spec, slot) in specs.iter().zip(slots) {
        let tensor = slot.ok_or_else(|| {
            whole(
                ViolationKind::MissingFeature,
                format!("missing input {:?}", spec.name),
            )
        })?;
        if tensor.dtype() != spec.dtype {
            return Err(whole(
                ViolationKind::WrongType,
                format!(
                    "input {:?} has datatype {} but the model takes {}",
                    spec.name,
                    tensor.dtype(),
                    spec.dtype
                ),
            ));
        }
        if tensor.shape.is_empty() || !spec.accepts_row(&tensor.shape[1..]) {
            return Err(whole(
                ViolationKind::WrongShape,
                format!(
                    "input {:?} has shape {:?} but the model takes {:?}",
                    spec.name,
                    tensor.shape,
                    spec.shape_i64()
                ),
            ));
        }
        let n = tensor.shape[0];
        if let Some(r) = rows.filter(|r| *r != n) {
            return Err(whole(
                ViolationKind::WrongShape,
                format!(
                    "input {:?} has {n} instances but another input has {r}",
                    spec.name
                ),
            ));
        }
        rows = Some(n);
        check_values(&tensor, &spec.name)?;
        tensors.push(tensor);
    }
    let rows = rows.unwrap_or(0);
    super::map_instances::check_map_tensors(specs, &tensors)?;
    if let InputContract::Tabular { features, .. } = &contract.input {
        let t = &tensors[0];
        let width = features.len();
        for r in 0..rows {
            for (f, feature) in features.iter().enumerate() {
                let v = t.data.get_f64(r * width + f).unwrap_or(f64::NAN);
                check_range(v, feature, r)?;
            }
        }
    }
    Ok((tensors, rows))
}

/// The engine's batch-first tensor for input `ix` as a client sent it. A model without a batch
/// axis takes exactly its declared shape: one instance, whose engine axis is added here when the
/// graph does not declare it (a declared leading 1 is the engine's axis already).
fn engine_tensor(
    contract: &ModelContract,
    ix: usize,
    mut tensor: Tensor,
) -> Result<Tensor, ContractViolation> {
    let signature = &contract.signature;
    if signature.batching.has_batch_axis() {
        return Ok(tensor);
    }
    let declared = signature.protocol_shape(false, ix);
    let fits = tensor.shape.len() == declared.len()
        && tensor
            .shape
            .iter()
            .zip(&declared)
            .all(|(n, d)| *d < 0 || *n as i64 == *d);
    if !fits {
        return Err(whole(
            ViolationKind::WrongShape,
            format!(
                "input {:?} has shape {:?} but the model takes {declared:?} (it has no batch \
                 axis: send one tensor of exactly that shape)",
                signature.inputs[ix].name, tensor.shape
            ),
        ));
    }
    if !signature.batching.keeps_axis(false, ix) {
        tensor.shape.insert(0, 1);
    }
    Ok(tensor)
}

/// A model without a batch axis answers with the graph's own output shapes: the engine's
/// instance axis is taken off the outputs whose graph shape does not declare it.
pub fn protocol_outputs(contract: &ModelContract, outputs: Vec<Tensor>) -> Vec<Tensor> {
    let batching = &contract.signature.batching;
    outputs
        .into_iter()
        .enumerate()
        .map(|(ix, mut t)| {
            if !batching.keeps_axis(true, ix) && t.shape.first() == Some(&1) {
                t.shape.remove(0);
            }
            t
        })
        .collect()
}

/// Floating-point inputs must be finite, as on `/predict`.
fn check_values(tensor: &Tensor, name: &str) -> Result<(), ContractViolation> {
    let row = tensor.row_len().max(1);
    let bad = match &tensor.data {
        TensorData::F32(v) => v
            .iter()
            .position(|x| !x.is_finite())
            .map(|i| (i, f64::from(v[i]))),
        TensorData::F64(v) => v.iter().position(|x| !x.is_finite()).map(|i| (i, v[i])),
        TensorData::F16(v) => v
            .iter()
            .position(|x| !x.is_finite())
            .map(|i| (i, v[i].to_f64())),
        _ => None,
    };
    match bad {
        Some((i, x)) => Err(violation(
            ViolationKind::NonFinite,
            i / row,
            format!(
                "input {name:?} element {}: {x} is not a finite number",
                i % row
            ),
        )),
        None => Ok(()),
    }
}
