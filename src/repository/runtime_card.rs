//! `[runtime]` in `model.toml`: how a model's graph is planned and what the tensor protocols see
//! as its batch axis. Turned into the engine's `LoadOptions` by the loader.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::engine::{IntraOpThreads, LoadOptions, PlanMode, MAX_INTRA_OP_THREADS};

/// How a model's plans are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Plans {
    /// Keep the graph's symbolic dimensions when tract can optimise them, else specialise.
    Auto,
    /// One plan with the symbols kept; the load fails if tract cannot optimise it so.
    Symbolic,
    /// A plan per concrete input shape, built on first use and kept in a bounded LRU cache.
    Specialised,
}

/// Largest accepted `plan_cache`.
pub const MAX_PLAN_CACHE: usize = 1024;

/// `[runtime]`: batch axis and plans.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// `true`: the first axis of every input is the batch axis (variable or 1); `false`: the
    /// model has none and is served with its exact shapes. Unset: a variable leading axis shared
    /// by every input is the batch axis (Triton's rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_axis: Option<bool>,
    /// `auto` (default), `symbolic` or `specialised`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plans: Option<Plans>,
    /// Specialised plans kept for this model (default: `--plan-cache-size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_cache: Option<usize>,
    /// Threads one call of this model uses, always (1: the worker's own thread). Unset: the
    /// server's `--intra-op-threads` (default `auto`: every core for a lone call on an idle
    /// server, one thread under load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

impl Runtime {
    pub(super) fn check(&self) -> Result<(), String> {
        if let Some(n) = self.plan_cache {
            if !(1..=MAX_PLAN_CACHE).contains(&n) {
                return Err(format!(
                    "runtime.plan_cache must be between 1 and {MAX_PLAN_CACHE}, got {n}"
                ));
            }
        }
        if let Some(n) = self.threads {
            if !(1..=MAX_INTRA_OP_THREADS).contains(&n) {
                return Err(format!(
                    "runtime.threads must be between 1 and {MAX_INTRA_OP_THREADS}, got {n}"
                ));
            }
        }
        Ok(())
    }

    /// The engine's options: this card's settings over `defaults` (the server's flags).
    pub fn options(card: Option<&Runtime>, defaults: LoadOptions) -> LoadOptions {
        let Some(card) = card else {
            return defaults;
        };
        LoadOptions {
            batch_axis: card.batch_axis.or(defaults.batch_axis),
            plans: match card.plans {
                None => defaults.plans,
                Some(Plans::Auto) => PlanMode::Auto,
                Some(Plans::Symbolic) => PlanMode::Symbolic,
                Some(Plans::Specialised) => PlanMode::Specialised,
            },
            plan_cache: card.plan_cache.unwrap_or(defaults.plan_cache),
            threads: card.threads.map_or(defaults.threads, IntraOpThreads::Fixed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_thread_pin_wins_over_the_server_default() {
        let flag = LoadOptions {
            threads: IntraOpThreads::Fixed(2),
            ..Default::default()
        };
        let card = Runtime {
            threads: Some(1),
            ..Default::default()
        };
        assert_eq!(
            Runtime::options(Some(&card), flag).threads,
            IntraOpThreads::Fixed(1)
        );
        assert_eq!(
            Runtime::options(Some(&Runtime::default()), flag).threads,
            IntraOpThreads::Fixed(2)
        );
        assert_eq!(
            Runtime::options(None, LoadOptions::default()).threads,
            IntraOpThreads::Auto
        );
    }

    #[test]
    fn thread_counts_out_of_range_are_refused() {
        for (n, ok) in [(0, false), (1, true), (64, true), (65, false)] {
            let card = Runtime {
                threads: Some(n),
                ..Default::default()
            };
            assert_eq!(card.check().is_ok(), ok, "{n}");
        }
    }
}
