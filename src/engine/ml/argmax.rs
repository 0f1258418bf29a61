//! ArgMax on float inputs as one contiguous loop. Nearly every skl2onnx classifier ends with an
//! ArgMax over the class scores (MLP, naive Bayes, AdaBoost's per-estimator votes...); tract's
//! Reduce builds an ndarray view per output element, which at batch 64 cost more than the
//! classifier's own arithmetic (see docs/benchmarks.md). Same answers as tract's: the first
//! largest value (the last with `select_last_index`), starting from the lowest finite float.
//! Other element types keep tract's op.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::nn::{Reduce, Reducer};

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

pub fn arg_max(_: &ParsingContext, node: &NodeProto) -> Built {
    let axis = node.get_attr_opt::<i64>("axis")?.unwrap_or(0);
    let keep_dims = node.get_attr_opt::<i64>("keepdims")?.unwrap_or(1) != 0;
    let last = node.get_attr_opt::<i64>("select_last_index")?.unwrap_or(0) != 0;
    let reduce = Reduce::new(Some(vec![axis]), keep_dims, Reducer::ArgMax(last));
    Ok((expand(ArgMax { reduce, axis, last }), vec![]))
}

/// tract's Reduce for the shape rules (and the wiring of non-float inputs).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct ArgMax {
    reduce: Reduce,
    axis: i64,
    last: bool,
}

impl Expansion for ArgMax {
    fn name(&self) -> StaticName {
        "ArgMax".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        self.reduce.rules(s, inputs, outputs)
    }

    fn wire(
        &self,
        name: &str,
        target: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let fact = target.outlet_fact(inputs[0])?.clone();
        let float = [f32::datum_type(), f64::datum_type()].contains(&fact.datum_type);
        if !float {
            return self.reduce.wire(name, target, inputs);
        }
        let rank = fact.rank() as i64;
        let axis = if self.axis < 0 {
            self.axis + rank
        } else {
            self.axis
        };
        let axis = usize::try_from(axis)
            .ok()
            .filter(|a| (*a as i64) < rank)
            .ok_or_else(|| format_err!("{name} (ArgMax): axis {} for rank {rank}", self.axis))?;
        let op = RowArgMax {
            axis,
            last: self.last,
        };
        let mut wire = target.wire_node(name, op, inputs)?[0];
        if !self.reduce.keep_dims {
            wire = target.wire_node(format!("{name}.rm{axis}"), AxisOp::Rm(axis), &[wire])?[0];
        }
        Ok(tvec!(wire))
    }
}

/// The typed op: indices (i64) of the largest value along `axis`, which stays with size 1.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct RowArgMax {
    axis: usize,
    last: bool,
}

impl Op for RowArgMax {
    fn name(&self) -> StaticName {
        "ArgMax".into()
    }

    op_as_typed_op!();
}

impl EvalOp for RowArgMax {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let shape = x.shape();
        ensure!(
            self.axis < shape.len(),
            "ArgMax: axis {} of {shape:?}",
            self.axis
        );
        let outer: usize = shape[..self.axis].iter().product();
        let len = shape[self.axis];
        let inner: usize = shape[self.axis + 1..].iter().product();
        let view = x.try_as_plain_ram()?;
        let mut out = vec![0i64; outer * inner];
        if x.datum_type() == f64::datum_type() {
            arg_max_into(
                view.as_slice::<f64>()?,
                f64::MIN,
                (len, inner),
                self.last,
                &mut out,
            );
        } else {
            arg_max_into(
                view.as_slice::<f32>()?,
                f32::MIN,
                (len, inner),
                self.last,
                &mut out,
            );
        }
        let mut out_shape = shape.to_vec();
        out_shape[self.axis] = 1;
        Ok(tvec!(Tensor::from_shape(&out_shape, &out)?.into_tvalue()))
    }
}

/// For every (outer, inner) position of `x` (`[outer, len, inner]` row-major), the index along
/// `len` of the largest value, as tract's fold: from `(0, min)`, a value wins when larger (or
/// equal, with `last`).
fn arg_max_into<T: Copy + PartialOrd>(
    x: &[T],
    min: T,
    (len, inner): (usize, usize),
    last: bool,
    out: &mut [i64],
) {
    let block = len * inner;
    for (o, out_row) in out.chunks_exact_mut(inner.max(1)).enumerate() {
        let Some(xs) = x.get(o * block..(o + 1) * block) else {
            break;
        };
        for (i, slot) in out_row.iter_mut().enumerate() {
            let mut best = (0usize, min);
            for k in 0..len {
                let v = xs[k * inner + i];
                if v > best.1 || (last && v == best.1) {
                    best = (k, v);
                }
            }
            *slot = best.0 as i64;
        }
    }
}

impl TypedOp for RowArgMax {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut dims: TVec<TDim> = inputs[0].shape.dims().iter().cloned().collect();
        ensure!(
            self.axis < dims.len(),
            "ArgMax: axis {} of rank {}",
            self.axis,
            dims.len()
        );
        dims[self.axis] = 1.to_dim();
        Ok(tvec!(i64::datum_type().fact(dims)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_hir::tract_core::ops::nn::Reducer as TReducer;

    /// Our answer and tract's Reduce on the same tensor.
    fn both(x: &Tensor, axis: usize, last: bool) -> (Tensor, Tensor) {
        let ours = RowArgMax { axis, last }
            .eval(&EvalContext::out_of_plan(), tvec!(x.clone().into_tvalue()))
            .unwrap()
            .remove(0)
            .into_tensor();
        let theirs = TReducer::ArgMax(last).reduce(&[axis], x).unwrap();
        (ours, theirs)
    }

    #[test]
    fn agrees_with_tracts_reduce_on_ties_nans_and_every_axis() {
        let data: Vec<f32> = vec![
            1.0,
            3.0,
            3.0,
            -1.0, //
            f32::NAN,
            0.5,
            f32::NEG_INFINITY,
            0.5, //
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            2.0,
            2.0, //
            0.0,
            -0.0,
            7.0,
            7.0, //
            5.0,
            4.0,
            f32::NAN,
            9.0, //
            -2.0,
            -2.0,
            -2.0,
            -2.0,
        ];
        let x = Tensor::from_shape(&[2, 3, 4], &data).unwrap();
        for axis in 0..3 {
            for last in [false, true] {
                let (ours, theirs) = both(&x, axis, last);
                assert_eq!(ours, theirs, "axis {axis} last {last}");
            }
        }
        let wide: Vec<f64> = (0..64 * 6).map(|i| ((i * 7919) % 13) as f64).collect();
        let x = Tensor::from_shape(&[64, 6], &wide).unwrap();
        for last in [false, true] {
            let (ours, theirs) = both(&x, 1, last);
            assert_eq!(ours, theirs);
        }
    }
}
