//! Retiring the series of a model version that no longer serves, so series do not pile up
//! across many reloads. Works on any labelled family: every series whose `model` and `version`
//! labels match is removed, whatever its other labels (reasons, classes, features).

use std::collections::HashMap;

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};

/// Removes every series of `family` labelled with this model and version.
pub(super) fn drop_series<T: MetricVecBuilder>(family: &MetricVec<T>, model: &str, version: &str) {
    for collected in family.collect() {
        for metric in collected.get_metric() {
            let labels: HashMap<&str, &str> = metric
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if labels.get("model") == Some(&model) && labels.get("version") == Some(&version) {
                let _ = family.remove(&labels);
            }
        }
    }
}
