//! Plan execution: one caller's request (the whole batch in one plan call, or row by row when the
//! graph takes no batch), and several callers' requests stacked into one plan call.

use tract_onnx::prelude::*;

use std::sync::Arc;
use std::time::Instant;

use super::convert::{from_tract, split_from_tract, stack_into_tract, to_tract};
use super::{CallShape, CompiledModel, Plans};
use crate::engine::error::EngineError;
use crate::engine::tensor::Tensor;

impl CompiledModel {
    /// Runs one caller's request: one tensor per input, each with the batch dimension first. All
    /// inputs must have the same number of rows; the outputs have that many rows too. The whole
    /// batch runs in one plan call when the graph takes a batch, else row by row.
    pub fn run_request(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, EngineError> {
        let rows = self.check_inputs(inputs)?;
        match self.call_shape {
            CallShape::Batched => self.run_plan_once(inputs),
            CallShape::OnePerCallWithAxis | CallShape::OnePerCallNoAxis => {
                self.run_row_by_row(inputs, rows)
            }
        }
    }

    /// Runs several callers' requests and hands each caller its own output rows. `parts[i]` is
    /// caller i's tensors (one per input, batch first). When the callers may share a call
    /// (`can_batch_callers`), the requests whose shapes after the batch axis are equal are
    /// stacked into one plan call; a request whose shapes no other shares runs alone.
    pub fn run_callers(&self, parts: &[Vec<Tensor>]) -> Result<Vec<Vec<Tensor>>, EngineError> {
        if parts.len() == 1 || !self.can_batch_callers() {
            return parts.iter().map(|p| self.run_request(p)).collect();
        }
        let mut groups: Vec<(Vec<&[usize]>, Vec<usize>)> = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let key: Vec<&[usize]> = part
                .iter()
                .map(|t| t.shape.get(1..).unwrap_or(&[]))
                .collect();
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        if groups.len() == 1 {
            return self.run_stacked(parts);
        }
        let mut answers: Vec<Option<Vec<Tensor>>> = vec![None; parts.len()];
        for (_, members) in groups {
            let group: Vec<Vec<Tensor>> = members.iter().map(|&i| parts[i].clone()).collect();
            let outputs = if group.len() == 1 {
                vec![self.run_request(&group[0])?]
            } else {
                self.run_stacked(&group)?
            };
            for (i, out) in members.into_iter().zip(outputs) {
                answers[i] = Some(out);
            }
        }
        Ok(answers.into_iter().flatten().collect())
    }

    /// Former name of [`CompiledModel::run_request`], kept for callers on other branches.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, EngineError> {
        self.run_request(&inputs)
    }

    /// Former name of [`CompiledModel::run_callers`], kept for callers on other branches.
    pub fn run_batch(&self, parts: &[Vec<Tensor>]) -> Result<Vec<Vec<Tensor>>, EngineError> {
        self.run_callers(parts)
    }

    /// Several callers' inputs in one plan call. The inputs are copied once, straight into
    /// tract's tensors, and each caller's outputs once out of tract's.
    fn run_stacked(&self, parts: &[Vec<Tensor>]) -> Result<Vec<Vec<Tensor>>, EngineError> {
        let rows: Vec<usize> = parts
            .iter()
            .map(|p| self.check_inputs(p))
            .collect::<Result<_, _>>()?;
        let total: usize = rows.iter().sum();
        let values: TVec<TValue> = (0..self.signature.inputs.len())
            .map(|ix| {
                let row = parts[0][ix].shape.get(1..).unwrap_or(&[]);
                let shape: Vec<usize> = std::iter::once(total).chain(row.iter().copied()).collect();
                stack_into_tract(&shape, parts.iter().map(|p| &p[ix].data))
                    .map(IntoTValue::into_tvalue)
            })
            .collect::<Result<_, _>>()?;
        let outputs = self.run_plan(values)?;
        let mut split: Vec<Vec<Tensor>> = rows
            .iter()
            .map(|_| Vec::with_capacity(outputs.len()))
            .collect();
        for (value, spec) in outputs.iter().zip(&self.signature.outputs) {
            if value.shape().first() != Some(&total) {
                return Err(EngineError::Inference(format!(
                    "output {} has {:?} rows for a batch of {total}",
                    spec.name,
                    value.shape().first()
                )));
            }
            for (part, tensor) in split.iter_mut().zip(split_from_tract(value, spec, &rows)?) {
                part.push(tensor);
            }
        }
        Ok(split)
    }

    /// One plan call per row, for graphs that take one instance per call; the rows' outputs are
    /// stacked back into one tensor per output.
    fn run_row_by_row(&self, inputs: &[Tensor], rows: usize) -> Result<Vec<Tensor>, EngineError> {
        let mut parts: Vec<Vec<Tensor>> = Vec::with_capacity(rows);
        for row in 0..rows {
            let sliced: Vec<Tensor> = inputs.iter().map(|t| slice_row(t, row)).collect();
            parts.push(self.run_plan_once(&sliced)?);
        }
        concat_rows(parts, self.signature.outputs.len())
    }

    /// Exactly one plan call with these tensors (the batch axis stripped for graphs without one).
    fn run_plan_once(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, EngineError> {
        let strip_axis = self.call_shape == CallShape::OnePerCallNoAxis;
        let values: TVec<TValue> = inputs
            .iter()
            .map(|t| to_tract(t, strip_axis).map(|t| t.into_tvalue()))
            .collect::<Result<_, _>>()?;
        let rows = inputs.first().map(Tensor::rows);
        let outputs = self.run_plan(values)?;
        if self.call_shape == CallShape::Batched {
            if let Some((value, spec)) = outputs
                .iter()
                .zip(&self.signature.outputs)
                .find(|(v, _)| v.shape().first().copied() != rows)
            {
                return Err(EngineError::Inference(format!(
                    "output {} has shape {:?}: the batch axis is not first",
                    spec.name,
                    value.shape()
                )));
            }
        }
        outputs
            .iter()
            .zip(&self.signature.outputs)
            .enumerate()
            .map(|(ix, (value, spec))| {
                let add_axis = match self.call_shape {
                    CallShape::Batched => false,
                    _ => !self.output_has_axis[ix],
                };
                from_tract(value, spec, add_axis)
            })
            .collect()
    }

    /// One call of the plan for these inputs, its time recorded with the scope's threads and
    /// its rows for the intra-op thread decision.
    fn run_plan(&self, values: TVec<TValue>) -> Result<TVec<TValue>, EngineError> {
        let plan = self.plan_for(&values)?;
        let rows = match self.call_shape {
            CallShape::Batched => values.first().and_then(|v| v.shape().first().copied()),
            _ => None,
        };
        let started = Instant::now();
        let outputs = plan.run(values).map_err(|e| EngineError::from_run(&e))?;
        let threads = super::threads::scope_threads();
        self.cost
            .record(started.elapsed(), threads, rows.unwrap_or(1));
        Ok(outputs)
    }

    /// The plan for these tract inputs: the one symbolic plan, or the cached plan specialised to
    /// their shapes.
    fn plan_for(&self, values: &[TValue]) -> Result<Arc<TypedSimplePlan>, EngineError> {
        match &self.plans {
            Plans::Symbolic(plan) => Ok(plan.clone()),
            Plans::Specialised(cache) => {
                let shapes: Vec<&[usize]> = values.iter().map(|v| v.shape()).collect();
                cache.plan(&shapes)
            }
        }
    }

    /// Dimensions one named symbol ties together must be equal.
    fn check_tied_axes(&self, inputs: &[Tensor]) -> Result<(), EngineError> {
        for group in &self.tied_axes {
            let size = |&(ix, axis): &(usize, usize)| inputs[ix].shape.get(axis).copied();
            let first = size(&group[0]);
            if let Some(other) = group.iter().find(|at| size(at) != first) {
                let name = |ix: usize| self.signature.inputs[ix].name.as_str();
                return Err(EngineError::ShapeRefused {
                    shapes: describe_shapes(inputs),
                    reason: format!(
                        "the graph declares one size for axis {} of input {:?} and axis {} of \
                         input {:?}, but they differ",
                        group[0].1,
                        name(group[0].0),
                        other.1,
                        name(other.0)
                    ),
                });
            }
        }
        Ok(())
    }

    fn check_inputs(&self, inputs: &[Tensor]) -> Result<usize, EngineError> {
        let specs = &self.signature.inputs;
        if inputs.len() != specs.len() {
            return Err(EngineError::bad_input(
                "*",
                format!(
                    "expected {} input tensors, got {}",
                    specs.len(),
                    inputs.len()
                ),
            ));
        }
        let rows = inputs.first().map(Tensor::rows).unwrap_or(0);
        for (tensor, spec) in inputs.iter().zip(specs) {
            if tensor.dtype() != spec.dtype {
                return Err(EngineError::dtype_mismatch(
                    &spec.name,
                    spec.dtype,
                    tensor.dtype(),
                ));
            }
            if tensor.rows() != rows || !spec.accepts_row(tensor.shape.get(1..).unwrap_or(&[])) {
                return Err(EngineError::bad_input(
                    &spec.name,
                    format!(
                        "expected shape {:?} with {rows} rows, got {:?}",
                        spec.shape_i64(),
                        tensor.shape
                    ),
                ));
            }
        }
        self.check_tied_axes(inputs)?;
        Ok(rows)
    }
}

fn describe_shapes(inputs: &[Tensor]) -> String {
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape.as_slice()).collect();
    format!("{shapes:?}")
}

/// Row `row` of a tensor whose first axis is the batch, keeping that axis (length 1).
fn slice_row(t: &Tensor, row: usize) -> Tensor {
    let n = t.row_len();
    let range = row * n..(row + 1) * n;
    let data = t.data.slice(range);
    let mut shape = t.shape.clone();
    shape[0] = 1;
    Tensor { shape, data }
}

/// Stacks per-row outputs (each with a leading axis of 1) into one tensor per output.
fn concat_rows(parts: Vec<Vec<Tensor>>, outputs: usize) -> Result<Vec<Tensor>, EngineError> {
    let mut stacked: Vec<Option<Tensor>> = vec![None; outputs];
    for part in parts {
        for (slot, t) in stacked.iter_mut().zip(part) {
            match slot {
                None => *slot = Some(t),
                Some(acc) => append_rows(acc, t)?,
            }
        }
    }
    Ok(stacked.into_iter().flatten().collect())
}

fn append_rows(acc: &mut Tensor, t: Tensor) -> Result<(), EngineError> {
    if acc.shape[1..] != t.shape[1..] {
        return Err(EngineError::Inference(format!(
            "per-instance outputs differ in shape: {:?} vs {:?}",
            acc.shape, t.shape
        )));
    }
    if !acc.data.extend_from(t.data) {
        return Err(EngineError::Inference(
            "per-instance outputs differ in type".into(),
        ));
    }
    acc.shape[0] += t.shape[0];
    Ok(())
}
