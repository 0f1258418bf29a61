//! The plan-cache series: models whose plans are specialised per input shape count their cache
//! hits and misses and time each specialisation.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};

use super::retire::drop_series;
use crate::engine::PlanObserver;

/// Specialisation takes milliseconds to seconds.
const SPECIALISE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const MODEL: &[&str] = &["model", "version"];

pub(super) struct PlanFamilies {
    hits: IntCounterVec,
    misses: IntCounterVec,
    specialise: HistogramVec,
}

impl PlanFamilies {
    pub(super) fn new() -> PlanFamilies {
        PlanFamilies {
            hits: IntCounterVec::new(
                Opts::new(
                    "infera_model_plan_cache_hits_total",
                    "Calls whose input shapes found a specialised plan (or a remembered refusal) in the cache",
                ),
                MODEL,
            )
            .expect("static counter definition"),
            misses: IntCounterVec::new(
                Opts::new(
                    "infera_model_plan_cache_misses_total",
                    "Calls whose input shapes had no plan: one was specialised (result ok) or the graph refused the shapes (result refused)",
                ),
                &["model", "version", "result"],
            )
            .expect("static counter definition"),
            specialise: HistogramVec::new(
                HistogramOpts::new(
                    "infera_model_plan_specialisation_seconds",
                    "Time to specialise and optimise a plan for new input shapes",
                )
                .buckets(SPECIALISE_BUCKETS.to_vec()),
                MODEL,
            )
            .expect("static histogram definition"),
        }
    }

    pub(super) fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.hits.clone()),
            Box::new(self.misses.clone()),
            Box::new(self.specialise.clone()),
        ]
    }

    pub(super) fn forget(&self, model: &str, version: &str) {
        drop_series(&self.hits, model, version);
        drop_series(&self.misses, model, version);
        drop_series(&self.specialise, model, version);
    }

    pub(super) fn series(&self, model: &str, version: &str) -> PlanSeries {
        let labels = [model, version];
        PlanSeries {
            hits: self.hits.with_label_values(&labels),
            specialised: self.misses.with_label_values(&[model, version, "ok"]),
            refused: self.misses.with_label_values(&[model, version, "refused"]),
            specialise: self.specialise.with_label_values(&labels),
        }
    }
}

/// One version's plan-cache handles; the engine reports through [`PlanObserver`].
pub(super) struct PlanSeries {
    hits: IntCounter,
    specialised: IntCounter,
    refused: IntCounter,
    specialise: Histogram,
}

impl PlanObserver for PlanSeries {
    fn plan_hit(&self) {
        self.hits.inc();
    }

    fn plan_miss(&self, took: Duration, ok: bool) {
        if ok {
            self.specialised.inc();
        } else {
            self.refused.inc();
        }
        self.specialise.observe(took.as_secs_f64());
    }
}
