//! Rows of batch-first tensors: one request's rows cut into chunks, and the chunks' outputs
//! joined back, for a model whose calls of many rows cost more per row than smaller calls
//! (`batch_limit.rs`).

use super::error::EngineError;
use super::tensor::Tensor;

/// Rows `range` of every input (each batch first, all with the same rows).
pub(crate) fn rows_of(inputs: &[Tensor], range: std::ops::Range<usize>) -> Vec<Tensor> {
    inputs
        .iter()
        .map(|t| {
            let len = t.row_len();
            let mut shape = t.shape.clone();
            if let Some(first) = shape.first_mut() {
                *first = range.len();
            }
            Tensor {
                shape,
                data: t.data.slice(range.start * len..range.end * len),
            }
        })
        .collect()
}

/// Joins the outputs of consecutive chunks along the batch axis. Every chunk must give the same
/// outputs, with the same types and the same dimensions after the batch.
pub(crate) fn join_rows(chunks: Vec<Vec<Tensor>>) -> Result<Vec<Tensor>, EngineError> {
    let mut chunks = chunks.into_iter();
    let Some(mut joined) = chunks.next() else {
        return Ok(Vec::new());
    };
    for chunk in chunks {
        if chunk.len() != joined.len() {
            return Err(mismatch());
        }
        for (out, part) in joined.iter_mut().zip(chunk) {
            if out.shape.is_empty() || out.shape.get(1..) != part.shape.get(1..) {
                return Err(mismatch());
            }
            out.shape[0] += part.rows();
            if !out.data.extend_from(part.data) {
                return Err(mismatch());
            }
        }
    }
    Ok(joined)
}

fn mismatch() -> EngineError {
    EngineError::Inference("the chunks of a request gave outputs of different shapes".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tensor::TensorData;

    fn t(shape: &[usize], data: Vec<f32>) -> Tensor {
        Tensor::new(shape.to_vec(), TensorData::F32(data)).unwrap()
    }

    #[test]
    fn rows_cut_and_joined_give_the_tensor_back() {
        let x = t(&[3, 2], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let ids = Tensor::new(vec![3], TensorData::I64(vec![7, 8, 9])).unwrap();
        let first = rows_of(&[x.clone(), ids.clone()], 0..1);
        let rest = rows_of(&[x.clone(), ids.clone()], 1..3);
        assert_eq!(first[0], t(&[1, 2], vec![0.0, 1.0]));
        assert_eq!(
            rest[1],
            Tensor::new(vec![2], TensorData::I64(vec![8, 9])).unwrap()
        );
        assert_eq!(join_rows(vec![first, rest]).unwrap(), vec![x, ids]);
    }

    #[test]
    fn chunks_whose_outputs_disagree_are_an_error() {
        let a = vec![t(&[1, 2], vec![0.0, 1.0])];
        let b = vec![t(&[1, 3], vec![0.0, 1.0, 2.0])];
        assert!(join_rows(vec![a.clone(), b]).is_err());
        assert!(join_rows(vec![a.clone(), vec![]]).is_err());
        let ints = vec![Tensor::new(vec![1, 2], TensorData::I64(vec![1, 2])).unwrap()];
        assert!(join_rows(vec![a, ints]).is_err());
    }
}
