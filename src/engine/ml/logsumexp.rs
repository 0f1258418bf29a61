//! ReduceLogSumExp computed the stable way, `max + ln(sum(exp(x - max)))`, as onnxruntime does.
//! tract wires it as `ln(sum(exp(x)))`, which overflows f32 as soon as an input passes ~88:
//! skl2onnx's naive Bayes exports (MultinomialNB, ComplementNB on unscaled counts) normalise
//! joint log-likelihoods in the thousands with it, and tract answered `inf` probabilities.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::nn::{Reduce, Reducer};
use tract_onnx::tract_hir::tract_core::ops::math;
use tract_onnx::tract_hir::tract_core::ops::nn::{Reduce as TReduce, Reducer as TReducer};

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// Parses ReduceLogSumExp with the `axes` attribute (opsets below 18; skl2onnx writes 15). From
/// opset 18 the axes are an input: those nodes keep tract's own (unshifted) op.
pub fn reduce_log_sum_exp(ctx: &ParsingContext, node: &NodeProto) -> Built {
    if ctx.onnx_operator_set_version >= 18 {
        let tract = tract_onnx::onnx();
        let builder = tract
            .op_register
            .0
            .get("ReduceLogSumExp")
            .ok_or_else(|| format_err!("tract has no ReduceLogSumExp"))?;
        return builder(ctx, node);
    }
    let axes = node.get_attr_opt_vec("axes")?;
    let keep_dims = node.get_attr_opt("keepdims")?.unwrap_or(1i64) == 1;
    Ok((
        expand(StableLogSumExp(Reduce::new(
            axes,
            keep_dims,
            Reducer::LogSumExp,
        ))),
        vec![],
    ))
}

/// tract's Reduce for the shape rules; the wiring is ours.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct StableLogSumExp(Reduce);

impl Expansion for StableLogSumExp {
    fn name(&self) -> StaticName {
        "StableReduceLogSumExp".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        self.0.rules(s, inputs, outputs)
    }

    fn wire(
        &self,
        name: &str,
        target: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let x = inputs[0];
        let fact = target.outlet_fact(x)?.clone();
        ensure!(
            fact.datum_type.is_float(),
            "{name} (ReduceLogSumExp): takes floats, got {:?}",
            fact.datum_type
        );
        let axes = resolve_axes(self.0.axes.as_deref(), fact.rank())?;
        // The reduced axes stay (size 1) until the end, so `x - max` broadcasts.
        let reduce = |r| TReduce::new(axes.clone(), r);
        let max = target.wire_node(format!("{name}.max"), reduce(TReducer::Max), &[x])?[0];
        let shifted = target.wire_node(format!("{name}.shift"), math::sub(), &[x, max])?[0];
        let exp = target.wire_node(format!("{name}.exp"), math::exp(), &[shifted])?[0];
        let sum = target.wire_node(format!("{name}.sum"), reduce(TReducer::Sum), &[exp])?[0];
        let ln = target.wire_node(format!("{name}.ln"), math::ln(), &[sum])?[0];
        let mut wire = target.wire_node(format!("{name}.unshift"), math::add(), &[ln, max])?[0];
        if !self.0.keep_dims {
            for axis in axes.iter().rev() {
                wire = target.wire_node(format!("{name}.rm{axis}"), AxisOp::Rm(*axis), &[wire])?[0];
            }
        }
        Ok(tvec!(wire))
    }
}

/// ONNX axes (negative from the end; none means all) as sorted, distinct axes of `rank`.
fn resolve_axes(axes: Option<&[i64]>, rank: usize) -> TractResult<TVec<usize>> {
    let Some(axes) = axes else {
        return Ok((0..rank).collect());
    };
    let mut resolved: TVec<usize> = axes
        .iter()
        .map(|&a| {
            let r = if a < 0 { a + rank as i64 } else { a };
            usize::try_from(r)
                .ok()
                .filter(|r| *r < rank)
                .ok_or_else(|| format_err!("ReduceLogSumExp: axis {a} for rank {rank}"))
        })
        .collect::<TractResult<_>>()?;
    resolved.sort_unstable();
    resolved.dedup();
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-node model: ReduceLogSumExp over `axes` of a [2, 3] f32 input.
    fn run(axes: Option<Vec<i64>>, keep_dims: bool, x: &[f32]) -> Tensor {
        let mut model = InferenceModel::default();
        let input = model.add_source("x", f32::fact([2, 3]).into()).unwrap();
        let op = expand(StableLogSumExp(Reduce::new(
            axes,
            keep_dims,
            Reducer::LogSumExp,
        )));
        let out = model.wire_node("lse", op, &[input]).unwrap();
        model.select_output_outlets(&out).unwrap();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let x = tract_ndarray::Array2::from_shape_vec((2, 3), x.to_vec()).unwrap();
        let out = plan.run(tvec!(Tensor::from(x).into_tvalue())).unwrap();
        out[0].clone().into_tensor()
    }

    #[test]
    fn large_inputs_do_not_overflow() {
        let out = run(
            Some(vec![1]),
            true,
            &[-1000.0, -1001.0, -1002.0, 500.0, 400.0, 0.0],
        );
        assert_eq!(out.shape(), &[2, 1]);
        let got: Vec<f32> = out
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        let want = [-1000.0 + (1.0 + (-1f32).exp() + (-2f32).exp()).ln(), 500.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-3, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn axes_and_keep_dims_follow_onnx() {
        let x = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let out = run(Some(vec![-2]), false, &x);
        assert_eq!(out.shape(), &[3]);
        let got: Vec<f32> = out
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        let want = (0.0f32.exp() + 3.0f32.exp()).ln();
        assert!((got[0] - want).abs() < 1e-5, "{got:?}");
        let all = run(None, false, &x);
        assert_eq!(all.shape(), &[] as &[usize]);
        let want: f32 = x.iter().map(|v| v.exp()).sum::<f32>().ln();
        assert!(
            (all.to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .next()
                .unwrap()
                - want)
                .abs()
                < 1e-5
        );
    }
}
