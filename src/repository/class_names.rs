//! Class names read from the graph: a classifier exported with string labels
//! (`classlabels_strings`) names its classes itself, so its label output is a string and the
//! contract's labels are those names.

use crate::contract::{ModelContract, OutputContract};

/// Takes the graph's class names (`graph`) when the card lists no labels (`card` empty); a
/// card that lists labels for such a model must list the same names in the same order, since
/// the label output is matched against them.
pub fn with_graph_labels(
    mut contract: ModelContract,
    graph: Option<&[String]>,
    card: &[String],
) -> Result<ModelContract, String> {
    let Some(graph) = graph else {
        return Ok(contract);
    };
    if let OutputContract::Classification { labels, .. } = &mut contract.output {
        if graph.len() != labels.len() {
            return Err(format!(
                "the graph names {} classes but the probabilities have {}",
                graph.len(),
                labels.len()
            ));
        }
        if !card.is_empty() && card != graph {
            return Err(format!(
                "the manifest's labels {card:?} differ from the graph's class labels {graph:?}"
            ));
        }
        *labels = graph.to_vec();
    }
    Ok(contract)
}

#[cfg(test)]
mod tests {
    use super::with_graph_labels;
    use crate::engine::{DataType, Dim, ModelSignature, TensorSpec};
    use crate::repository::contract_build::build_contract;

    fn string_classifier() -> ModelSignature {
        let spec = |name: &str, dtype, shape| TensorSpec {
            name: name.into(),
            dtype,
            shape,
        };
        ModelSignature {
            inputs: vec![spec("x", DataType::F32, vec![Dim::Batch, Dim::Fixed(4)])],
            outputs: vec![
                spec("label", DataType::String, vec![Dim::Batch]),
                spec(
                    "probabilities",
                    DataType::F32,
                    vec![Dim::Batch, Dim::Fixed(2)],
                ),
            ],
            batched: true,
            batching: Default::default(),
        }
    }

    #[test]
    fn graph_names_become_the_labels_and_a_card_must_agree() {
        let names = vec!["ham".to_string(), "spam".to_string()];
        let c = with_graph_labels(
            build_contract(None, &string_classifier()).unwrap(),
            Some(&names),
            &[],
        )
        .unwrap();
        assert_eq!(c.labels(), ["ham", "spam"]);
        let swapped = vec!["spam".to_string(), "ham".to_string()];
        let err = with_graph_labels(
            build_contract(None, &string_classifier()).unwrap(),
            Some(&names),
            &swapped,
        )
        .unwrap_err();
        assert!(
            err.contains("differ from the graph's class labels"),
            "{err}"
        );
        let three = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        assert!(with_graph_labels(
            build_contract(None, &string_classifier()).unwrap(),
            Some(&three),
            &[],
        )
        .is_err());
    }
}
