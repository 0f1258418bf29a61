//! Plain tensors and tensor descriptions: the data that crosses the seam between the inference
//! core and everything above it. No tract types here.

use std::fmt;

/// Element types a model input or output can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    F32,
    F64,
    /// UTF-8 strings (V2 `BYTES`); ai.onnx.ml's string tensors.
    String,
}

impl DataType {
    /// Every element type, in declaration order.
    pub const ALL: [DataType; 13] = [
        DataType::Bool,
        DataType::U8,
        DataType::U16,
        DataType::U32,
        DataType::U64,
        DataType::I8,
        DataType::I16,
        DataType::I32,
        DataType::I64,
        DataType::F16,
        DataType::F32,
        DataType::F64,
        DataType::String,
    ];

    /// Lower-case name as used in model cards and error messages (`f32`, `i64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::U8 => "u8",
            DataType::U16 => "u16",
            DataType::U32 => "u32",
            DataType::U64 => "u64",
            DataType::I8 => "i8",
            DataType::I16 => "i16",
            DataType::I32 => "i32",
            DataType::I64 => "i64",
            DataType::F16 => "f16",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
            DataType::String => "string",
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DataType::F16 | DataType::F32 | DataType::F64)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One dimension of a tensor description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// The leading batch dimension: one entry per instance.
    Batch,
    /// A fixed size.
    Fixed(usize),
    /// A size that varies: an input axis the graph declares symbolic (any size per request,
    /// checked by the engine against the graph), or an output size known once the model has run.
    Dynamic,
}

/// Name, element type and shape of one model input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DataType,
    pub shape: Vec<Dim>,
}

impl TensorSpec {
    /// The shape of one instance: every fixed dimension after the batch dimension (variable
    /// dimensions are left out: see [`TensorSpec::accepts_row`] for a request's shape).
    pub fn row_shape(&self) -> Vec<usize> {
        self.shape
            .iter()
            .filter_map(|d| match d {
                Dim::Fixed(n) => Some(*n),
                Dim::Batch | Dim::Dynamic => None,
            })
            .collect()
    }

    /// Number of elements in one instance.
    pub fn row_len(&self) -> usize {
        self.row_shape().iter().product()
    }

    /// True when some dimension after the batch dimension varies (`Dim::Dynamic`).
    pub fn has_variable_rows(&self) -> bool {
        self.shape.iter().skip(1).any(|d| *d == Dim::Dynamic)
    }

    /// True when `row` (a shape without the batch dimension) fits this spec: same rank, every
    /// fixed dimension equal, any size where the dimension varies.
    pub fn accepts_row(&self, row: &[usize]) -> bool {
        let dims = self.shape.get(1..).unwrap_or(&[]);
        dims.len() == row.len()
            && dims.iter().zip(row).all(|(d, n)| match d {
                Dim::Fixed(f) => f == n,
                Dim::Dynamic | Dim::Batch => true,
            })
    }

    /// True when the first dimension is the batch dimension.
    pub fn is_batched(&self) -> bool {
        self.shape.first() == Some(&Dim::Batch)
    }

    /// Shape as signed integers, -1 for the batch dimension (the ONNX / KServe convention).
    pub fn shape_i64(&self) -> Vec<i64> {
        self.shape
            .iter()
            .map(|d| match d {
                Dim::Batch | Dim::Dynamic => -1,
                Dim::Fixed(n) => *n as i64,
            })
            .collect()
    }
}

/// What a compiled model takes and returns.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSignature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// True when every input and output has a leading batch dimension, so several instances can
    /// run in one call.
    pub batched: bool,
    /// How the tensor protocols see the leading axis (Triton's `max_batch_size` semantics).
    pub batching: Batching,
}

/// Whether a model's leading axis is a batch axis the tensor protocols show (Triton's
/// `max_batch_size > 0`), or the model is served with its exact declared shapes
/// (`max_batch_size` 0). Inside infera every tensor is batch first either way: for an `Exact`
/// model the engine's leading axis is one instance, and the protocols add or strip it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Batching {
    /// The inputs share a leading batch axis: shapes show -1 there.
    #[default]
    Batch,
    /// No batch axis: for each input and output, whether the graph's own shape starts with the
    /// engine's instance axis (a declared leading 1) or not (the engine added it).
    Exact {
        inputs_keep_axis: Vec<bool>,
        outputs_keep_axis: Vec<bool>,
    },
}

impl Batching {
    /// True when the protocols see a batch axis.
    pub fn has_batch_axis(&self) -> bool {
        matches!(self, Batching::Batch)
    }

    /// Whether the protocol shape of input (`output` false) or output `ix` keeps the engine's
    /// leading axis.
    pub fn keeps_axis(&self, output: bool, ix: usize) -> bool {
        match self {
            Batching::Batch => true,
            Batching::Exact {
                inputs_keep_axis,
                outputs_keep_axis,
            } => {
                let keep = if output {
                    outputs_keep_axis
                } else {
                    inputs_keep_axis
                };
                keep.get(ix).copied().unwrap_or(true)
            }
        }
    }
}

impl ModelSignature {
    /// The shape a tensor protocol shows for input (`output` false) or output `ix`: -1 for the
    /// batch axis and variable dimensions; for a model without a batch axis, the graph's own
    /// shape (a leading 1 where the graph declares it, nothing where the engine added the axis).
    pub fn protocol_shape(&self, output: bool, ix: usize) -> Vec<i64> {
        let specs = if output { &self.outputs } else { &self.inputs };
        let Some(spec) = specs.get(ix) else {
            return Vec::new();
        };
        let shape = spec.shape_i64();
        match &self.batching {
            Batching::Batch => shape,
            Batching::Exact { .. } if self.batching.keeps_axis(output, ix) => std::iter::once(1)
                .chain(shape.into_iter().skip(1))
                .collect(),
            Batching::Exact { .. } => shape.into_iter().skip(1).collect(),
        }
    }
}

/// Flat, row-major tensor contents.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    /// IEEE 754 half precision.
    F16(Vec<half::f16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    String(Vec<String>),
}

/// Applies `$body` to the vector inside any `TensorData` variant, bound as `$v`.
macro_rules! each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::U8($v) => $body,
            TensorData::U16($v) => $body,
            TensorData::U32($v) => $body,
            TensorData::U64($v) => $body,
            TensorData::I8($v) => $body,
            TensorData::I16($v) => $body,
            TensorData::I32($v) => $body,
            TensorData::I64($v) => $body,
            TensorData::F16($v) => $body,
            TensorData::F32($v) => $body,
            TensorData::F64($v) => $body,
            TensorData::String($v) => $body,
        }
    };
}

/// Rebuilds a `TensorData` of the same variant from `$body`, which maps the inner vector `$v`.
macro_rules! map_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => TensorData::Bool($body),
            TensorData::U8($v) => TensorData::U8($body),
            TensorData::U16($v) => TensorData::U16($body),
            TensorData::U32($v) => TensorData::U32($body),
            TensorData::U64($v) => TensorData::U64($body),
            TensorData::I8($v) => TensorData::I8($body),
            TensorData::I16($v) => TensorData::I16($body),
            TensorData::I32($v) => TensorData::I32($body),
            TensorData::I64($v) => TensorData::I64($body),
            TensorData::F16($v) => TensorData::F16($body),
            TensorData::F32($v) => TensorData::F32($body),
            TensorData::F64($v) => TensorData::F64($body),
            TensorData::String($v) => TensorData::String($body),
        }
    };
}

impl TensorData {
    pub fn dtype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::U8(_) => DataType::U8,
            TensorData::U16(_) => DataType::U16,
            TensorData::U32(_) => DataType::U32,
            TensorData::U64(_) => DataType::U64,
            TensorData::I8(_) => DataType::I8,
            TensorData::I16(_) => DataType::I16,
            TensorData::I32(_) => DataType::I32,
            TensorData::I64(_) => DataType::I64,
            TensorData::F16(_) => DataType::F16,
            TensorData::F32(_) => DataType::F32,
            TensorData::F64(_) => DataType::F64,
            TensorData::String(_) => DataType::String,
        }
    }

    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of elements `range`.
    pub fn slice(&self, range: std::ops::Range<usize>) -> TensorData {
        map_variant!(self, v => v[range].to_vec())
    }

    /// Appends `other`'s elements; false (and nothing appended) when the element types differ.
    pub fn extend_from(&mut self, other: TensorData) -> bool {
        macro_rules! same {
            ($($variant:ident),*) => {
                match (self, other) {
                    $((TensorData::$variant(a), TensorData::$variant(b)) => {
                        a.extend(b);
                        true
                    })*
                    _ => false,
                }
            };
        }
        same!(Bool, U8, U16, U32, U64, I8, I16, I32, I64, F16, F32, F64, String)
    }

    /// All zeros (false, empty strings) of `dtype`, `n` elements.
    pub fn zeros(dtype: DataType, n: usize) -> TensorData {
        match dtype {
            DataType::Bool => TensorData::Bool(vec![false; n]),
            DataType::U8 => TensorData::U8(vec![0; n]),
            DataType::U16 => TensorData::U16(vec![0; n]),
            DataType::U32 => TensorData::U32(vec![0; n]),
            DataType::U64 => TensorData::U64(vec![0; n]),
            DataType::I8 => TensorData::I8(vec![0; n]),
            DataType::I16 => TensorData::I16(vec![0; n]),
            DataType::I32 => TensorData::I32(vec![0; n]),
            DataType::I64 => TensorData::I64(vec![0; n]),
            DataType::F16 => TensorData::F16(vec![half::f16::ZERO; n]),
            DataType::F32 => TensorData::F32(vec![0.0; n]),
            DataType::F64 => TensorData::F64(vec![0.0; n]),
            DataType::String => TensorData::String(vec![String::new(); n]),
        }
    }

    /// Element `i` of a string tensor (None for numeric tensors).
    pub fn get_str(&self, i: usize) -> Option<&str> {
        match self {
            TensorData::String(v) => v.get(i).map(String::as_str),
            _ => None,
        }
    }

    /// Element `i` widened to f64 (booleans as 0/1), for presentation and comparisons. 64-bit
    /// integers beyond 2^53 lose precision; strings have no number (None).
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        match self {
            TensorData::Bool(v) => v.get(i).map(|b| f64::from(u8::from(*b))),
            TensorData::U8(v) => v.get(i).map(|x| f64::from(*x)),
            TensorData::U16(v) => v.get(i).map(|x| f64::from(*x)),
            TensorData::U32(v) => v.get(i).map(|x| f64::from(*x)),
            TensorData::U64(v) => v.get(i).map(|x| *x as f64),
            TensorData::I8(v) => v.get(i).map(|x| f64::from(*x)),
            TensorData::I16(v) => v.get(i).map(|x| f64::from(*x)),
            TensorData::I32(v) => v.get(i).map(|x| f64::from(*x)),
            TensorData::I64(v) => v.get(i).map(|x| *x as f64),
            TensorData::F16(v) => v.get(i).map(|x| x.to_f64()),
            TensorData::F32(v) => v.get(i).map(|x| f64::from(*x)),
            TensorData::F64(v) => v.get(i).copied(),
            TensorData::String(_) => None,
        }
    }
}

impl TensorData {
    /// Element `i` as an exact i64: integers as they are (a `U64` above `i64::MAX` has none),
    /// booleans as 0/1, floats only when they are whole numbers in range; strings have none.
    pub fn get_i64(&self, i: usize) -> Option<i64> {
        let whole = |x: f64| (x.fract() == 0.0 && x.abs() < 9.2e18).then_some(x as i64);
        match self {
            TensorData::Bool(v) => v.get(i).map(|b| i64::from(*b)),
            TensorData::U8(v) => v.get(i).map(|x| i64::from(*x)),
            TensorData::U16(v) => v.get(i).map(|x| i64::from(*x)),
            TensorData::U32(v) => v.get(i).map(|x| i64::from(*x)),
            TensorData::U64(v) => v.get(i).and_then(|x| i64::try_from(*x).ok()),
            TensorData::I8(v) => v.get(i).map(|x| i64::from(*x)),
            TensorData::I16(v) => v.get(i).map(|x| i64::from(*x)),
            TensorData::I32(v) => v.get(i).map(|x| i64::from(*x)),
            TensorData::I64(v) => v.get(i).copied(),
            TensorData::F16(v) => v.get(i).and_then(|x| whole(x.to_f64())),
            TensorData::F32(v) => v.get(i).and_then(|x| whole(f64::from(*x))),
            TensorData::F64(v) => v.get(i).and_then(|x| whole(*x)),
            TensorData::String(_) => None,
        }
    }
}

/// A dense tensor: shape plus flat row-major data.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    /// Builds a tensor, checking that the data fills the shape exactly.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Option<Tensor> {
        (shape.iter().product::<usize>() == data.len()).then_some(Tensor { shape, data })
    }

    pub fn dtype(&self) -> DataType {
        self.data.dtype()
    }

    /// Number of entries along the first dimension (1 for a scalar).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Elements per row (the product of every dimension after the first).
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_new_checks_the_element_count() {
        assert!(Tensor::new(vec![2, 3], TensorData::F32(vec![0.0; 6])).is_some());
        assert!(Tensor::new(vec![2, 3], TensorData::F32(vec![0.0; 5])).is_none());
    }

    #[test]
    fn spec_row_shape_skips_the_batch_dim() {
        let spec = TensorSpec {
            name: "x".into(),
            dtype: DataType::F32,
            shape: vec![Dim::Batch, Dim::Fixed(3), Dim::Fixed(2)],
        };
        assert_eq!(spec.row_shape(), vec![3, 2]);
        assert_eq!(spec.row_len(), 6);
        assert_eq!(spec.shape_i64(), vec![-1, 3, 2]);
        assert!(spec.is_batched());
    }
}

/// One input value read as a number or a string (what the card's column checks and drift
/// tracking read from a tensor).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Number(f64),
    Text(&'a str),
    /// No value could be read.
    Missing,
}
