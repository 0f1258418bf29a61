//! ONNX map inputs (`map(K, V)`, as skl2onnx exports DictVectorizer pipelines) as infera carries
//! them: three tensors per map input, batch first, which the loader puts in the graph's place of
//! the map (`ml/map_inputs.rs`) and infera's DictVectorizer / CastMap operators read:
//!
//! - `<name>.keys`: the maps' keys, `[N, M]` (string or int64),
//! - `<name>.values`: their values, `[N, M]` (float, double, int64 or string),
//! - `<name>.lengths`: how many of the `M` slots of each row hold an entry, `[N]` int64; the
//!   slots after them are padding and are never read.
//!
//! Instance `i`'s map is `keys[i][j] -> values[i][j]` for `j < lengths[i]`. This file holds only
//! the names, so the contract can recognise the three tensors without naming tract.

use super::tensor::{DataType, TensorSpec};

/// Suffix of the keys tensor of a map input.
pub const KEYS: &str = ".keys";
/// Suffix of the values tensor of a map input.
pub const VALUES: &str = ".values";
/// Suffix of the tensor of entry counts of a map input.
pub const LENGTHS: &str = ".lengths";

/// One map input of a graph, as its three tensors (indices into the signature's inputs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapInput {
    /// The graph's name for the map input.
    pub name: String,
    pub keys: usize,
    pub values: usize,
    pub lengths: usize,
    pub key_type: DataType,
    pub value_type: DataType,
}

/// The map inputs among `inputs`: every `X.keys` `[N, M]` with an `X.values` `[N, M]` and an
/// int64 `X.lengths` `[N]`.
pub fn map_inputs(inputs: &[TensorSpec]) -> Vec<MapInput> {
    let find = |name: String| inputs.iter().position(|s| s.name == name);
    inputs
        .iter()
        .enumerate()
        .filter_map(|(keys, spec)| {
            let name = spec.name.strip_suffix(KEYS)?;
            let values = find(format!("{name}{VALUES}"))?;
            let lengths = find(format!("{name}{LENGTHS}"))?;
            let fits = spec.shape.len() == 2
                && inputs[values].shape.len() == 2
                && inputs[lengths].shape.len() == 1
                && inputs[lengths].dtype == DataType::I64
                && matches!(spec.dtype, DataType::String | DataType::I64);
            fits.then(|| MapInput {
                name: name.to_string(),
                keys,
                values,
                lengths,
                key_type: spec.dtype,
                value_type: inputs[values].dtype,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Dim;

    fn spec(name: &str, dtype: DataType, rank: usize) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype,
            shape: vec![Dim::Dynamic; rank],
        }
    }

    #[test]
    fn the_three_tensors_of_a_map_are_recognised() {
        let inputs = vec![
            spec("x", DataType::F32, 2),
            spec("m.keys", DataType::String, 2),
            spec("m.values", DataType::F32, 2),
            spec("m.lengths", DataType::I64, 1),
        ];
        let maps = map_inputs(&inputs);
        assert_eq!(
            maps,
            vec![MapInput {
                name: "m".into(),
                keys: 1,
                values: 2,
                lengths: 3,
                key_type: DataType::String,
                value_type: DataType::F32,
            }]
        );
        assert!(map_inputs(&inputs[..3]).is_empty(), "no lengths, no map");
    }
}
