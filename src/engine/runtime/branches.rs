//! Graphs tract cannot run because of an `If` node, refused at load. tract types an `If` whose
//! condition it cannot fold to a constant by unifying both branches' outputs with the node's
//! output: when the branches produce different ranks or shapes (silero VAD's decoder: `[1, 128]`
//! against `[1, 128, 1]`, chosen by the sample-rate input), no plan can be built at any input
//! shape. Without this check such a model loaded (its plans being specialised per request) and
//! failed every request.

use std::collections::HashSet;

use tract_onnx::ops::logic::If;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{Factoid, InferenceOp};

use crate::engine::error::EngineError;

/// Refuses a graph holding an `If` node (at the top level or inside another `If`'s branch)
/// whose branches' outputs disagree as tract infers them from the graph's declared inputs: tract
/// translates every `If` into one typed node that needs both branches to agree, whatever the
/// condition. Graphs without `If` nodes cost nothing here.
pub(super) fn reject_diverging_ifs(model: &InferenceModel, path: &str) -> Result<(), EngineError> {
    if !model.nodes().iter().any(|n| n.op_as::<If>().is_some()) {
        return Ok(());
    }
    // tract's analysis unifies each `If`'s branches with its output while it types the graph;
    // afterwards (even when it stopped at an error) the branches carry the facts it found.
    let mut analysed = model.clone();
    let analysis = analysed.analyse(false);
    let reason = diverging_if(&analysed).or_else(|| {
        // With every input shape fixed there is one shape to plan: tract failing to analyse or
        // translate the graph at an `If` node means it can never run it.
        if !inputs_fixed(model) {
            return None;
        }
        let failure = match analysis {
            Err(e) => Some(e),
            Ok(_) => model.clone().into_typed().err(),
        }?;
        let text = format!("{failure:#}");
        let node = model.node(failing_if(model, &text)?);
        let condition = condition_text(model, node);
        Some(format!(
            "node #{} {:?} (operator If): {condition}tract cannot type its branches at the \
             declared input shapes ({text})",
            node.id, node.name
        ))
    });
    match reason {
        None => Ok(()),
        Some(reason) => Err(EngineError::Unsupported {
            path: path.to_string(),
            reason,
        }),
    }
}

/// Whether every input declares a fixed shape.
fn inputs_fixed(model: &InferenceModel) -> bool {
    (0..model.inputs.len()).all(|ix| {
        model.input_fact(ix).is_ok_and(|f| {
            f.shape
                .concretize()
                .is_some_and(|d| d.iter().all(|d| d.to_i64().is_ok()))
        })
    })
}

/// The `If` node a tract error starts at (`Failed analyse for node #N` or `Translating node
/// #N`), if it is one.
fn failing_if(model: &InferenceModel, error: &str) -> Option<usize> {
    let rest = error
        .strip_prefix("Failed analyse for node #")
        .or_else(|| error.strip_prefix("Translating node #"))?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let id: usize = digits.parse().ok()?;
    (id < model.nodes().len() && model.node(id).op_as::<If>().is_some()).then_some(id)
}

/// `its condition depends on input "x", and ` (empty when only constants feed it).
fn condition_text(
    model: &InferenceModel,
    node: &Node<InferenceFact, Box<dyn InferenceOp>>,
) -> String {
    let drivers = node
        .inputs
        .first()
        .map(|cond| graph_inputs_behind(model, *cond))
        .unwrap_or_default();
    if drivers.is_empty() {
        String::new()
    } else {
        format!(
            "its condition depends on input {}, and ",
            drivers.join(", ")
        )
    }
}

/// The first `If` node of `model` (or of a branch inside it) whose branches disagree, described.
fn diverging_if(model: &InferenceModel) -> Option<String> {
    for node in model.nodes() {
        let Some(op) = node.op_as::<If>() else {
            continue;
        };
        if let Some(disagreement) = branches_disagree(op) {
            let condition = condition_text(model, node);
            return Some(format!(
                "node #{} {:?} (operator If): {condition}{disagreement}; tract needs both \
                 branches of an If to produce the same shapes",
                node.id, node.name
            ));
        }
        if let Some(inner) = diverging_if(&op.then_body).or_else(|| diverging_if(&op.else_body)) {
            return Some(format!("inside node #{} {:?}: {inner}", node.id, node.name));
        }
    }
    None
}

/// How the two branches' outputs differ (rank, fixed dimensions or element type), or None when
/// nothing shows they do (facts left unknown are not reported).
fn branches_disagree(op: &If) -> Option<String> {
    let outputs = op.then_body.outputs.len().min(op.else_body.outputs.len());
    for ix in 0..outputs {
        let (Ok(then), Ok(other)) = (op.then_body.output_fact(ix), op.else_body.output_fact(ix))
        else {
            continue;
        };
        if then.shape.unify(&other.shape).is_err() {
            return Some(format!(
                "its branches give output {ix} different shapes ({} against {})",
                shape_text(then),
                shape_text(other)
            ));
        }
        if then.datum_type.unify(&other.datum_type).is_err() {
            return Some(format!(
                "its branches give output {ix} different element types ({:?} against {:?})",
                then.datum_type, other.datum_type
            ));
        }
    }
    None
}

fn shape_text(fact: &InferenceFact) -> String {
    format!("{:?}", fact.shape)
}

/// The names of the graph inputs a value is computed from (empty: only constants).
fn graph_inputs_behind(model: &InferenceModel, outlet: OutletId) -> Vec<String> {
    let inputs: HashSet<usize> = model
        .input_outlets()
        .map(|o| o.iter().map(|o| o.node).collect())
        .unwrap_or_default();
    let mut seen = HashSet::new();
    let mut stack = vec![outlet.node];
    let mut found = Vec::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let node = model.node(id);
        if inputs.contains(&id) {
            found.push(format!("{:?}", node.name));
        }
        stack.extend(node.inputs.iter().map(|o| o.node));
    }
    found.sort();
    found
}
