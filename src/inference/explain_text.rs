//! Explanations of a text classifier (one string input of free text): Shapley values of the
//! document's tokens, each either present or removed. The same coalitions, chunks and queue as
//! tabular explanations; the background is one row, the empty text, so `base_value` is the
//! model's output for an empty document and the attributions sum to `output - base_value`.

use super::explain_error::ExplainError;
use super::explain_subject::{instance_texts, target_column, text_tensor};
use super::explainer::{ExplainOutcome, Explainer, InstanceExplanation, Job, Units};
use crate::contract::Instance;
use crate::engine::TensorSpec;
use crate::explain::{self, Background, Tokens};

/// Most tokens in one explained document: KernelSHAP keeps `budget x tokens` coalition flags and
/// solves a `tokens x tokens` system.
pub const MAX_TOKENS: usize = 256;

impl Explainer {
    /// Token attributions of each instance's document.
    pub(super) async fn tokens(
        &self,
        job: &Job<'_>,
        spec: &TensorSpec,
        instances: &[Instance],
    ) -> Result<ExplainOutcome, ExplainError> {
        let texts = instance_texts(job.loaded, instances)?;
        let mut explanations = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let tokens = Tokens::split(text);
            if tokens.is_empty() || tokens.len() > MAX_TOKENS {
                return Err(ExplainError::BadOption(format!(
                    "instance {i}: the text has {} whitespace-separated tokens; explanations \
                     take 1 to {MAX_TOKENS}",
                    tokens.len()
                )));
            }
            explanations.push(self.document(job, spec, &tokens).await?);
        }
        Ok(job.outcome(
            "text: each token present or removed; base_value is the output for the empty text"
                .into(),
            1,
            explanations,
        ))
    }

    async fn document(
        &self,
        job: &Job<'_>,
        spec: &TensorSpec,
        tokens: &Tokens<'_>,
    ) -> Result<InstanceExplanation, ExplainError> {
        let width = tokens.len();
        let coalitions = self.coalitions(width, job.options)?;
        let removed = Background::new(width, &[vec![0.0; width]], String::new())
            .map_err(ExplainError::Output)?;
        let present = vec![1.0; width];
        let fill =
            |range, out: &mut Vec<f64>| explain::rows(&coalitions, range, &present, &removed, out);
        let build = |masks: &[f64]| {
            let texts = masks.chunks(width).map(|m| tokens.text(m)).collect();
            vec![text_tensor(texts, spec)]
        };
        let units = Units {
            count: coalitions.len(),
            per: 1,
            width,
            text_bytes: tokens.text(&present).len() + std::mem::size_of::<String>(),
        };
        let table = self.evaluate(job, units, &fill, &build).await?;
        let (column, target) = target_column(
            job.subject,
            job.options.target.as_deref(),
            &table,
            coalitions.full_index(),
        )?;
        let values = explain::column(&table, job.subject.columns, column);
        let a = coalitions
            .attribute(&values)
            .ok_or(ExplainError::Underdetermined {
                coalitions: coalitions.len(),
                features: width,
            })?;
        Ok(InstanceExplanation {
            target,
            output: a.output,
            base_value: a.base_value,
            attributions: tokens.names().into_iter().zip(a.values).collect(),
            method: coalitions.method(),
            samples: coalitions.len(),
        })
    }
}
