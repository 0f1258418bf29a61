//! Instances of a model whose only input is an ONNX map (a DictVectorizer or CastMap graph; the
//! engine carries the map as three tensors, `engine/maps.rs`): each instance is one map, a JSON
//! object `{"key": value, ...}`. The request's maps are read into keys `[N, M]`, values `[N, M]`
//! (padded to the largest map, `M` its entry count) and lengths `[N]`, so they run as one batch.
//!
//! Keys are the object's names (int64 maps: each name read as a base-10 integer; two names for
//! one integer, `"1"` and `"01"`, are refused). Values must fit the map's value type.

use std::collections::HashSet;

use serde_json::Value;

use super::instances::{json_kind, violation, ContractViolation, Sink, ViolationKind};
use super::{InputContract, Instance};
use crate::engine::{map_inputs, DataType, MapInput, Tensor, TensorData, TensorSpec};

/// The map, when `inputs` are exactly one map input's three tensors.
pub(super) fn single_map(inputs: &[TensorSpec]) -> Option<MapInput> {
    let mut maps = map_inputs(inputs);
    (inputs.len() == 3 && maps.len() == 1).then(|| maps.remove(0))
}

/// Elements the map tensors of `instances` would hold (keys and values padded to the largest
/// map, plus one length per instance), counted before anything is allocated: `None` when the
/// model's input is not one map, `Some(None)` when the count overflows.
pub fn map_elements(input: &InputContract, instances: &[Instance]) -> Option<Option<usize>> {
    let InputContract::Tensors { inputs } = input else {
        return None;
    };
    single_map(inputs)?;
    let widest = instances.iter().map(entries).max().unwrap_or(0);
    Some(
        widest
            .checked_mul(instances.len())
            .and_then(|cells| cells.checked_mul(2))
            .and_then(|cells| cells.checked_add(instances.len())),
    )
}

fn entries(instance: &Instance) -> usize {
    match instance {
        Instance::Json(Value::Object(fields)) => fields.len(),
        _ => 0,
    }
}

/// The three tensors of one batch of maps. Callers that take untrusted instances bound the
/// size first with [`map_elements`].
pub(super) fn decode(
    map: &MapInput,
    instances: &[Instance],
) -> Result<Vec<Tensor>, ContractViolation> {
    let objects = instances
        .iter()
        .enumerate()
        .map(|(i, instance)| match instance {
            Instance::Json(Value::Object(fields)) => Ok(fields),
            other => Err(violation(
                ViolationKind::WrongType,
                i,
                format!(
                    "the model's input {:?} is a map: expected an object of key -> value, got {}",
                    map.name,
                    json_kind(&other.as_json())
                ),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let slots = objects.iter().map(|o| o.len()).max().unwrap_or(0);
    let cells = slots * objects.len();
    let mut keys = Sink::with_capacity(map.key_type, cells);
    let mut values = Sink::with_capacity(map.value_type, cells);
    let mut lengths = Vec::with_capacity(objects.len());
    for (i, fields) in objects.iter().enumerate() {
        let mut seen = HashSet::with_capacity(fields.len());
        for (key, value) in fields.iter() {
            push_key(&mut keys, key, &mut seen, map, i)?;
            values
                .push(value)
                .map_err(|e| e.at(i, &format!("map {:?} key {key:?}", map.name)))?;
        }
        for _ in fields.len()..slots {
            pad(&mut keys, map.key_type);
            pad(&mut values, map.value_type);
        }
        lengths.push(fields.len() as i64);
    }
    let rows = objects.len();
    Ok(vec![
        Tensor {
            shape: vec![rows, slots],
            data: keys.into_data(),
        },
        Tensor {
            shape: vec![rows, slots],
            data: values.into_data(),
        },
        Tensor {
            shape: vec![rows],
            data: TensorData::I64(lengths),
        },
    ])
}

fn push_key(
    keys: &mut Sink,
    key: &str,
    seen: &mut HashSet<i64>,
    map: &MapInput,
    instance: usize,
) -> Result<(), ContractViolation> {
    if map.key_type == DataType::String {
        return keys
            .push(&Value::String(key.to_string()))
            .map_err(|e| e.at(instance, &format!("map {:?}", map.name)));
    }
    let wrong = |why: &str| {
        violation(
            ViolationKind::WrongType,
            instance,
            format!("map {:?}: key {key:?} {why}", map.name),
        )
    };
    let k: i64 = key
        .parse()
        .map_err(|_| wrong("is not an int64 (this map's keys are integers)"))?;
    if !seen.insert(k) {
        return Err(wrong("names an integer key given twice"));
    }
    keys.push_i64(k)
        .map_err(|e| e.at(instance, &format!("map {:?}", map.name)))
}

/// The tensor protocols' maps (sent as the three tensors): keys and values of one shape, each
/// length within the row's slots, no key twice in one map.
pub(super) fn check_map_tensors(
    specs: &[TensorSpec],
    tensors: &[Tensor],
) -> Result<(), ContractViolation> {
    for map in map_inputs(specs) {
        let (keys, values) = (&tensors[map.keys], &tensors[map.values]);
        if keys.shape != values.shape {
            return Err(ContractViolation {
                kind: ViolationKind::WrongShape,
                instance: None,
                message: format!(
                    "map {:?}: keys {:?} and values {:?} must have one shape",
                    map.name, keys.shape, values.shape
                ),
            });
        }
        let slots = keys.shape.get(1).copied().unwrap_or(0);
        let TensorData::I64(lengths) = &tensors[map.lengths].data else {
            continue; // the element type was checked against the signature
        };
        for (r, &n) in lengths.iter().enumerate() {
            let fits = usize::try_from(n).ok().filter(|n| *n <= slots);
            let n = fits.ok_or_else(|| {
                violation(
                    ViolationKind::WrongShape,
                    r,
                    format!("map {:?}: length {n} is outside 0..={slots}", map.name),
                )
            })?;
            if let Some(j) = repeated_key(&keys.data, r * slots, n) {
                return Err(violation(
                    ViolationKind::WrongType,
                    r,
                    format!("map {:?}: the key in slot {j} is given twice", map.name),
                ));
            }
        }
    }
    Ok(())
}

/// The first slot of row `first..first + n` whose key an earlier slot holds.
fn repeated_key(keys: &TensorData, first: usize, n: usize) -> Option<usize> {
    match keys {
        TensorData::String(k) => {
            let mut seen = HashSet::with_capacity(n);
            (0..n).find(|j| !seen.insert(k[first + j].as_str()))
        }
        TensorData::I64(k) => {
            let mut seen = HashSet::with_capacity(n);
            (0..n).find(|j| !seen.insert(k[first + j]))
        }
        _ => None,
    }
}

/// A padding slot, never read (its row's length stops before it).
fn pad(sink: &mut Sink, dtype: DataType) {
    let filler = if dtype == DataType::String {
        Value::String(String::new())
    } else {
        Value::from(0)
    };
    // A zero or an empty string fits every type a map holds.
    let _ = sink.push(&filler);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Dim;

    fn contract(key: DataType, value: DataType) -> InputContract {
        let spec = |name: &str, dtype, rank: usize| TensorSpec {
            name: name.into(),
            dtype,
            shape: std::iter::once(Dim::Batch)
                .chain(std::iter::repeat_n(Dim::Dynamic, rank - 1))
                .collect(),
        };
        InputContract::Tensors {
            inputs: vec![
                spec("m.keys", key, 2),
                spec("m.values", value, 2),
                spec("m.lengths", DataType::I64, 1),
            ],
        }
    }

    fn instances(json: &str) -> Vec<Instance> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn maps_are_padded_to_the_largest_and_counted_first() {
        let contract = contract(DataType::String, DataType::F32);
        let batch = instances(r#"[{"a": 1.5, "b": 2}, {}, {"c": -1}]"#);
        assert_eq!(map_elements(&contract, &batch), Some(Some(2 * 3 * 2 + 3)));
        let tensors = super::super::decode_instances(&contract, &batch).unwrap();
        assert_eq!(tensors[0].shape, [3, 2]);
        let TensorData::String(keys) = &tensors[0].data else {
            panic!("string keys")
        };
        assert_eq!(keys[0..2], ["a".to_string(), "b".into()]);
        assert_eq!(keys[4], "c");
        assert_eq!(
            tensors[1].data,
            TensorData::F32(vec![1.5, 2.0, 0.0, 0.0, -1.0, 0.0])
        );
        assert_eq!(tensors[2].data, TensorData::I64(vec![2, 0, 1]));
    }

    #[test]
    fn int_keys_are_read_as_integers_once_each() {
        let contract = contract(DataType::I64, DataType::String);
        let tensors =
            super::super::decode_instances(&contract, &instances(r#"[{"3": "x", "-1": "y"}]"#))
                .unwrap();
        let TensorData::I64(keys) = &tensors[0].data else {
            panic!("int keys")
        };
        let mut keys = keys.clone();
        keys.sort();
        assert_eq!(keys, [-1, 3]);
        let twice = instances(r#"[{"1": "a", "01": "b"}]"#);
        let error = super::super::decode_instances(&contract, &twice).unwrap_err();
        assert!(error.message.contains("given twice"), "{error}");
        let word = instances(r#"[{"one": "a"}]"#);
        let error = super::super::decode_instances(&contract, &word).unwrap_err();
        assert!(error.message.contains("is not an int64"), "{error}");
    }

    #[test]
    fn anything_but_an_object_or_a_wrong_value_type_is_named() {
        let contract = contract(DataType::String, DataType::F32);
        let error = super::super::decode_instances(&contract, &instances("[[1, 2]]")).unwrap_err();
        assert_eq!(error.kind, ViolationKind::WrongType);
        assert!(error.message.contains("input \"m\" is a map"), "{error}");
        let error =
            super::super::decode_instances(&contract, &instances(r#"[{"a": "x"}]"#)).unwrap_err();
        assert!(error.message.contains("map \"m\" key \"a\""), "{error}");
        assert_eq!(
            map_elements(&contract, &instances("[[1, 2]]")),
            Some(Some(1))
        );
        let tabular = InputContract::Tensors {
            inputs: vec![TensorSpec {
                name: "x".into(),
                dtype: DataType::F32,
                shape: vec![Dim::Batch, Dim::Fixed(2)],
            }],
        };
        assert_eq!(map_elements(&tabular, &instances("[[1, 2]]")), None);
    }

    #[test]
    fn protocol_maps_with_bad_lengths_or_repeated_keys_are_refused() {
        let InputContract::Tensors { inputs } = contract(DataType::I64, DataType::F32) else {
            unreachable!()
        };
        let tensors = |keys: Vec<i64>, lengths: Vec<i64>| {
            vec![
                Tensor {
                    shape: vec![1, 2],
                    data: TensorData::I64(keys),
                },
                Tensor {
                    shape: vec![1, 2],
                    data: TensorData::F32(vec![1.0, 2.0]),
                },
                Tensor {
                    shape: vec![1],
                    data: TensorData::I64(lengths),
                },
            ]
        };
        check_map_tensors(&inputs, &tensors(vec![4, 4], vec![1])).unwrap();
        let error = check_map_tensors(&inputs, &tensors(vec![4, 4], vec![2])).unwrap_err();
        assert!(error.message.contains("slot 1 is given twice"), "{error}");
        let error = check_map_tensors(&inputs, &tensors(vec![4, 5], vec![3])).unwrap_err();
        assert!(
            error.message.contains("length 3 is outside 0..=2"),
            "{error}"
        );
    }
}
