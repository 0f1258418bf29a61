//! Loading: reads an ONNX file with tract, checks what the graph declares, fixes the input facts,
//! optimises and plans the graph, and builds the signature callers see.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::{self as tract, *};
use tract_onnx::tract_hir::infer::Factoid;

use super::convert::{data_type, output_type};
use super::{CallShape, CompiledModel};
use crate::engine::error::EngineError;
use crate::engine::tensor::{Dim, ModelSignature, TensorSpec};

/// Reads, types, optimises and plans an ONNX file. The batch dimension is kept symbolic when
/// the graph allows; otherwise it is fixed to 1 and instances run one per call.
pub(super) fn load(path: &Path) -> Result<CompiledModel, EngineError> {
    let shown = path.display().to_string();
    let load_err = |e: tract::TractError| EngineError::Load {
        path: shown.clone(),
        reason: format!("{e:#}"),
    };
    let model = crate::engine::ml::load(path).map_err(&load_err)?;
    reject_unimplemented(&model, &shown)?;
    let declared = declared_inputs(&model, &shown)?;
    let has_axis = declared
        .iter()
        .all(|d| d.dims.len() > 1 || d.dims.first() == Some(&None));
    let symbolic = declared.iter().all(|d| d.dims.first() == Some(&None));

    if symbolic {
        match compile(model, &declared, BatchChoice::Symbolic) {
            Ok(compiled) => return compiled.finish(&shown),
            Err(e) => tracing::info!(
                path = %shown,
                error = %format!("{e:#}"),
                "model does not optimise with a symbolic batch; running one instance per call"
            ),
        }
        let model = crate::engine::ml::load(path).map_err(&load_err)?;
        return compile(model, &declared, BatchChoice::FixedOne)
            .map_err(&load_err)?
            .finish(&shown);
    }
    let choice = if has_axis && declared.iter().all(|d| d.dims.first() == Some(&Some(1))) {
        BatchChoice::FixedOne
    } else {
        BatchChoice::NoAxis
    };
    compile(model, &declared, choice)
        .map_err(&load_err)?
        .finish(&shown)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchChoice {
    Symbolic,
    FixedOne,
    NoAxis,
}

/// Names every operator of the graph that neither tract nor infera implements.
fn reject_unimplemented(model: &InferenceModel, path: &str) -> Result<(), EngineError> {
    let missing: Vec<String> = model
        .nodes()
        .iter()
        .filter_map(|n| {
            let name = n.op.name();
            name.strip_prefix("Unimplemented(")
                .and_then(|op| op.strip_suffix(')'))
                .map(|op| format!("{op} (node {:?})", n.name))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(EngineError::Unsupported {
        path: path.to_string(),
        reason: format!("operators not supported by infera: {}", missing.join(", ")),
    })
}

/// An input as the ONNX graph declares it: element type and dims (None = not fixed).
struct DeclaredInput {
    dt: DatumType,
    dims: Vec<Option<usize>>,
}

fn declared_inputs(model: &InferenceModel, path: &str) -> Result<Vec<DeclaredInput>, EngineError> {
    let unsupported = |reason: String| EngineError::Unsupported {
        path: path.to_string(),
        reason,
    };
    let outlets = model
        .input_outlets()
        .map_err(|e| unsupported(format!("{e:#}")))?;
    let mut declared = Vec::with_capacity(outlets.len());
    for (ix, outlet) in outlets.iter().enumerate() {
        let name = model.node(outlet.node).name.clone();
        let fact = model
            .input_fact(ix)
            .map_err(|e| unsupported(format!("{e:#}")))?;
        let dt = fact
            .datum_type
            .concretize()
            .ok_or_else(|| unsupported(format!("input {name} declares no element type")))?;
        if data_type(dt).is_none() {
            return Err(unsupported(format!(
                "input {name} has unsupported element type {dt:?}"
            )));
        }
        if fact.shape.is_open() {
            return Err(unsupported(format!("input {name} declares no shape")));
        }
        let dims: Vec<Option<usize>> = fact
            .shape
            .dims()
            .map(|d| {
                d.concretize()
                    .and_then(|d| d.to_i64().ok())
                    .map(|d| d as usize)
            })
            .collect();
        if let Some(axis) = dims.iter().skip(1).position(Option::is_none) {
            return Err(unsupported(format!(
                "input {name} has a variable dimension at axis {}; only the first (batch) axis may vary",
                axis + 1
            )));
        }
        declared.push(DeclaredInput { dt, dims });
    }
    Ok(declared)
}

struct Compiled {
    plan: Arc<TypedSimplePlan>,
    choice: BatchChoice,
    batch: Symbol,
    /// The graph's own output names, in graph order, taken before optimisation: the optimiser
    /// may replace an output node, and the replacement's outlet carries an internal name.
    output_names: Vec<String>,
}

/// The ONNX graph's output names, in graph order.
fn graph_output_names(model: &InferenceModel) -> TractResult<Vec<String>> {
    Ok(model
        .output_outlets()?
        .iter()
        .map(|outlet| {
            model
                .outlet_label(*outlet)
                .map(str::to_string)
                .unwrap_or_else(|| model.node(outlet.node).name.clone())
        })
        .collect())
}

fn compile(
    mut model: InferenceModel,
    declared: &[DeclaredInput],
    choice: BatchChoice,
) -> TractResult<Compiled> {
    let batch = model.sym("batch");
    let output_names = graph_output_names(&model)?;
    for (ix, input) in declared.iter().enumerate() {
        let mut dims: Vec<TDim> = input
            .dims
            .iter()
            .map(|d| d.map(|d| d.to_dim()).unwrap_or(1.to_dim()))
            .collect();
        match choice {
            BatchChoice::Symbolic => dims[0] = TDim::Sym(batch.clone()),
            BatchChoice::FixedOne => dims[0] = 1.to_dim(),
            BatchChoice::NoAxis => {}
        }
        model = model.with_input_fact(ix, InferenceFact::dt_shape(input.dt, dims))?;
    }
    let typed = model.into_optimized()?;
    if choice == BatchChoice::Symbolic {
        let batch_dim = TDim::Sym(batch.clone());
        for ix in 0..typed.outputs.len() {
            let fact = typed.output_fact(ix)?;
            if fact.shape.dims().first() != Some(&batch_dim) {
                return Err(tract::TractError::msg(format!(
                    "output {ix} does not keep the batch dimension first ({fact:?})"
                )));
            }
        }
    }
    let plan = typed.into_runnable()?;
    Ok(Compiled {
        plan,
        choice,
        batch,
        output_names,
    })
}

impl Compiled {
    fn finish(self, path: &str) -> Result<CompiledModel, EngineError> {
        let unsupported = |reason: String| EngineError::Unsupported {
            path: path.to_string(),
            reason,
        };
        let model = self.plan.model();
        let batch_dim = TDim::Sym(self.batch.clone());
        let mut inputs = Vec::new();
        for (ix, outlet) in model
            .input_outlets()
            .map_err(|e| unsupported(e.to_string()))?
            .iter()
            .enumerate()
        {
            let fact = model
                .input_fact(ix)
                .map_err(|e| unsupported(e.to_string()))?;
            let dtype = data_type(fact.datum_type)
                .ok_or_else(|| unsupported(format!("input {ix} has type {:?}", fact.datum_type)))?;
            let dims = fact.shape.dims();
            let rest = if self.choice == BatchChoice::NoAxis {
                dims
            } else {
                &dims[1..]
            };
            let shape = std::iter::once(Dim::Batch)
                .chain(rest.iter().map(fixed_dim))
                .collect();
            inputs.push(TensorSpec {
                name: model.node(outlet.node).name.clone(),
                dtype,
                shape,
            });
        }
        let mut outputs = Vec::new();
        let mut output_has_axis = Vec::new();
        for (ix, outlet) in model
            .output_outlets()
            .map_err(|e| unsupported(e.to_string()))?
            .iter()
            .enumerate()
        {
            let fact = model
                .output_fact(ix)
                .map_err(|e| unsupported(e.to_string()))?;
            let name = self
                .output_names
                .get(ix)
                .cloned()
                .unwrap_or_else(|| model.node(outlet.node).name.clone());
            let dtype =
                output_type(fact.datum_type).ok_or_else(|| EngineError::UnsupportedOutput {
                    output: name.clone(),
                    dtype: format!("{:?}", fact.datum_type),
                })?;
            let dims = fact.shape.dims();
            let has_axis = match self.choice {
                BatchChoice::Symbolic => true,
                BatchChoice::FixedOne => dims.first().is_some_and(|d| *d == 1.to_dim()),
                BatchChoice::NoAxis => false,
            };
            let rest = if has_axis { &dims[1..] } else { dims };
            let shape = std::iter::once(Dim::Batch)
                .chain(rest.iter().map(|d| {
                    if *d == batch_dim {
                        Dim::Dynamic
                    } else {
                        fixed_dim(d)
                    }
                }))
                .collect();
            outputs.push(TensorSpec { name, dtype, shape });
            output_has_axis.push(has_axis);
        }
        let call_shape = match self.choice {
            BatchChoice::Symbolic => CallShape::Batched,
            BatchChoice::FixedOne => CallShape::OnePerCallWithAxis,
            BatchChoice::NoAxis => CallShape::OnePerCallNoAxis,
        };
        let signature = ModelSignature {
            inputs,
            outputs,
            batched: call_shape == CallShape::Batched,
        };
        Ok(CompiledModel {
            plan: self.plan,
            signature,
            call_shape,
            output_has_axis,
        })
    }
}

fn fixed_dim(d: &TDim) -> Dim {
    match d.to_i64() {
        Ok(n) if n >= 0 => Dim::Fixed(n as usize),
        _ => Dim::Dynamic,
    }
}
