//! One tract operator that runs any infera ML kernel. A kernel is plain Rust: it says what it
//! outputs per instance and computes outputs from inputs whose first axis is the batch. The
//! wrapper supplies tract's shape inference (hir rules), typing and evaluation.

use std::fmt::Debug;
use std::sync::Arc;

use tract_onnx::tract_hir::internal::*;

use crate::engine::error::InputRejected;

/// An operator's refusal of the values it was given: the request gets a 422, not a 500.
pub fn rejected(reason: impl Into<String>) -> TractError {
    InputRejected(reason.into()).into()
}

/// The computation of one ai.onnx.ml node.
pub trait Kernel: Debug + Send + Sync + 'static {
    /// ONNX op type, for dumps and errors.
    fn name(&self) -> &'static str;

    /// Number of inputs the node takes.
    fn arity(&self) -> usize {
        1
    }

    /// Per output: element type and shape.
    fn outputs(&self) -> Vec<(DatumType, OutShape)>;

    /// Computes every output; inputs arrive with the batch axis first.
    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>>;

    /// As [`Kernel::eval`], owning the inputs: a kernel whose output is its input changed in
    /// place overrides it (the plan hands over values no later node reads).
    fn eval_owned(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.eval(&inputs)
    }

    /// Refuses, when the plan is typed (at load), an element type of input 0 the kernel does
    /// not take.
    fn check_input(&self, _dt: DatumType) -> TractResult<()> {
        Ok(())
    }
}

fn mints(kernel: &dyn Kernel) -> bool {
    kernel
        .outputs()
        .iter()
        .any(|(_, shape)| matches!(shape, OutShape::InputThen(_)))
}

/// The shape of one output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutShape {
    /// The batch axis of input 0, then these dims.
    Rows(Vec<usize>),
    /// The shape of input 0.
    SameAsInput,
    /// The shape of input 0 with one more axis of this size at the end.
    InputPlus(usize),
    /// The shape of input 0, then an axis whose size only the data decides (tokens per text):
    /// a symbol the plan binds from the output when the op has run.
    InputThen(Symbol),
}

/// Wraps a kernel as both an inference-time expansion and a typed, evaluable op.
#[derive(Debug, Clone)]
pub struct MlOp(pub Arc<dyn Kernel>);

impl MlOp {
    pub fn boxed(kernel: impl Kernel) -> Box<dyn InferenceOp> {
        expand(MlOp(Arc::new(kernel)))
    }
}

impl PartialEq for MlOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for MlOp {}

impl Op for MlOp {
    fn name(&self) -> StaticName {
        self.0.name().into()
    }

    fn mints_runtime_symbols(&self) -> bool {
        mints(self.0.as_ref())
    }

    op_as_typed_op!();
}

impl EvalOp for MlOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.0.eval_owned(inputs)
    }
}

impl TypedOp for MlOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let input = inputs
            .first()
            .ok_or_else(|| format_err!("{}: no input", self.0.name()))?;
        self.0.check_input(input.datum_type)?;
        let dims = input.shape.dims();
        let batch = dims
            .first()
            .cloned()
            .ok_or_else(|| format_err!("{}: input must have a batch axis", self.0.name()))?;
        Ok(self
            .0
            .outputs()
            .into_iter()
            .map(|(dt, shape)| {
                let dims: TVec<TDim> = match shape {
                    OutShape::Rows(rest) => std::iter::once(batch.clone())
                        .chain(rest.iter().map(|d| d.to_dim()))
                        .collect(),
                    OutShape::SameAsInput => dims.iter().cloned().collect(),
                    OutShape::InputPlus(n) => dims
                        .iter()
                        .cloned()
                        .chain(std::iter::once(n.to_dim()))
                        .collect(),
                    OutShape::InputThen(sym) => dims
                        .iter()
                        .cloned()
                        .chain(std::iter::once(TDim::Sym(sym)))
                        .collect(),
                };
                dt.fact(dims)
            })
            .collect())
    }

    as_op!();
}

impl Expansion for MlOp {
    fn name(&self) -> StaticName {
        self.0.name().into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(self.0.outputs().len())
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, self.0.arity())?;
        let shapes = self.0.outputs();
        check_output_arity(outputs, shapes.len())?;
        for (output, (dt, shape)) in outputs.iter().zip(shapes) {
            s.equals(&output.datum_type, dt)?;
            match shape {
                OutShape::Rows(rest) => {
                    s.equals(&output.rank, (rest.len() + 1) as i64)?;
                    s.equals(&output.shape[0], &inputs[0].shape[0])?;
                    for (axis, dim) in rest.iter().enumerate() {
                        s.equals(&output.shape[axis + 1], dim.to_dim())?;
                    }
                }
                OutShape::SameAsInput => s.equals(&output.shape, &inputs[0].shape)?,
                OutShape::InputPlus(n) => {
                    s.equals(&output.rank, inputs[0].rank.bex() + 1)?;
                    s.given(&inputs[0].rank, move |s, rank| {
                        for axis in 0..rank as usize {
                            s.equals(&output.shape[axis], &inputs[0].shape[axis])?;
                        }
                        s.equals(&output.shape[rank as usize], n.to_dim())
                    })?;
                }
                OutShape::InputThen(sym) => {
                    s.equals(&output.rank, inputs[0].rank.bex() + 1)?;
                    s.given(&inputs[0].rank, move |s, rank| {
                        for axis in 0..rank as usize {
                            s.equals(&output.shape[axis], &inputs[0].shape[axis])?;
                        }
                        s.equals(&output.shape[rank as usize], TDim::Sym(sym.clone()))
                    })?;
                }
            }
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, self.clone(), inputs)
    }
}

/// An input as a row-major f32 matrix `[rows, width]`, borrowed when it already is f32 (other
/// numeric types are cast; a rank-1 input is one row).
pub fn rows_f32(input: &TValue) -> TractResult<(std::borrow::Cow<'_, [f32]>, usize, usize)> {
    let shape = input.shape().to_vec();
    let (rows, width) = match shape.as_slice() {
        [] => (1, 1),
        [w] => (1, *w),
        [n, rest @ ..] => (*n, rest.iter().product()),
    };
    if input.datum_type() == f32::datum_type() {
        if let Ok(view) = input.try_as_plain_ram() {
            if let Ok(slice) = view.as_slice::<f32>() {
                return Ok((std::borrow::Cow::Borrowed(slice), rows, width));
            }
        }
    }
    let cast = input.cast_to::<f32>()?;
    let data: Vec<f32> = cast.to_plain_array_view::<f32>()?.iter().copied().collect();
    Ok((std::borrow::Cow::Owned(data), rows, width))
}

/// Builds an output tensor `[rows, rest...]`.
pub fn output<T: Datum + Copy>(rows: usize, rest: &[usize], data: &[T]) -> TractResult<TValue> {
    let shape: Vec<usize> = std::iter::once(rows).chain(rest.iter().copied()).collect();
    Ok(Tensor::from_shape(&shape, data)?.into_tvalue())
}

/// Dot product with eight independent accumulators, so the compiler can vectorise it (a plain
/// iterator sum keeps one strict left-to-right chain).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let mut chunks_a = a.chunks_exact(8);
    let mut chunks_b = b.chunks_exact(8);
    for (ca, cb) in (&mut chunks_a).zip(&mut chunks_b) {
        for k in 0..8 {
            acc[k] += ca[k] * cb[k];
        }
    }
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// Squared Euclidean distance, vectorisable like [`dot`].
#[inline]
pub fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let mut chunks_a = a.chunks_exact(8);
    let mut chunks_b = b.chunks_exact(8);
    for (ca, cb) in (&mut chunks_a).zip(&mut chunks_b) {
        for k in 0..8 {
            let d = ca[k] - cb[k];
            acc[k] += d * d;
        }
    }
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_and_distance_match_the_plain_sums() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.25).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-4);
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        assert!((squared_distance(&a, &b) - plain).abs() < 1e-3);
    }
}
