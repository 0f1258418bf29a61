//! Loading and running ONNX models with tract. This is the only file that names tract types.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::{self as tract, *};
use tract_onnx::tract_hir::infer::Factoid;

use super::error::EngineError;
use super::tensor::{DataType, Dim, ModelSignature, Tensor, TensorData, TensorSpec};

/// Runs `f` with tract's matrix products pinned to the calling thread. Parallelism comes from
/// several workers sharing a plan; the thread-local setting also spares every product a look at
/// tract's process-wide executor setting, which sits behind a mutex shared by all workers.
pub fn single_threaded_scope<R>(f: impl FnOnce() -> R) -> R {
    tract::multithread::multithread_tract_scope(tract::multithread::Executor::SingleThread, f)
}

/// How many instances one call to the tract plan can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallShape {
    /// The first axis is symbolic: a whole batch runs in one call.
    Batched,
    /// The first axis is fixed at 1: instances run one per call, each with that axis.
    OnePerCallWithAxis,
    /// The inputs have no batch axis: instances run one per call, the axis added and removed here.
    OnePerCallNoAxis,
}

/// An optimised, runnable model plus the signature callers see. Every signature has a batch
/// dimension first; for models whose graph cannot take a batch the engine runs the instances one
/// at a time behind it.
#[derive(Debug)]
pub struct CompiledModel {
    plan: Arc<TypedSimplePlan>,
    signature: ModelSignature,
    call_shape: CallShape,
    /// For each output: whether a one-per-call plan returns it with a leading axis of 1.
    output_has_axis: Vec<bool>,
}

impl CompiledModel {
    /// Reads, types, optimises and plans an ONNX file. The batch dimension is kept symbolic when
    /// the graph allows; otherwise it is fixed to 1 and instances run one per call.
    pub fn load(path: &Path) -> Result<CompiledModel, EngineError> {
        let shown = path.display().to_string();
        let load_err = |e: tract::TractError| EngineError::Load {
            path: shown.clone(),
            reason: format!("{e:#}"),
        };
        let model = super::ml::load(path).map_err(&load_err)?;
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
            let model = super::ml::load(path).map_err(&load_err)?;
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

    pub fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    /// Largest number of instances one tract call takes (None: any).
    pub fn max_rows_per_call(&self) -> Option<usize> {
        match self.call_shape {
            CallShape::Batched => None,
            CallShape::OnePerCallWithAxis | CallShape::OnePerCallNoAxis => Some(1),
        }
    }

    /// Runs the model on one tensor per input, each with the batch dimension first. All inputs
    /// must have the same number of rows; the outputs have that many rows too.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, EngineError> {
        self.run_one(&inputs)
    }

    fn run_one(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, EngineError> {
        let rows = self.check_inputs(inputs)?;
        match self.call_shape {
            CallShape::Batched => self.run_once(inputs),
            CallShape::OnePerCallWithAxis | CallShape::OnePerCallNoAxis => {
                let mut parts: Vec<Vec<Tensor>> = Vec::with_capacity(rows);
                for row in 0..rows {
                    let sliced: Vec<Tensor> = inputs.iter().map(|t| slice_row(t, row)).collect();
                    parts.push(self.run_once(&sliced)?);
                }
                concat_rows(parts, self.signature.outputs.len())
            }
        }
    }

    /// True when instances of different callers may share one call: the graph takes a batch and
    /// every output dimension after the batch is fixed, so rows can be split back by count.
    pub fn can_batch_callers(&self) -> bool {
        self.call_shape == CallShape::Batched
            && self
                .signature
                .outputs
                .iter()
                .all(|o| o.shape.iter().skip(1).all(|d| matches!(d, Dim::Fixed(_))))
    }

    /// Runs several callers' inputs as one batch and hands each caller its own output rows.
    /// `parts[i]` is caller i's tensors (one per input, batch first). The inputs are copied once,
    /// straight into tract's tensors, and each caller's outputs once out of tract's.
    pub fn run_batch(&self, parts: &[Vec<Tensor>]) -> Result<Vec<Vec<Tensor>>, EngineError> {
        if parts.len() == 1 || !self.can_batch_callers() {
            return parts.iter().map(|p| self.run_one(p)).collect();
        }
        let rows: Vec<usize> = parts
            .iter()
            .map(|p| self.check_inputs(p))
            .collect::<Result<_, _>>()?;
        let total: usize = rows.iter().sum();
        let values: TVec<TValue> = self
            .signature
            .inputs
            .iter()
            .enumerate()
            .map(|(ix, spec)| {
                let shape: Vec<usize> = std::iter::once(total).chain(spec.row_shape()).collect();
                stack_into_tract(&shape, parts.iter().map(|p| &p[ix].data))
                    .map(IntoTValue::into_tvalue)
            })
            .collect::<Result<_, _>>()?;
        let outputs = self
            .plan
            .run(values)
            .map_err(|e| EngineError::Inference(format!("{e:#}")))?;
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

    fn run_once(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, EngineError> {
        let strip_axis = self.call_shape == CallShape::OnePerCallNoAxis;
        let values: TVec<TValue> = inputs
            .iter()
            .map(|t| to_tract(t, strip_axis).map(|t| t.into_tvalue()))
            .collect::<Result<_, _>>()?;
        let outputs = self
            .plan
            .run(values)
            .map_err(|e| EngineError::Inference(format!("{e:#}")))?;
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
            let want: Vec<usize> = std::iter::once(rows)
                .chain(spec.row_shape())
                .collect::<Vec<_>>();
            if tensor.shape != want {
                return Err(EngineError::bad_input(
                    &spec.name,
                    format!("expected shape {want:?}, got {:?}", tensor.shape),
                ));
            }
        }
        Ok(rows)
    }
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
}

fn compile(
    mut model: InferenceModel,
    declared: &[DeclaredInput],
    choice: BatchChoice,
) -> TractResult<Compiled> {
    let batch = model.sym("batch");
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
            let name = model
                .outlet_label(*outlet)
                .map(str::to_string)
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

fn data_type(dt: DatumType) -> Option<DataType> {
    match dt {
        DatumType::Bool => Some(DataType::Bool),
        DatumType::U8 => Some(DataType::U8),
        DatumType::I32 => Some(DataType::I32),
        DatumType::I64 => Some(DataType::I64),
        DatumType::F32 => Some(DataType::F32),
        DatumType::F64 => Some(DataType::F64),
        _ => None,
    }
}

/// Output element types are widened where infera has no exact type (TDim and small ints to i64,
/// f16 to f32).
fn output_type(dt: DatumType) -> Option<DataType> {
    data_type(dt).or(match dt {
        DatumType::TDim
        | DatumType::I8
        | DatumType::I16
        | DatumType::U16
        | DatumType::U32
        | DatumType::U64 => Some(DataType::I64),
        DatumType::F16 => Some(DataType::F32),
        _ => None,
    })
}

fn to_tract(t: &Tensor, strip_axis: bool) -> Result<tract::Tensor, EngineError> {
    let shape: &[usize] = if strip_axis { &t.shape[1..] } else { &t.shape };
    let built = match &t.data {
        TensorData::Bool(v) => tract::Tensor::from_shape(shape, v),
        TensorData::U8(v) => tract::Tensor::from_shape(shape, v),
        TensorData::I32(v) => tract::Tensor::from_shape(shape, v),
        TensorData::I64(v) => tract::Tensor::from_shape(shape, v),
        TensorData::F32(v) => tract::Tensor::from_shape(shape, v),
        TensorData::F64(v) => tract::Tensor::from_shape(shape, v),
    };
    built.map_err(|e| EngineError::Inference(format!("{e:#}")))
}

fn from_tract(
    value: &tract::Tensor,
    spec: &TensorSpec,
    add_axis: bool,
) -> Result<Tensor, EngineError> {
    fn collect<T: Datum + Copy>(t: &tract::Tensor) -> TractResult<Vec<T>> {
        let cast = t.cast_to::<T>()?;
        Ok(cast.to_plain_array_view::<T>()?.iter().copied().collect())
    }
    let fail =
        |e: tract::TractError| EngineError::Inference(format!("output {}: {e:#}", spec.name));
    let data = match spec.dtype {
        DataType::Bool => TensorData::Bool(collect::<bool>(value).map_err(fail)?),
        DataType::U8 => TensorData::U8(collect::<u8>(value).map_err(fail)?),
        DataType::I32 => TensorData::I32(collect::<i32>(value).map_err(fail)?),
        DataType::I64 => TensorData::I64(collect::<i64>(value).map_err(fail)?),
        DataType::F32 => TensorData::F32(collect::<f32>(value).map_err(fail)?),
        DataType::F64 => TensorData::F64(collect::<f64>(value).map_err(fail)?),
    };
    let mut shape = value.shape().to_vec();
    if add_axis {
        shape.insert(0, 1);
    }
    if shape.is_empty() {
        shape.push(1);
    }
    Tensor::new(shape, data).ok_or_else(|| {
        EngineError::Inference(format!("output {} has an inconsistent shape", spec.name))
    })
}

/// One tract tensor of `shape` holding `parts` back to back (all of one element type).
fn stack_into_tract<'a>(
    shape: &[usize],
    mut parts: impl Iterator<Item = &'a TensorData>,
) -> Result<tract::Tensor, EngineError> {
    fn fill<'p, T: Datum + Copy>(
        shape: &[usize],
        first: &'p [T],
        rest: impl Iterator<Item = Option<&'p [T]>>,
    ) -> Result<tract::Tensor, EngineError> {
        let mut tensor = tract::Tensor::zero_dt(T::datum_type(), shape)
            .map_err(|e| EngineError::Inference(format!("{e:#}")))?;
        let mut view = tensor
            .try_as_plain_ram_mut()
            .map_err(|e| EngineError::Inference(format!("{e:#}")))?;
        let out = view
            .as_slice_mut::<T>()
            .map_err(|e| EngineError::Inference(format!("{e:#}")))?;
        let mut at = 0;
        for part in std::iter::once(Some(first)).chain(rest) {
            let part = part.ok_or_else(|| EngineError::bad_input("*", "mixed element types"))?;
            let end = at + part.len();
            if end > out.len() {
                return Err(EngineError::bad_input(
                    "*",
                    "batch parts overflow the batch",
                ));
            }
            out[at..end].copy_from_slice(part);
            at = end;
        }
        if at != out.len() {
            return Err(EngineError::bad_input(
                "*",
                "batch parts do not fill the batch",
            ));
        }
        Ok(tensor)
    }
    macro_rules! stack {
        ($variant:ident, $first:expr) => {
            fill(
                shape,
                $first,
                parts.map(|p| match p {
                    TensorData::$variant(v) => Some(v.as_slice()),
                    _ => None,
                }),
            )
        };
    }
    match parts.next() {
        Some(TensorData::Bool(v)) => stack!(Bool, v),
        Some(TensorData::U8(v)) => stack!(U8, v),
        Some(TensorData::I32(v)) => stack!(I32, v),
        Some(TensorData::I64(v)) => stack!(I64, v),
        Some(TensorData::F32(v)) => stack!(F32, v),
        Some(TensorData::F64(v)) => stack!(F64, v),
        None => Err(EngineError::bad_input("*", "an empty batch")),
    }
}

/// One tract output split into consecutive row blocks of `rows` (one per caller), each copied
/// once into an infera tensor of the spec's element type.
fn split_from_tract(
    value: &tract::Tensor,
    spec: &TensorSpec,
    rows: &[usize],
) -> Result<Vec<Tensor>, EngineError> {
    fn split<T: Datum + Copy>(
        value: &tract::Tensor,
        rows: &[usize],
        wrap: fn(Vec<T>) -> TensorData,
    ) -> TractResult<Vec<(usize, TensorData)>> {
        let cast = value.cast_to::<T>()?;
        let view = cast.try_as_plain_ram()?;
        let all = view.as_slice::<T>()?;
        let total: usize = rows.iter().sum();
        let row_len = all.len() / total.max(1);
        let mut at = 0;
        Ok(rows
            .iter()
            .map(|&r| {
                let part = wrap(all[at * row_len..(at + r) * row_len].to_vec());
                at += r;
                (r, part)
            })
            .collect())
    }
    let fail =
        |e: tract::TractError| EngineError::Inference(format!("output {}: {e:#}", spec.name));
    let parts = match spec.dtype {
        DataType::Bool => split::<bool>(value, rows, TensorData::Bool),
        DataType::U8 => split::<u8>(value, rows, TensorData::U8),
        DataType::I32 => split::<i32>(value, rows, TensorData::I32),
        DataType::I64 => split::<i64>(value, rows, TensorData::I64),
        DataType::F32 => split::<f32>(value, rows, TensorData::F32),
        DataType::F64 => split::<f64>(value, rows, TensorData::F64),
    }
    .map_err(fail)?;
    parts
        .into_iter()
        .map(|(r, data)| {
            let shape: Vec<usize> = std::iter::once(r)
                .chain(value.shape().iter().skip(1).copied())
                .collect();
            Tensor::new(shape, data).ok_or_else(|| {
                EngineError::Inference(format!("output {} has an inconsistent shape", spec.name))
            })
        })
        .collect()
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
    match (&mut acc.data, t.data) {
        (TensorData::Bool(a), TensorData::Bool(b)) => a.extend(b),
        (TensorData::U8(a), TensorData::U8(b)) => a.extend(b),
        (TensorData::I32(a), TensorData::I32(b)) => a.extend(b),
        (TensorData::I64(a), TensorData::I64(b)) => a.extend(b),
        (TensorData::F32(a), TensorData::F32(b)) => a.extend(b),
        (TensorData::F64(a), TensorData::F64(b)) => a.extend(b),
        _ => {
            return Err(EngineError::Inference(
                "per-instance outputs differ in type".into(),
            ))
        }
    }
    acc.shape[0] += t.shape[0];
    Ok(())
}
