//! Traffic splitting between the versions of one model: the card's `[shadow]` and `[canary]`
//! sections (docs/model-updates.md), the same settings as the admin API takes them, and the
//! plan in force for a model (the card's, unless the admin API overrode it).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;

/// Rollback window when the card names none.
pub const DEFAULT_ROLLBACK_WINDOW: usize = 200;
/// Least samples before the rollback rule judges, when the card names none.
pub const DEFAULT_ROLLBACK_MIN_SAMPLES: usize = 50;
/// Largest rollback window.
pub const MAX_ROLLBACK_WINDOW: usize = 100_000;

/// `[shadow]`: mirror a fraction of the requests to another version, off the request path,
/// and compare its answers with the served ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    /// The version that receives the mirrored requests; kept loaded by the version policy.
    #[serde(deserialize_with = "version_number")]
    #[schema(example = 2, minimum = 1)]
    pub version: u64,
    /// Share of the requests mirrored, in (0, 1] (default 1).
    #[serde(default = "one")]
    #[schema(example = 0.1, exclusive_minimum = 0.0, maximum = 1.0)]
    pub fraction: f64,
}

/// `[canary]`: answer a fraction of the requests with a candidate version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// The candidate version; kept loaded by the version policy, never the default version.
    #[serde(deserialize_with = "version_number")]
    #[schema(example = 2, minimum = 1)]
    pub version: u64,
    /// Share of the requests (that name no version) it answers, in [0, 1].
    #[schema(example = 0.1, minimum = 0.0, maximum = 1.0)]
    pub fraction: f64,
    /// Route by a hash of the request's `X-Route-Key` header when it has one, so one key
    /// always meets the same version (default false: each request is drawn at random).
    #[serde(default)]
    pub sticky: bool,
    /// When to return all traffic to the stable version by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackRule>,
}

/// `[canary.rollback]`: the automatic rollback rule, judged over the last `window` canary
/// requests once `min_samples` of them are in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRule {
    /// Largest share of failed canary requests above the stable version's own share over its
    /// last `window` requests, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 0.05, minimum = 0.0, maximum = 1.0)]
    pub max_error_rate: Option<f64>,
    /// Largest p99 latency of successful canary requests, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 50.0, exclusive_minimum = 0.0)]
    pub max_p99_ms: Option<f64>,
    /// Least share of canary instances whose label (or value, within 1e-6 relative) agrees with
    /// the stable version's, in [0, 1]. The stable version then runs off the request path on
    /// canary requests to compare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 0.9, minimum = 0.0, maximum = 1.0)]
    pub min_agreement: Option<f64>,
    /// Requests (instances for agreement) in the window (default 200).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_count"
    )]
    #[schema(minimum = 1, maximum = 100_000)]
    pub window: Option<usize>,
    /// Least requests (instances for agreement) in the window before it judges (default 50).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_count"
    )]
    #[schema(minimum = 1)]
    pub min_samples: Option<usize>,
}

fn one() -> f64 {
    1.0
}

/// A version number, also when a client's JSON writes it as a whole float (`2.0`), as JSON
/// Schema's `integer` allows.
fn version_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    whole(&n).ok_or_else(|| {
        serde::de::Error::custom(format!("a version is a whole number >= 1, got {n}"))
    })
}

/// An optional count, also written as a whole float (`200.0`); null or absent is None.
fn optional_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    match whole(&n).and_then(|v| usize::try_from(v).ok()) {
        Some(v) => Ok(Some(v)),
        None => Err(serde::de::Error::custom(format!(
            "expected a whole number >= 0, got {n}"
        ))),
    }
}

/// `n` as an unsigned whole number, from an integer or a float without a fraction.
fn whole(n: &serde_json::Number) -> Option<u64> {
    if let Some(v) = n.as_u64() {
        return Some(v);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => Some(f as u64),
        _ => None,
    }
}

impl RollbackRule {
    pub fn window(&self) -> usize {
        self.window.unwrap_or(DEFAULT_ROLLBACK_WINDOW)
    }

    pub fn min_samples(&self) -> usize {
        self.min_samples
            .unwrap_or(DEFAULT_ROLLBACK_MIN_SAMPLES)
            .min(self.window())
    }

    fn check(&self) -> Result<(), String> {
        for (name, v) in [
            ("max_error_rate", self.max_error_rate),
            ("min_agreement", self.min_agreement),
        ] {
            if let Some(v) = v {
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!("canary.rollback.{name} must be in [0, 1], got {v}"));
                }
            }
        }
        if let Some(ms) = self.max_p99_ms {
            if !(ms.is_finite() && ms > 0.0) {
                return Err(format!(
                    "canary.rollback.max_p99_ms must be a finite number > 0, got {ms}"
                ));
            }
        }
        if !(1..=MAX_ROLLBACK_WINDOW).contains(&self.window()) {
            return Err(format!(
                "canary.rollback.window must be between 1 and {MAX_ROLLBACK_WINDOW}, got {}",
                self.window()
            ));
        }
        if self.min_samples == Some(0) {
            return Err("canary.rollback.min_samples must be at least 1".into());
        }
        if self.max_error_rate.is_none()
            && self.max_p99_ms.is_none()
            && self.min_agreement.is_none()
        {
            return Err("canary.rollback needs max_error_rate, max_p99_ms or min_agreement".into());
        }
        Ok(())
    }
}

impl Shadow {
    pub fn check(&self) -> Result<(), String> {
        if self.version == 0 {
            return Err("shadow.version must be a positive version".into());
        }
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return Err(format!(
                "shadow.fraction must be in (0, 1], got {}",
                self.fraction
            ));
        }
        Ok(())
    }
}

impl Canary {
    pub fn check(&self) -> Result<(), String> {
        if self.version == 0 {
            return Err("canary.version must be a positive version".into());
        }
        if !(0.0..=1.0).contains(&self.fraction) {
            return Err(format!(
                "canary.fraction must be in [0, 1], got {}",
                self.fraction
            ));
        }
        match &self.rollback {
            Some(rule) => rule.check(),
            None => Ok(()),
        }
    }
}

/// Checks the card's two sections together.
pub fn check_sections(shadow: Option<&Shadow>, canary: Option<&Canary>) -> Result<(), String> {
    if let Some(s) = shadow {
        s.check()?;
    }
    if let Some(c) = canary {
        c.check()?;
    }
    if let (Some(s), Some(c)) = (shadow, canary) {
        if s.version == c.version {
            return Err(format!(
                "version {} cannot be both the shadow and the canary",
                s.version
            ));
        }
    }
    Ok(())
}

/// The split in force for one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct TrafficPlan {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Shadow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
}

impl TrafficPlan {
    /// Versions the plan names: kept loaded, and never the default version while another
    /// version is ready.
    pub fn names(&self, version: u64) -> bool {
        self.shadow.as_ref().is_some_and(|s| s.version == version)
            || self.canary.as_ref().is_some_and(|c| c.version == version)
    }
}

/// What the admin API set for a model, over its card: `Some(None)` clears the card's section.
#[derive(Debug, Clone, Default)]
pub struct TrafficOverride {
    pub shadow: Option<Option<Shadow>>,
    pub canary: Option<Option<Canary>>,
}

impl TrafficOverride {
    /// The plan: each section from the override when it set one, else from the card.
    pub fn apply(&self, card: Option<&Shadow>, canary: Option<&Canary>) -> TrafficPlan {
        TrafficPlan {
            shadow: match &self.shadow {
                Some(set) => set.clone(),
                None => card.cloned(),
            },
            canary: match &self.canary {
                Some(set) => set.clone(),
                None => canary.cloned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_versions_may_be_whole_floats_in_json() {
        let body = r#"{"version": 2.0, "fraction": 0.1, "rollback": {"window": 300.0, "min_samples": null}}"#;
        let canary: Canary = serde_json::from_str(body).unwrap();
        assert_eq!(canary.version, 2);
        let rule = canary.rollback.unwrap();
        assert_eq!((rule.window, rule.min_samples), (Some(300), None));
        for bad in [
            r#"{"window": 2.5}"#,
            r#"{"window": -1}"#,
            r#"{"window": "9"}"#,
        ] {
            assert!(serde_json::from_str::<RollbackRule>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sections_are_checked() {
        let shadow = Shadow {
            version: 2,
            fraction: 0.0,
        };
        assert!(check_sections(Some(&shadow), None).is_err());
        let canary = Canary {
            version: 2,
            fraction: 0.5,
            sticky: false,
            rollback: Some(RollbackRule {
                max_error_rate: None,
                max_p99_ms: None,
                min_agreement: None,
                window: None,
                min_samples: None,
            }),
        };
        let err = check_sections(None, Some(&canary)).unwrap_err();
        assert!(err.contains("needs max_error_rate"), "{err}");
        let shadow = Shadow {
            version: 2,
            fraction: 1.0,
        };
        let canary = Canary {
            rollback: None,
            ..canary
        };
        let err = check_sections(Some(&shadow), Some(&canary)).unwrap_err();
        assert!(err.contains("both the shadow and the canary"), "{err}");
    }

    #[test]
    fn an_override_replaces_or_clears_the_card() {
        let card = Shadow {
            version: 2,
            fraction: 0.5,
        };
        let plan = TrafficOverride::default().apply(Some(&card), None);
        assert_eq!(plan.shadow, Some(card.clone()));
        let cleared = TrafficOverride {
            shadow: Some(None),
            canary: None,
        };
        assert_eq!(cleared.apply(Some(&card), None).shadow, None);
    }
}
