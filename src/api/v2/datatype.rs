//! Open Inference Protocol datatypes and tensor data: names, JSON `data` decoding, and the
//! binary tensor data extension's little-endian encoding.

use serde_json::Value;

use crate::engine::{DataType, TensorData, TensorSpec};

/// The protocol's name for an engine element type.
pub fn name(dt: DataType) -> &'static str {
    match dt {
        DataType::Bool => "BOOL",
        DataType::U8 => "UINT8",
        DataType::U16 => "UINT16",
        DataType::U32 => "UINT32",
        DataType::U64 => "UINT64",
        DataType::I8 => "INT8",
        DataType::I16 => "INT16",
        DataType::I32 => "INT32",
        DataType::I64 => "INT64",
        DataType::F16 => "FP16",
        DataType::F32 => "FP32",
        DataType::F64 => "FP64",
        DataType::String => "BYTES",
    }
}

const KNOWN: &[&str] = &[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
    "FP32", "FP64", "BYTES",
];

/// The engine type of a protocol datatype, checked against what the input `expects`.
pub fn parse(datatype: &str, input: &str, expects: DataType) -> Result<DataType, String> {
    let found = match datatype {
        "BOOL" => Some(DataType::Bool),
        "UINT8" => Some(DataType::U8),
        "UINT16" => Some(DataType::U16),
        "UINT32" => Some(DataType::U32),
        "UINT64" => Some(DataType::U64),
        "INT8" => Some(DataType::I8),
        "INT16" => Some(DataType::I16),
        "INT32" => Some(DataType::I32),
        "INT64" => Some(DataType::I64),
        "FP16" => Some(DataType::F16),
        "FP32" => Some(DataType::F32),
        "FP64" => Some(DataType::F64),
        "BYTES" => Some(DataType::String),
        _ => None,
    };
    match found {
        Some(dt) if dt == expects => Ok(dt),
        _ if !KNOWN.contains(&datatype) => {
            Err(format!("input {input:?}: unknown datatype {datatype:?}"))
        }
        _ => Err(format!(
            "input {input:?}: datatype {datatype} does not match the model's {}",
            name(expects)
        )),
    }
}

/// A declared shape as dimensions plus its element count (checked): a negative dimension or a
/// count that overflows is refused, naming the input.
/// What an input tensor's header says, checked against the model: its element type, shape and
/// element count. Shared by the REST and gRPC decoders; the error is
/// (`error_type`, message).
pub struct InputHeader {
    pub dtype: DataType,
    pub shape: Vec<usize>,
    pub count: usize,
}

pub fn input_header(
    specs: &[TensorSpec],
    name: &str,
    datatype: &str,
    dims: &[i64],
) -> Result<InputHeader, (&'static str, String)> {
    let spec = specs.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        (
            "unknown_input",
            format!("unknown input {name:?}; the model's inputs are {names:?}"),
        )
    })?;
    let dtype = parse(datatype, name, spec.dtype).map_err(|m| ("wrong_type", m))?;
    let (shape, count) = shape(dims, name).map_err(|m| ("wrong_shape", m))?;
    Ok(InputHeader {
        dtype,
        shape,
        count,
    })
}

pub fn shape(dims: &[i64], input: &str) -> Result<(Vec<usize>, usize), String> {
    let shape: Vec<usize> = dims
        .iter()
        .map(|d| usize::try_from(*d))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("input {input:?}: negative dimension in shape {dims:?}"))?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))
        .ok_or_else(|| format!("input {input:?}: shape {dims:?} is too large"))?;
    Ok((shape, count))
}

/// The elements a request's declared shapes add up to (checked, saturating), to hold against
/// `--max-elements` before anything is decoded. Shapes that are negative or overflow count as 0
/// here: [`shape`] refuses them by name afterwards.
pub fn declared_elements<'a>(shapes: impl IntoIterator<Item = &'a [i64]>) -> usize {
    shapes
        .into_iter()
        .filter_map(|dims| {
            dims.iter().try_fold(1usize, |acc, d| {
                acc.checked_mul(usize::try_from(*d).unwrap_or(0))
            })
        })
        .fold(0usize, usize::saturating_add)
}

/// Bytes per element in the binary extension (for BYTES the smallest: its length prefix).
pub fn size(dt: DataType) -> usize {
    match dt {
        DataType::String => 4,
        DataType::Bool | DataType::U8 | DataType::I8 => 1,
        DataType::U16 | DataType::I16 | DataType::F16 => 2,
        DataType::U32 | DataType::I32 | DataType::F32 => 4,
        DataType::U64 | DataType::I64 | DataType::F64 => 8,
    }
}

fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        other => out.push(other),
    }
}

/// Decodes JSON `data` (flat or nested, row-major) of `count` elements. `count` comes from the
/// client's declared shape, so nothing is sized from it: the elements actually sent are counted
/// first (a list of references, bounded by the body), compared with `count`, and only then is
/// the typed buffer allocated, from the real length.
pub fn from_json(
    dt: DataType,
    count: usize,
    data: &Value,
    input: &str,
) -> Result<TensorData, String> {
    let mut flat = Vec::new();
    flatten(data, &mut flat);
    if flat.len() != count {
        return Err(format!(
            "input {input:?}: shape holds {count} elements but data has {}",
            flat.len()
        ));
    }
    if dt == DataType::String {
        return super::bytes::from_json(&flat, input).map(TensorData::String);
    }
    let count = flat.len();
    let bad = |i: usize, want: &str| {
        format!(
            "input {input:?} element {i}: expected {want}, got {}",
            flat[i]
        )
    };
    macro_rules! ints {
        ($t:ty, $variant:ident, $want:expr) => {
            ints!($t, $variant, $want, as_i64)
        };
        ($t:ty, $variant:ident, $want:expr, $read:ident) => {{
            let mut v = Vec::with_capacity(count);
            for (i, x) in flat.iter().enumerate() {
                let n = x
                    .$read()
                    .and_then(|n| <$t>::try_from(n).ok())
                    .ok_or_else(|| bad(i, $want))?;
                v.push(n);
            }
            TensorData::$variant(v)
        }};
    }
    Ok(match dt {
        DataType::Bool => {
            let mut v = Vec::with_capacity(count);
            for (i, x) in flat.iter().enumerate() {
                v.push(x.as_bool().ok_or_else(|| bad(i, "true or false"))?);
            }
            TensorData::Bool(v)
        }
        DataType::U8 => ints!(u8, U8, "an integer in 0..=255", as_u64),
        DataType::U16 => ints!(u16, U16, "an integer in 0..=65535", as_u64),
        DataType::U32 => ints!(u32, U32, "an unsigned 32-bit integer", as_u64),
        DataType::U64 => ints!(u64, U64, "an unsigned 64-bit integer", as_u64),
        DataType::I8 => ints!(i8, I8, "an integer in -128..=127"),
        DataType::I16 => ints!(i16, I16, "a 16-bit integer"),
        DataType::I32 => ints!(i32, I32, "a 32-bit integer"),
        DataType::I64 => ints!(i64, I64, "a 64-bit integer"),
        DataType::F16 => {
            let mut v = Vec::with_capacity(count);
            for (i, x) in flat.iter().enumerate() {
                let n = x.as_f64().ok_or_else(|| bad(i, "a number"))?;
                v.push(half::f16::from_f64(n));
            }
            TensorData::F16(v)
        }
        DataType::F32 => {
            let mut v = Vec::with_capacity(count);
            for (i, x) in flat.iter().enumerate() {
                v.push(x.as_f64().ok_or_else(|| bad(i, "a number"))? as f32);
            }
            TensorData::F32(v)
        }
        DataType::F64 => {
            let mut v = Vec::with_capacity(count);
            for (i, x) in flat.iter().enumerate() {
                v.push(x.as_f64().ok_or_else(|| bad(i, "a number"))?);
            }
            TensorData::F64(v)
        }
        DataType::String => unreachable!("strings are decoded above"),
    })
}

/// Decodes little-endian binary tensor data.
pub fn from_bytes(
    dt: DataType,
    count: usize,
    bytes: &[u8],
    input: &str,
) -> Result<TensorData, String> {
    if dt == DataType::String {
        return super::bytes::from_binary(count, bytes, input).map(TensorData::String);
    }
    // Checked: a declared count near usize::MAX must not wrap into a small, matching size.
    let expected = count.checked_mul(size(dt));
    if expected != Some(bytes.len()) {
        let expected = expected.map_or_else(|| "too many".to_string(), |n| n.to_string());
        return Err(format!(
            "input {input:?}: binary_data_size {} does not match {count} {} elements ({expected} bytes)",
            bytes.len(),
            name(dt),
        ));
    }
    macro_rules! le {
        ($t:ty, $variant:ident) => {
            TensorData::$variant(
                bytes
                    .chunks_exact(std::mem::size_of::<$t>())
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("exact chunk")))
                    .collect(),
            )
        };
    }
    Ok(match dt {
        DataType::Bool => TensorData::Bool(bytes.iter().map(|b| *b != 0).collect()),
        DataType::U8 => TensorData::U8(bytes.to_vec()),
        DataType::U16 => le!(u16, U16),
        DataType::U32 => le!(u32, U32),
        DataType::U64 => le!(u64, U64),
        DataType::I8 => TensorData::I8(bytes.iter().map(|b| i8::from_le_bytes([*b])).collect()),
        DataType::I16 => le!(i16, I16),
        DataType::I32 => le!(i32, I32),
        DataType::I64 => le!(i64, I64),
        DataType::F16 => le!(half::f16, F16),
        DataType::F32 => le!(f32, F32),
        DataType::F64 => le!(f64, F64),
        DataType::String => unreachable!("strings are decoded above"),
    })
}

/// Appends little-endian bytes of `data`.
pub fn to_bytes(data: &TensorData, out: &mut Vec<u8>) {
    macro_rules! le {
        ($v:expr) => {
            $v.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()))
        };
    }
    match data {
        TensorData::Bool(v) => out.extend(v.iter().map(|b| u8::from(*b))),
        TensorData::U8(v) => out.extend_from_slice(v),
        TensorData::U16(v) => le!(v),
        TensorData::U32(v) => le!(v),
        TensorData::U64(v) => le!(v),
        TensorData::I8(v) => le!(v),
        TensorData::I16(v) => le!(v),
        TensorData::I32(v) => le!(v),
        TensorData::I64(v) => le!(v),
        TensorData::F16(v) => le!(v),
        TensorData::F32(v) => le!(v),
        TensorData::F64(v) => le!(v),
        TensorData::String(v) => super::bytes::to_binary(v, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn datatypes_are_checked_with_both_names() {
        assert_eq!(parse("FP32", "x", DataType::F32), Ok(DataType::F32));
        assert_eq!(
            parse("FP64", "x", DataType::F32).unwrap_err(),
            "input \"x\": datatype FP64 does not match the model's FP32"
        );
        assert!(parse("BYTES", "x", DataType::F32)
            .unwrap_err()
            .contains("BYTES"));
        assert!(parse("FP8", "x", DataType::F32)
            .unwrap_err()
            .contains("unknown datatype"));
    }

    #[test]
    fn json_and_binary_data_decode_alike() {
        let decoded = from_json(DataType::F32, 4, &json!([[1.5, 2], [3, -4]]), "x").unwrap();
        let mut bytes = Vec::new();
        to_bytes(&decoded, &mut bytes);
        assert_eq!(from_bytes(DataType::F32, 4, &bytes, "x").unwrap(), decoded);
        assert!(from_json(DataType::I64, 2, &json!([1, 2.5]), "x").is_err());
        assert!(from_bytes(DataType::F32, 4, &bytes[..15], "x").is_err());
    }

    #[test]
    fn declared_shapes_are_counted_with_checked_arithmetic() {
        assert_eq!(shape(&[2, 3], "x"), Ok((vec![2, 3], 6)));
        assert!(shape(&[2, -1], "x").unwrap_err().contains("negative"));
        assert!(shape(&[i64::MAX, i64::MAX], "x")
            .unwrap_err()
            .contains("too large"));
        let shapes: [&[i64]; 3] = [&[2, 3], &[-1, 5], &[i64::MAX, 4]];
        assert_eq!(declared_elements(shapes), 6);
        let huge: [&[i64]; 2] = [&[1 << 62], &[1 << 62]];
        assert_eq!(declared_elements(huge), 1 << 63);
    }

    #[test]
    fn every_datatype_round_trips_through_json_and_binary() {
        let cases = [
            ("BOOL", json!([true, true]), 1),
            ("UINT8", json!([0, 255]), 1),
            ("UINT16", json!([0, 65535]), 2),
            ("UINT32", json!([0, 4294967295u64]), 4),
            ("UINT64", json!([0, u64::MAX]), 8),
            ("INT8", json!([-128, 127]), 1),
            ("INT16", json!([-32768, 32767]), 2),
            ("INT32", json!([i32::MIN, i32::MAX]), 4),
            ("INT64", json!([i64::MIN, i64::MAX]), 8),
            ("FP16", json!([-1.5, 65504.0]), 2),
            ("FP32", json!([-1.5, 3.25]), 4),
            ("FP64", json!([-1.5, 1e300]), 8),
        ];
        for (protocol, data, bytes_each) in cases {
            let dt = DataType::ALL
                .into_iter()
                .find(|dt| name(*dt) == protocol)
                .unwrap();
            assert_eq!(parse(protocol, "x", dt), Ok(dt));
            assert_eq!(size(dt), bytes_each, "{protocol}");
            let decoded = from_json(dt, 2, &data, "x").unwrap();
            assert_eq!(decoded.dtype(), dt);
            let mut bytes = Vec::new();
            to_bytes(&decoded, &mut bytes);
            assert_eq!(bytes.len(), 2 * bytes_each, "{protocol}");
            assert_eq!(
                from_bytes(dt, 2, &bytes, "x").unwrap(),
                decoded,
                "{protocol}"
            );
            assert_eq!(
                decoded.get_f64(1).unwrap(),
                data[1].as_f64().unwrap_or(1.0),
                "{protocol}"
            );
        }
        // Out of range for the type: a clear refusal, not a wrapped value.
        assert!(from_json(DataType::I8, 1, &json!([128]), "x").is_err());
        assert!(from_json(DataType::U16, 1, &json!([-1]), "x").is_err());
        assert!(from_json(DataType::U64, 1, &json!([1.5]), "x").is_err());
    }

    #[test]
    fn a_huge_declared_count_is_refused_without_allocating_it() {
        // 2^62 f32 elements would be 2^64 bytes: must not overflow into a match, nor allocate.
        let huge = 1usize << 62;
        let err = from_bytes(DataType::F32, huge, &[0; 16], "x").unwrap_err();
        assert!(err.contains("too many"), "{err}");
        let err = from_json(DataType::F32, huge, &json!([1]), "x").unwrap_err();
        assert!(err.contains("data has 1"), "{err}");
        let err = from_json(DataType::F64, usize::MAX, &json!([[1, 2], [3]]), "x").unwrap_err();
        assert!(err.contains("data has 3"), "{err}");
    }
}
