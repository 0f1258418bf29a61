//! Body limits that fit the model: a request to a model's inference route may be as large as the
//! model's contract needs (one 3x416x416 image is about 10 MB as V2 JSON), bounded by
//! `--max-elements` and `--max-model-body-bytes`; every other route, and every model whose one
//! instance fits, keeps `--max-body-bytes`.
//! The limit is decided from the path and the model's contract before the body is read.

use crate::inference::{Limits, ModelContract};

use super::state::AppState;

/// Bytes one tensor element may take in a JSON body (`-0.12345678901234567,` is 21).
const JSON_BYTES_PER_ELEMENT: usize = 24;
/// Room for the request's envelope: names, datatypes, shapes, parameters.
const ENVELOPE_BYTES: usize = 64 * 1024;

/// The model (None: the default one) and version a request path runs, for the inference and
/// explanation routes; None for any other route.
pub fn model_route(path: &str) -> Option<(Option<&str>, Option<u64>)> {
    if path == "/predict" {
        return Some((None, None));
    }
    if let Some(rest) = path.strip_prefix("/v1/models/") {
        let (name, verb) = rest.rsplit_once(':')?;
        return matches!(verb, "predict" | "explain").then_some((Some(name), None));
    }
    let (rest, verbs): (&str, &[&str]) = match path.strip_prefix("/v2/models/") {
        Some(rest) => (rest, &["infer"]),
        None => (path.strip_prefix("/models/")?, &["predict", "explain"]),
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [name, verb] if verbs.contains(verb) => Some((Some(name), None)),
        [name, "versions", v, verb] if verbs.contains(verb) => {
            Some((Some(name), Some(v.parse().ok()?)))
        }
        _ => None,
    }
}

/// Body bytes one instance of the contract needs as JSON (one request of the model's own
/// declared size; `--max-elements` when a dimension varies), bounded by `--max-elements`.
pub fn instance_body_bytes(contract: &ModelContract, limits: Limits) -> usize {
    let elements = if contract.input.has_variable_rows() {
        limits.max_elements
    } else {
        contract.input.row_elements().min(limits.max_elements)
    };
    elements.saturating_mul(JSON_BYTES_PER_ELEMENT)
}

/// The body limit for a request to `path`: `--max-body-bytes`, unless one instance of the
/// target model does not fit in it; then what that instance needs (plus room for the envelope),
/// at most `--max-model-body-bytes`.
pub fn body_limit(state: &AppState, path: &str) -> usize {
    let base = state.max_body_bytes;
    let Some((model, version)) = model_route(path) else {
        return base;
    };
    let Ok(loaded) = state.predictor.store().snapshot().resolve(model, version) else {
        return base;
    };
    let needed = instance_body_bytes(&loaded.contract, state.predictor.limits());
    if needed <= base {
        return base;
    }
    needed
        .saturating_add(ENVELOPE_BYTES)
        .min(state.max_model_body_bytes.max(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_routes_are_recognised_and_nothing_else() {
        assert_eq!(model_route("/predict"), Some((None, None)));
        assert_eq!(
            model_route("/models/ocr/predict"),
            Some((Some("ocr"), None))
        );
        assert_eq!(
            model_route("/models/ocr/versions/3/explain"),
            Some((Some("ocr"), Some(3)))
        );
        assert_eq!(
            model_route("/v2/models/det/infer"),
            Some((Some("det"), None))
        );
        assert_eq!(
            model_route("/v2/models/det/versions/2/infer"),
            Some((Some("det"), Some(2)))
        );
        assert_eq!(
            model_route("/v1/models/det:predict"),
            Some((Some("det"), None))
        );
        for other in [
            "/models/ocr",
            "/models/ocr/feedback",
            "/v2/models/det",
            "/v2/models/det/versions/x/infer",
            "/v1/models/det",
            "/admin/models/x/load",
            "/metrics",
        ] {
            assert_eq!(model_route(other), None, "{other}");
        }
    }
}
