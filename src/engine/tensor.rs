//! Plain tensors and tensor descriptions: the data that crosses the seam between the inference
//! core and everything above it. No tract types here.

use std::fmt;

/// Element types a model input or output can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    U8,
    I32,
    I64,
    F32,
    F64,
}

impl DataType {
    /// Lower-case name as used in model cards and error messages (`f32`, `i64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::U8 => "u8",
            DataType::I32 => "i32",
            DataType::I64 => "i64",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DataType::F32 | DataType::F64)
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
    /// An output size known only once the model has run.
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
    /// The shape of one instance: every dimension after the batch dimension.
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
}

/// Flat, row-major tensor contents.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl TensorData {
    pub fn dtype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::U8(_) => DataType::U8,
            TensorData::I32(_) => DataType::I32,
            TensorData::I64(_) => DataType::I64,
            TensorData::F32(_) => DataType::F32,
            TensorData::F64(_) => DataType::F64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::Bool(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of elements `range`.
    pub fn slice(&self, range: std::ops::Range<usize>) -> TensorData {
        match self {
            TensorData::Bool(v) => TensorData::Bool(v[range].to_vec()),
            TensorData::U8(v) => TensorData::U8(v[range].to_vec()),
            TensorData::I32(v) => TensorData::I32(v[range].to_vec()),
            TensorData::I64(v) => TensorData::I64(v[range].to_vec()),
            TensorData::F32(v) => TensorData::F32(v[range].to_vec()),
            TensorData::F64(v) => TensorData::F64(v[range].to_vec()),
        }
    }

    /// Element `i` widened to f64 (booleans as 0/1), for presentation and comparisons.
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        match self {
            TensorData::Bool(v) => v.get(i).map(|b| f64::from(u8::from(*b))),
            TensorData::U8(v) => v.get(i).map(|x| f64::from(*x)),
            TensorData::I32(v) => v.get(i).map(|x| f64::from(*x)),
            TensorData::I64(v) => v.get(i).map(|x| *x as f64),
            TensorData::F32(v) => v.get(i).map(|x| f64::from(*x)),
            TensorData::F64(v) => v.get(i).copied(),
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
