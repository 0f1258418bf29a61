//! Reading ai.onnx.ml node attributes, including the `*_as_tensor` encodings.

use tract_onnx::pb::tensor_proto::DataType as PbType;
use tract_onnx::pb::{NodeProto, TensorProto};
use tract_onnx::tract_hir::internal::*;

/// Values of a float attribute given either as `name` (floats) or `name_as_tensor` (a float or
/// double tensor). Doubles are kept exact.
pub fn floats(node: &NodeProto, name: &str) -> TractResult<Option<Vec<f64>>> {
    if let Some(values) = node.get_attr_opt_slice::<f32>(name)? {
        return Ok(Some(values.iter().map(|v| f64::from(*v)).collect()));
    }
    match node.get_attr_opt::<&TensorProto>(&format!("{name}_as_tensor"))? {
        Some(t) => tensor_floats(t)
            .map(Some)
            .with_context(|| format!("attribute {name}_as_tensor of {}", node.name)),
        None => Ok(None),
    }
}

/// Like [`floats`], but the attribute must be there.
pub fn required_floats(node: &NodeProto, name: &str) -> TractResult<Vec<f64>> {
    floats(node, name)?
        .ok_or_else(|| format_err!("{} ({}): missing attribute {name}", node.name, node.op_type))
}

/// [`floats`] narrowed to f32 (the SVM and linear kernels compute in f32, like onnxruntime),
/// empty when absent.
pub fn f32s(node: &NodeProto, name: &str) -> TractResult<Vec<f32>> {
    Ok(floats(node, name)?
        .unwrap_or_default()
        .iter()
        .map(|v| *v as f32)
        .collect())
}

/// [`required_floats`] narrowed to f32.
pub fn required_f32s(node: &NodeProto, name: &str) -> TractResult<Vec<f32>> {
    Ok(required_floats(node, name)?
        .iter()
        .map(|v| *v as f32)
        .collect())
}

/// Integers of `name`, empty when absent.
pub fn ints(node: &NodeProto, name: &str) -> TractResult<Vec<i64>> {
    Ok(node
        .get_attr_opt_slice::<i64>(name)?
        .map(<[i64]>::to_vec)
        .unwrap_or_default())
}

/// Non-negative integers of `name` as indices.
pub fn indices(node: &NodeProto, name: &str) -> TractResult<Vec<usize>> {
    ints(node, name)?
        .into_iter()
        .map(|v| {
            usize::try_from(v)
                .map_err(|_| format_err!("{}: attribute {name} has negative value {v}", node.name))
        })
        .collect()
}

/// Strings of `name`, empty when absent.
pub fn strings(node: &NodeProto, name: &str) -> TractResult<Vec<String>> {
    Ok(node.get_attr_opt_vec::<String>(name)?.unwrap_or_default())
}

fn tensor_floats(t: &TensorProto) -> TractResult<Vec<f64>> {
    let dt = PbType::try_from(t.data_type)
        .map_err(|_| format_err!("unknown tensor type {}", t.data_type))?;
    match dt {
        PbType::Double if !t.double_data.is_empty() => Ok(t.double_data.clone()),
        PbType::Float if !t.float_data.is_empty() => {
            Ok(t.float_data.iter().map(|v| f64::from(*v)).collect())
        }
        PbType::Double => Ok(t
            .raw_data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect()),
        PbType::Float => Ok(t
            .raw_data
            .chunks_exact(4)
            .map(|b| f64::from(f32::from_le_bytes(b.try_into().expect("4 bytes"))))
            .collect()),
        other => bail!("expected a float or double tensor, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::AttributeProto;

    fn node(attribute: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            name: "n".into(),
            op_type: "TreeEnsembleRegressor".into(),
            attribute,
            ..Default::default()
        }
    }

    #[test]
    fn floats_come_from_plain_or_as_tensor_attributes() {
        let plain = node(vec![AttributeProto {
            name: "nodes_values".into(),
            r#type: 6,
            floats: vec![0.5, 1.5],
            ..Default::default()
        }]);
        assert_eq!(
            floats(&plain, "nodes_values").unwrap(),
            Some(vec![0.5, 1.5])
        );
        let double = TensorProto {
            dims: vec![2],
            data_type: PbType::Double as i32,
            double_data: vec![0.1, 2.5],
            ..Default::default()
        };
        let raw = TensorProto {
            dims: vec![2],
            data_type: PbType::Float as i32,
            raw_data: [0.25f32, -1.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            ..Default::default()
        };
        for (tensor, want) in [(double, vec![0.1, 2.5]), (raw, vec![0.25, -1.0])] {
            let n = node(vec![AttributeProto {
                name: "nodes_values_as_tensor".into(),
                r#type: 4,
                t: Some(tensor),
                ..Default::default()
            }]);
            assert_eq!(floats(&n, "nodes_values").unwrap(), Some(want));
        }
        assert_eq!(floats(&node(vec![]), "nodes_values").unwrap(), None);
        assert!(required_floats(&node(vec![]), "nodes_values")
            .unwrap_err()
            .to_string()
            .contains("missing attribute nodes_values"));
    }
}
