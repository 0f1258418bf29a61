//! The model card's `[capture]` section: per-model overrides of the server's data-capture
//! settings (`--capture-*`, see docs/capture.md). Capture itself is switched on by the server
//! (`--capture-dir`); a card can only tune it or turn it off for its model (`sample_rate = 0`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `[capture]`: what data capture keeps of this model's requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureCard {
    /// Fraction of this model's prediction requests captured, 0..1 (default: the server's
    /// `--capture-sample-rate`; 0 captures none of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<f64>,
    /// Fields written, out of inputs, outputs, ids, timestamps, version, latency (default: the
    /// server's `--capture-fields`); the others are null columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
    /// Feature names whose values are written as null, added to the server's
    /// `--capture-redact`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact: Vec<String>,
    /// File format of this model's captured predictions: `parquet` or `jsonl` (default: the
    /// server's `--capture-format`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

impl CaptureCard {
    /// Checks the section on its own; `features` are the card's feature names (empty for tensor
    /// models, whose captured columns are named `<input>_<j>`).
    pub fn check(&self, features: &[&str]) -> Result<(), String> {
        if let Some(r) = self.sample_rate {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("capture.sample_rate must be in [0, 1], got {r}"));
            }
        }
        if let Some(fields) = &self.fields {
            crate::capture::Fields::parse(fields).map_err(|e| format!("capture.fields: {e}"))?;
        }
        if let Some(format) = &self.format {
            crate::capture::Format::parse(format).map_err(|e| format!("capture.format: {e}"))?;
        }
        for name in &self.redact {
            if name.trim().is_empty() {
                return Err("capture.redact has an empty feature name".into());
            }
            if !features.is_empty() && !features.contains(&name.as_str()) {
                return Err(format!(
                    "capture.redact names {name:?}, which is not one of the card's features"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::CaptureCard;

    #[test]
    fn checks_rate_fields_and_redacted_names() {
        let ok = CaptureCard {
            sample_rate: Some(0.5),
            fields: Some(vec!["inputs".into(), "ids".into()]),
            redact: vec!["age".into()],
            format: Some("jsonl".into()),
        };
        assert_eq!(ok.check(&["age", "income"]), Ok(()));
        let rate = CaptureCard {
            sample_rate: Some(1.5),
            ..CaptureCard::default()
        };
        assert!(rate.check(&[]).unwrap_err().contains("sample_rate"));
        let fields = CaptureCard {
            fields: Some(vec!["inputs".into(), "secrets".into()]),
            ..CaptureCard::default()
        };
        assert!(fields.check(&[]).unwrap_err().contains("secrets"));
        let format = CaptureCard {
            format: Some("csv".into()),
            ..CaptureCard::default()
        };
        assert!(format.check(&[]).unwrap_err().contains("csv"));
        let unknown = CaptureCard {
            redact: vec!["ssn".into()],
            ..CaptureCard::default()
        };
        assert!(unknown.check(&["age"]).unwrap_err().contains("ssn"));
        // Tensor models have no named features: any name is accepted.
        assert_eq!(unknown.check(&[]), Ok(()));
    }
}
