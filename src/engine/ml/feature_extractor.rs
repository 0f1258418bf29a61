//! ArrayFeatureExtractor as onnxruntime runs it (`array_feature_extractor.cc`): the indices,
//! whatever their shape, are flattened and picked from the last axis of X, so X `[.., C]` and
//! `k` indices give `[.., k]`. tract's version gathers with the indices' own shape (X `[3, 3]`
//! and indices `[N, 1]` gave `[3, N, 1]`, not `[3, N]`) and takes only i64 indices, while tract
//! reads an ONNX Cast to int64 as its TDim type: skl2onnx's CategoricalNB export (per-row
//! indices cast from the encoded features) failed to load on both counts.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::tract_core::ops::array::Gather;
use tract_onnx::tract_hir::tract_core::ops::cast::cast;

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

pub fn array_feature_extractor(_: &ParsingContext, _: &NodeProto) -> Built {
    Ok((expand(ArrayFeatureExtractor), vec![]))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct ArrayFeatureExtractor;

/// The output shape: X without its last axis, then one axis of every index. A 1-D X keeps
/// tract's `[k]` (onnxruntime writes `[1, k]`; skl2onnx reshapes it right after).
fn output_shape(x: &[TDim], indices: &[TDim]) -> TVec<TDim> {
    let count: TDim = indices.iter().product();
    x[..x.len().saturating_sub(1)]
        .iter()
        .cloned()
        .chain(std::iter::once(count))
        .collect()
}

impl Expansion for ArrayFeatureExtractor {
    fn name(&self) -> StaticName {
        "ArrayFeatureExtractor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].rank, &outputs[0].rank)?;
        s.given_2(&inputs[0].shape, &inputs[1].shape, move |s, x, indices| {
            s.equals(&outputs[0].shape, output_shape(&x, &indices))
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let x = model.outlet_fact(inputs[0])?.clone();
        ensure!(
            x.rank() >= 1,
            "{prefix} (ArrayFeatureExtractor): X is a scalar"
        );
        let mut indices = inputs[1];
        let fact = model.outlet_fact(indices)?.clone();
        if fact.datum_type != i64::datum_type() {
            ensure!(
                fact.datum_type.is_integer() || fact.datum_type == TDim::datum_type(),
                "{prefix} (ArrayFeatureExtractor): indices of type {:?}",
                fact.datum_type
            );
            indices = model.wire_node(
                format!("{prefix}.indices_i64"),
                cast(i64::datum_type()),
                &[indices],
            )?[0];
        }
        if fact.rank() == 0 {
            indices = model.wire_node(format!("{prefix}.one"), AxisOp::Add(0), &[indices])?[0];
        } else if fact.rank() > 1 {
            let dims: TVec<TDim> = fact.shape.iter().cloned().collect();
            let count: TDim = dims.iter().product();
            indices = model.wire_node(
                format!("{prefix}.flatten"),
                AxisOp::Reshape(0, dims, tvec![count]),
                &[indices],
            )?[0];
        }
        let gather = Gather {
            axis: x.rank() - 1,
            output_type: None,
        };
        model.wire_node(prefix, gather, &[inputs[0], indices])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_of_any_shape_are_flattened_onto_the_last_axis() {
        let mut model = InferenceModel::default();
        let x = model.add_source("x", f32::fact([2, 3]).into()).unwrap();
        let i = model.add_source("i", i64::fact([2, 1]).into()).unwrap();
        let out = model
            .wire_node("afe", expand(ArrayFeatureExtractor), &[x, i])
            .unwrap();
        model.select_output_outlets(&out).unwrap();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let x = tensor2(&[[0f32, 1.0, 2.0], [3.0, 4.0, 5.0]]);
        let i = tensor2(&[[2i64], [0]]);
        let out = plan.run(tvec!(x.into_tvalue(), i.into_tvalue())).unwrap();
        assert_eq!(out[0].shape(), &[2, 2]);
        assert_eq!(
            out[0]
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            &[2.0, 0.0, 5.0, 3.0]
        );
    }

    #[test]
    fn shapes_follow_onnxruntime() {
        let d = |v: &[usize]| v.iter().map(|x| x.to_dim()).collect::<Vec<_>>();
        assert_eq!(output_shape(&d(&[3, 3]), &d(&[5, 1])).to_vec(), d(&[3, 5]));
        assert_eq!(output_shape(&d(&[4, 3]), &d(&[1])).to_vec(), d(&[4, 1]));
        assert_eq!(output_shape(&d(&[3]), &d(&[7])).to_vec(), d(&[7]));
    }
}
