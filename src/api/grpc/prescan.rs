//! Bounds first for gRPC `ModelInfer`: the received message is walked on the wire before prost
//! decodes it, and every repeated entry decoding would allocate is counted against the request
//! limits: `inputs`, `outputs`, `raw_input_contents` (`--max-tensors` each), each input's `shape`
//! (`--max-rank`), parameters of the request and of its tensors together (`--max-parameters`),
//! and the typed contents of every input together, packed or not (`--max-elements`). The walk
//! stops at the first entry past a limit, so refusing costs the bytes read up to it and no
//! allocation; after it, what prost builds is bounded by the limits and a small multiple of the
//! message size (docs/security.md).
//!
//! Field numbers are those of `proto/grpc_predict_v2.proto`; `tests` checks the walk against
//! prost's own decoding of the same bytes.

use super::wire::{Malformed, Reader, Scalar, Value};
use crate::contract::{DecodeBudget, Overrun, RequestList};

/// Why a message was refused before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A list past its limit.
    Over(Overrun),
    /// Bytes prost would refuse too.
    Malformed(Malformed),
}

impl From<Malformed> for Refusal {
    fn from(m: Malformed) -> Refusal {
        Refusal::Malformed(m)
    }
}

/// What a walk has counted so far, against the budget.
struct Tally {
    budget: DecodeBudget,
    inputs: usize,
    outputs: usize,
    raw: usize,
    parameters: usize,
    elements: usize,
}

impl Tally {
    /// Counts one entry of `list` (whose running count is `count`).
    fn one(budget: &DecodeBudget, list: RequestList, count: &mut usize) -> Result<(), Refusal> {
        let limit = budget.lists.of(list);
        if *count >= limit {
            return Err(Refusal::Over(Overrun::List { list, limit }));
        }
        *count += 1;
        Ok(())
    }

    fn parameter(&mut self) -> Result<(), Refusal> {
        Tally::one(&self.budget, RequestList::Parameters, &mut self.parameters)
    }

    fn elements(&mut self, n: usize) -> Result<(), Refusal> {
        let limit = self.budget.max_elements;
        match self.elements.checked_add(n) {
            Some(total) if total <= limit => {
                self.elements = total;
                Ok(())
            }
            _ => Err(Refusal::Over(Overrun::Elements { limit })),
        }
    }
}

/// Walks a serialised `ModelInferRequest` and counts its lists against `budget`.
pub fn check(message: &[u8], budget: &DecodeBudget) -> Result<(), Refusal> {
    let mut tally = Tally {
        budget: *budget,
        inputs: 0,
        outputs: 0,
        raw: 0,
        parameters: 0,
        elements: 0,
    };
    let mut fields = Reader::new(message);
    while let Some(field) = fields.next_field()? {
        match (field.number, field.value) {
            // model_name, model_version, id: one string each (a repeated one replaces the last).
            (1..=3, Value::Len(_)) => {}
            (4, Value::Len(_)) => tally.parameter()?,
            (5, Value::Len(input)) => {
                Tally::one(budget, RequestList::Inputs, &mut tally.inputs)?;
                input_tensor(input, &mut tally)?;
            }
            (6, Value::Len(output)) => {
                Tally::one(budget, RequestList::Outputs, &mut tally.outputs)?;
                output_tensor(output, &mut tally)?;
            }
            (7, Value::Len(_)) => Tally::one(budget, RequestList::RawContents, &mut tally.raw)?,
            (1..=7, _) => return Err(wrong_wire_type()),
            // Unknown fields: prost skips them without keeping anything.
            _ => {}
        }
    }
    Ok(())
}

fn wrong_wire_type() -> Refusal {
    Refusal::Malformed(Malformed("a field with the wrong wire type"))
}

/// `InferInputTensor`: name, datatype, shape, parameters, contents.
fn input_tensor(message: &[u8], tally: &mut Tally) -> Result<(), Refusal> {
    let mut dims = 0usize;
    let max_rank = tally.budget.lists.max_rank;
    let mut fields = Reader::new(message);
    while let Some(field) = fields.next_field()? {
        match (field.number, field.value) {
            (1 | 2, Value::Len(_)) => {}
            // shape: int64, packed or not; several fields append.
            (3, value) => {
                dims = dims.saturating_add(Scalar::Varint.elements(value)?);
                if dims > max_rank {
                    return Err(Refusal::Over(Overrun::List {
                        list: RequestList::Shape,
                        limit: max_rank,
                    }));
                }
            }
            (4, Value::Len(_)) => tally.parameter()?,
            // contents: an optional message; several fields merge, so every one counts.
            (5, Value::Len(contents)) => tensor_contents(contents, tally)?,
            (1..=5, _) => return Err(wrong_wire_type()),
            _ => {}
        }
    }
    Ok(())
}

/// `InferRequestedOutputTensor`: name, parameters.
fn output_tensor(message: &[u8], tally: &mut Tally) -> Result<(), Refusal> {
    let mut fields = Reader::new(message);
    while let Some(field) = fields.next_field()? {
        match (field.number, field.value) {
            (1, Value::Len(_)) => {}
            (2, Value::Len(_)) => tally.parameter()?,
            (1 | 2, _) => return Err(wrong_wire_type()),
            _ => {}
        }
    }
    Ok(())
}

/// `InferTensorContents`: one repeated field per element type.
fn tensor_contents(message: &[u8], tally: &mut Tally) -> Result<(), Refusal> {
    let mut fields = Reader::new(message);
    while let Some(field) = fields.next_field()? {
        let elements = match (field.number, field.value) {
            // bool, int32, int64, uint32, uint64
            (1..=5, value) => Scalar::Varint.elements(value)?,
            (6, value) => Scalar::Fixed32.elements(value)?,
            (7, value) => Scalar::Fixed64.elements(value)?,
            (8, Value::Len(_)) => 1,
            (8, _) => return Err(wrong_wire_type()),
            _ => 0,
        };
        tally.elements(elements)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "prescan_tests.rs"]
mod tests;
