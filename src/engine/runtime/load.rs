//! Loading: reads an ONNX file with tract, checks what the graph declares, decides the batch
//! axis (Triton's semantics: the inputs share a variable leading axis, or the model has none),
//! sets the input facts with the graph's own symbols, optimises and plans the graph (or prepares
//! per-shape plans when tract cannot optimise it with its symbols), and builds the signature.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::{self as tract, *};
use tract_onnx::tract_hir::infer::Factoid;

use super::convert::{data_type, output_type};
use super::plans::PlanCache;
use super::{CallShape, CompiledModel, LoadOptions, PlanMode, Plans};
use crate::engine::error::EngineError;
use crate::engine::tensor::{Batching, Dim, ModelSignature, TensorSpec};

/// Reads, types, optimises and plans an ONNX file.
pub(super) fn load(path: &Path, options: &LoadOptions) -> Result<CompiledModel, EngineError> {
    let shown = path.display().to_string();
    let load_err = |e: tract::TractError| EngineError::Load {
        path: shown.clone(),
        reason: format!("{e:#}"),
    };
    let model = crate::engine::ml::load(path).map_err(&load_err)?;
    reject_unimplemented(&model, &shown)?;
    super::branches::reject_diverging_ifs(&model, &shown)?;
    let declared = declared_inputs(&model, &shown)?;
    let (choice, batch_axis) = batch_choice(&declared, options.batch_axis, &shown)?;
    let shape = Declared {
        inputs: declared,
        choice,
        batch_axis,
    };
    if options.plans != PlanMode::Specialised {
        match compile(model, &shape.inputs, choice) {
            Ok(compiled) => return compiled.finish(&shape, &shown),
            Err(e) if options.plans == PlanMode::Symbolic => return Err(load_err(e)),
            Err(e) => tracing::info!(
                path = %shown,
                error = %format!("{e:#}"),
                "model does not optimise with its symbolic dimensions"
            ),
        }
        if choice == BatchChoice::Symbolic && !shape.has_variable_rows() {
            // Only the batch varies: one plan with the batch fixed at 1, one instance per call.
            let model = crate::engine::ml::load(path).map_err(&load_err)?;
            let one = Declared {
                choice: BatchChoice::FixedOne,
                ..shape
            };
            return compile(model, &one.inputs, BatchChoice::FixedOne)
                .map_err(&load_err)?
                .finish(&one, &shown);
        }
    }
    let model = crate::engine::ml::load_with(path, |o| o.with_ignore_value_info(true))
        .map_err(&load_err)?;
    // The graph's declared outputs (types and shapes) describe the signature until a plan exists.
    let outputs = crate::engine::ml::load_with(path, |o| o.with_ignore_output_shapes(false))
        .map_err(&load_err)?;
    specialised(model, &outputs, &shape, options.plan_cache, &shown)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BatchChoice {
    /// The first axis is the batch axis and varies.
    Symbolic,
    /// The first axis is 1 in every input: the engine's instance axis.
    FixedOne,
    /// No batch axis: the engine adds one.
    NoAxis,
}

/// One input dimension as the graph declares it.
#[derive(Debug, Clone, PartialEq)]
enum DeclDim {
    Fixed(usize),
    /// A named symbol (`dim_param`), shared by every axis that names it.
    Named(TDim),
    /// Variable, without a name.
    Unnamed,
}

impl DeclDim {
    fn is_variable(&self) -> bool {
        !matches!(self, DeclDim::Fixed(_))
    }
}

/// An input as the ONNX graph declares it.
struct DeclaredInput {
    name: String,
    dt: DatumType,
    dims: Vec<DeclDim>,
}

/// The declared inputs and the batch decision.
struct Declared {
    inputs: Vec<DeclaredInput>,
    choice: BatchChoice,
    /// Whether the protocols show a batch axis (Triton's `max_batch_size > 0`).
    batch_axis: bool,
}

impl Declared {
    /// True when some input dimension other than a variable batch axis varies.
    fn has_variable_rows(&self) -> bool {
        self.inputs.iter().any(|i| {
            i.dims.iter().enumerate().any(|(axis, d)| {
                d.is_variable() && !(axis == 0 && self.choice == BatchChoice::Symbolic)
            })
        })
    }

    /// The axis of the engine's (batch-first) tensor that holds declared axis `axis`.
    fn engine_axis(&self, axis: usize) -> usize {
        match self.choice {
            BatchChoice::Symbolic | BatchChoice::FixedOne => axis,
            BatchChoice::NoAxis => axis + 1,
        }
    }

    /// Groups of (input, engine axis) that one named dimension ties together (batch excluded).
    fn tied_axes(&self) -> Vec<Vec<(usize, usize)>> {
        let mut groups: Vec<(TDim, Vec<(usize, usize)>)> = Vec::new();
        for (ix, input) in self.inputs.iter().enumerate() {
            for (axis, dim) in input.dims.iter().enumerate() {
                let DeclDim::Named(name) = dim else { continue };
                if axis == 0 && self.choice == BatchChoice::Symbolic {
                    continue;
                }
                let at = (ix, self.engine_axis(axis));
                match groups.iter_mut().find(|(n, _)| n == name) {
                    Some((_, members)) => members.push(at),
                    None => groups.push((name.clone(), vec![at])),
                }
            }
        }
        groups
            .into_iter()
            .map(|(_, members)| members)
            .filter(|m| m.len() > 1)
            .collect()
    }

    /// The signature's input specs: batch first, variable dimensions `Dynamic`.
    fn input_specs(&self, types: &[crate::engine::DataType]) -> Vec<TensorSpec> {
        self.inputs
            .iter()
            .zip(types)
            .map(|(input, dtype)| {
                let rest = match self.choice {
                    BatchChoice::Symbolic | BatchChoice::FixedOne => &input.dims[1..],
                    BatchChoice::NoAxis => &input.dims[..],
                };
                let shape = std::iter::once(Dim::Batch)
                    .chain(rest.iter().map(|d| match d {
                        DeclDim::Fixed(n) => Dim::Fixed(*n),
                        DeclDim::Named(_) | DeclDim::Unnamed => Dim::Dynamic,
                    }))
                    .collect();
                TensorSpec {
                    name: input.name.clone(),
                    dtype: *dtype,
                    shape,
                }
            })
            .collect()
    }

    fn batching(&self, outputs_keep_axis: Vec<bool>) -> Batching {
        if self.batch_axis {
            return Batching::Batch;
        }
        Batching::Exact {
            inputs_keep_axis: vec![self.choice == BatchChoice::FixedOne; self.inputs.len()],
            outputs_keep_axis,
        }
    }

    fn call_shape(&self) -> CallShape {
        match self.choice {
            BatchChoice::Symbolic => CallShape::Batched,
            BatchChoice::FixedOne => CallShape::OnePerCallWithAxis,
            BatchChoice::NoAxis => CallShape::OnePerCallNoAxis,
        }
    }
}

/// Triton's rule: a model whose inputs share a variable leading axis is batchable; any other is
/// served with its exact shapes. The card can declare the batch axis (a variable or 1 leading
/// dimension in every input) or none.
fn batch_choice(
    declared: &[DeclaredInput],
    card: Option<bool>,
    path: &str,
) -> Result<(BatchChoice, bool), EngineError> {
    let leading_variable = !declared.is_empty()
        && declared
            .iter()
            .all(|d| d.dims.first().is_some_and(DeclDim::is_variable));
    let names: HashSet<&TDim> = declared
        .iter()
        .filter_map(|d| match d.dims.first() {
            Some(DeclDim::Named(n)) => Some(n),
            _ => None,
        })
        .collect();
    let shared = names.len() <= 1;
    let leading_one = !declared.is_empty()
        && declared
            .iter()
            .all(|d| d.dims.len() > 1 && d.dims[0] == DeclDim::Fixed(1));
    match card {
        None if leading_variable && shared => Ok((BatchChoice::Symbolic, true)),
        Some(true) if leading_variable => Ok((BatchChoice::Symbolic, true)),
        Some(true) if leading_one => Ok((BatchChoice::FixedOne, true)),
        Some(true) => Err(EngineError::Unsupported {
            path: path.to_string(),
            reason: "the model card declares a batch axis, but not every input's first \
                     dimension is variable or 1"
                .into(),
        }),
        None | Some(false) if leading_one => Ok((BatchChoice::FixedOne, false)),
        None | Some(false) => Ok((BatchChoice::NoAxis, false)),
    }
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
        let dims = fact
            .shape
            .dims()
            .map(|d| match d.concretize() {
                Some(t) => match t.to_i64() {
                    Ok(n) if n >= 0 => DeclDim::Fixed(n as usize),
                    _ => DeclDim::Named(t),
                },
                None => DeclDim::Unnamed,
            })
            .collect();
        declared.push(DeclaredInput { name, dt, dims });
    }
    Ok(declared)
}

struct Compiled {
    plan: Arc<TypedSimplePlan>,
    batch: Symbol,
    /// The graph's own output names, in graph order, taken before optimisation: the optimiser
    /// may replace an output node, and the replacement's outlet carries an internal name.
    output_names: Vec<String>,
    /// Every output dimension after the first is fixed or computed from input symbols.
    outputs_follow_inputs: bool,
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

/// Optimises the graph with its symbols: the batch axis as `batch`, named dimensions under
/// their names, unnamed ones under a symbol of their own.
fn compile(
    mut model: InferenceModel,
    declared: &[DeclaredInput],
    choice: BatchChoice,
) -> TractResult<Compiled> {
    let batch = model.sym("batch");
    let output_names = graph_output_names(&model)?;
    let mut input_symbols: HashSet<Symbol> = HashSet::from([batch.clone()]);
    for (ix, input) in declared.iter().enumerate() {
        let mut dims: Vec<TDim> = Vec::with_capacity(input.dims.len());
        for (axis, d) in input.dims.iter().enumerate() {
            let dim = match (axis, choice, d) {
                (0, BatchChoice::Symbolic, _) => TDim::Sym(batch.clone()),
                (0, BatchChoice::FixedOne, _) => 1.to_dim(),
                (_, _, DeclDim::Fixed(n)) => n.to_dim(),
                (_, _, DeclDim::Named(t)) => t.clone(),
                (_, _, DeclDim::Unnamed) => TDim::Sym(model.sym(&format!("infera_{ix}_{axis}"))),
            };
            input_symbols.extend(dim.symbols());
            dims.push(dim);
        }
        model = model.with_input_fact(ix, InferenceFact::dt_shape(input.dt, dims))?;
    }
    let typed = model.into_optimized()?;
    let batch_dim = TDim::Sym(batch.clone());
    let mut outputs_follow_inputs = true;
    for ix in 0..typed.outputs.len() {
        let fact = typed.output_fact(ix)?;
        if choice == BatchChoice::Symbolic && fact.shape.dims().first() != Some(&batch_dim) {
            return Err(tract::TractError::msg(format!(
                "output {ix} does not keep the batch dimension first ({fact:?})"
            )));
        }
        outputs_follow_inputs &= fact
            .shape
            .dims()
            .iter()
            .skip(1)
            .all(|d| d.symbols().is_subset(&input_symbols));
    }
    let plan = typed.into_runnable()?;
    Ok(Compiled {
        plan,
        batch,
        output_names,
        outputs_follow_inputs,
    })
}

fn engine_types(declared: &Declared) -> Vec<crate::engine::DataType> {
    declared
        .inputs
        .iter()
        .map(|i| data_type(i.dt).expect("checked when declared"))
        .collect()
}

impl Compiled {
    fn finish(self, declared: &Declared, path: &str) -> Result<CompiledModel, EngineError> {
        let unsupported = |reason: String| EngineError::Unsupported {
            path: path.to_string(),
            reason,
        };
        let model = self.plan.model();
        let batch_dim = TDim::Sym(self.batch.clone());
        // The plan's own input facts: the optimiser may have found a declared symbol fixed.
        let mut inputs = declared.input_specs(&engine_types(declared));
        for (ix, spec) in inputs.iter_mut().enumerate() {
            let fact = model
                .input_fact(ix)
                .map_err(|e| unsupported(e.to_string()))?;
            let dims = fact.shape.dims();
            let rest = if declared.choice == BatchChoice::NoAxis {
                dims
            } else {
                &dims[1..]
            };
            spec.shape = std::iter::once(Dim::Batch)
                .chain(rest.iter().map(spec_dim))
                .collect();
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
            let has_axis = match declared.choice {
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
                        spec_dim(d)
                    }
                }))
                .collect();
            outputs.push(TensorSpec { name, dtype, shape });
            output_has_axis.push(has_axis);
        }
        let call_shape = declared.call_shape();
        let signature = ModelSignature {
            inputs,
            outputs,
            batched: call_shape == CallShape::Batched,
            batching: declared.batching(output_has_axis.clone()),
        };
        Ok(CompiledModel {
            plans: Plans::Symbolic(self.plan),
            signature,
            call_shape,
            output_has_axis,
            tied_axes: declared.tied_axes(),
            outputs_follow_inputs: self.outputs_follow_inputs,
            class_labels: None,
            threads: Default::default(),
            cost: Default::default(),
        })
    }
}

/// A model whose plans are specialised per concrete input shape. The signature comes from the
/// graph's declarations (inputs and outputs), since no plan exists yet.
fn specialised(
    model: InferenceModel,
    declared_outputs: &InferenceModel,
    declared: &Declared,
    capacity: usize,
    path: &str,
) -> Result<CompiledModel, EngineError> {
    let unsupported = |reason: String| EngineError::Unsupported {
        path: path.to_string(),
        reason,
    };
    let names = graph_output_names(&model).map_err(|e| unsupported(format!("{e:#}")))?;
    let input_names: HashSet<TDim> = declared
        .inputs
        .iter()
        .flat_map(|i| i.dims.iter())
        .filter_map(|d| match d {
            DeclDim::Named(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    let mut outputs = Vec::with_capacity(names.len());
    let mut output_has_axis = Vec::with_capacity(names.len());
    let mut outputs_follow_inputs = true;
    for (ix, name) in names.into_iter().enumerate() {
        let fact = declared_outputs
            .output_fact(ix)
            .map_err(|e| unsupported(format!("{e:#}")))?;
        let dt = fact
            .datum_type
            .concretize()
            .ok_or_else(|| unsupported(format!("output {name} declares no element type")))?;
        let dtype = output_type(dt).ok_or_else(|| EngineError::UnsupportedOutput {
            output: name.clone(),
            dtype: format!("{dt:?}"),
        })?;
        let dims: Vec<Option<TDim>> = fact.shape.dims().map(|d| d.concretize()).collect();
        let has_axis = match declared.choice {
            BatchChoice::Symbolic => true,
            BatchChoice::FixedOne => dims.first() == Some(&Some(1.to_dim())),
            BatchChoice::NoAxis => false,
        };
        let rest = if has_axis && !dims.is_empty() {
            &dims[1..]
        } else {
            &dims[..]
        };
        outputs_follow_inputs &= rest.iter().all(|d| match d {
            Some(t) => t.to_i64().is_ok() || input_names.contains(t),
            None => false,
        });
        let shape = std::iter::once(Dim::Batch)
            .chain(
                rest.iter()
                    .map(|d| d.as_ref().map_or(Dim::Dynamic, spec_dim)),
            )
            .collect();
        outputs.push(TensorSpec { name, dtype, shape });
        output_has_axis.push(has_axis);
    }
    let types = engine_types(declared);
    let call_shape = declared.call_shape();
    let signature = ModelSignature {
        inputs: declared.input_specs(&types),
        outputs,
        batched: call_shape == CallShape::Batched,
        batching: declared.batching(output_has_axis.clone()),
    };
    let tract_types = declared.inputs.iter().map(|i| i.dt).collect();
    Ok(CompiledModel {
        plans: Plans::Specialised(Box::new(PlanCache::new(model, tract_types, capacity))),
        signature,
        call_shape,
        output_has_axis,
        tied_axes: declared.tied_axes(),
        outputs_follow_inputs,
        class_labels: None,
        threads: Default::default(),
        cost: Default::default(),
    })
}

/// A plan's dimension as the signature shows it: fixed, or variable.
fn spec_dim(d: &TDim) -> Dim {
    match d.to_i64() {
        Ok(n) if n >= 0 => Dim::Fixed(n as usize),
        _ => Dim::Dynamic,
    }
}
