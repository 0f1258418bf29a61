//! `[[features]]` in the model card: one named input column, its type (`number`, `integer`,
//! `string`), its valid range and, for categorical columns, the categories the model was trained
//! on and what an unseen one gets.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::contract::{CategorySet, FeatureSpec};

/// Most categories one feature may list.
pub const MAX_CATEGORIES: usize = 100_000;
/// Longest category (bytes).
pub const MAX_CATEGORY_BYTES: usize = 1_024;

/// One named input column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `number` (default), `integer` (whole numbers only) or `string`.
    #[serde(
        default,
        rename = "type",
        skip_serializing_if = "FeatureType::is_number"
    )]
    #[schema(rename = "type")]
    pub kind: FeatureType,
    /// Smallest valid value (inclusive; numbers and integers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest valid value (inclusive; numbers and integers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The values the model knows (strings for a `string` feature, whole numbers for an
    /// `integer` one). A value outside them is an unseen category.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<Category>,
    /// What a request with an unseen category gets: `error` (default, a 422 naming the feature
    /// and the value) or `allow` (the model handles unknowns: served and counted in
    /// `infera_unseen_categories_total`).
    #[serde(default, skip_serializing_if = "UnknownCategories::is_error")]
    pub unknown_categories: UnknownCategories,
}

impl Feature {
    /// The contract's view of this feature.
    pub fn spec(&self) -> FeatureSpec {
        let strings: Vec<String> = self
            .categories
            .iter()
            .filter_map(|c| match c {
                Category::String(s) => Some(s.clone()),
                Category::Integer(_) => None,
            })
            .collect();
        let integers: Vec<i64> = self
            .categories
            .iter()
            .filter_map(|c| match c {
                Category::Integer(i) => Some(*i),
                Category::String(_) => None,
            })
            .collect();
        FeatureSpec {
            name: self.name.clone(),
            kind: self.kind,
            min: self.min,
            max: self.max,
            categories: (!self.categories.is_empty())
                .then(|| Arc::new(CategorySet::new(&strings, &integers))),
            allow_unknown: self.unknown_categories == UnknownCategories::Allow,
        }
    }

    /// A numeric feature with no range: the card's default.
    pub fn number(name: impl Into<String>) -> Feature {
        Feature {
            name: name.into(),
            description: None,
            kind: FeatureType::Number,
            min: None,
            max: None,
            categories: Vec::new(),
            unknown_categories: UnknownCategories::Error,
        }
    }
}

pub use crate::contract::FeatureType;

/// One known category: a string, or a whole number for an integer feature.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Category {
    Integer(i64),
    String(String),
}

/// What an unseen category gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnknownCategories {
    /// Refused with 422 `unknown_category`.
    #[default]
    Error,
    /// Served (the model handles unknowns, e.g. `OneHotEncoder(handle_unknown="ignore")`) and
    /// counted.
    Allow,
}

impl UnknownCategories {
    fn is_error(&self) -> bool {
        *self == UnknownCategories::Error
    }
}

impl Feature {
    /// Checks the feature on its own (not against a graph).
    pub(super) fn check(&self) -> Result<(), String> {
        let name = &self.name;
        if name.trim().is_empty() {
            return Err("a feature has an empty name".into());
        }
        for bound in [self.min, self.max].into_iter().flatten() {
            if !bound.is_finite() {
                return Err(format!("feature {name:?} has a non-finite bound"));
            }
        }
        if let (Some(min), Some(max)) = (self.min, self.max) {
            if min > max {
                return Err(format!("feature {name:?} has min {min} > max {max}"));
            }
        }
        if self.kind == FeatureType::String && (self.min.is_some() || self.max.is_some()) {
            return Err(format!(
                "feature {name:?} is a string: min and max apply to numbers and integers only"
            ));
        }
        self.check_categories()
    }

    fn check_categories(&self) -> Result<(), String> {
        let name = &self.name;
        if self.categories.is_empty() {
            if self.unknown_categories == UnknownCategories::Allow {
                return Err(format!(
                    "feature {name:?}: unknown_categories needs a list of categories"
                ));
            }
            return Ok(());
        }
        if self.categories.len() > MAX_CATEGORIES {
            return Err(format!(
                "feature {name:?} lists {} categories (at most {MAX_CATEGORIES})",
                self.categories.len()
            ));
        }
        for c in &self.categories {
            match (self.kind, c) {
                (FeatureType::String, Category::String(s)) if s.len() <= MAX_CATEGORY_BYTES => {}
                (FeatureType::String, Category::String(_)) => {
                    return Err(format!(
                        "feature {name:?} has a category longer than {MAX_CATEGORY_BYTES} bytes"
                    ))
                }
                (FeatureType::Integer, Category::Integer(_)) => {}
                (FeatureType::Number, _) => {
                    return Err(format!(
                        "feature {name:?}: categories need type = \"string\" or \"integer\""
                    ))
                }
                (kind, other) => {
                    return Err(format!(
                        "feature {name:?} is of type {} but lists the category {}",
                        kind.as_str(),
                        serde_json::to_string(other).unwrap_or_default()
                    ))
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = self.categories.iter().find(|c| !seen.insert(*c)) {
            return Err(format!(
                "feature {name:?} lists the category {} twice",
                serde_json::to_string(dup).unwrap_or_default()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::repository::Manifest;

    fn err(card: &str) -> String {
        Manifest::parse(card).unwrap_err()
    }

    #[test]
    fn parses_typed_features() {
        let m = Manifest::parse(
            r#"
            [[features]]
            name = "city"
            type = "string"
            categories = ["rome", "oslo"]
            unknown_categories = "allow"
            [[features]]
            name = "rooms"
            type = "integer"
            min = 1
            max = 9
            categories = [1, 2, 3]
            [[features]]
            name = "income"
            "#,
        )
        .unwrap();
        use super::{Category, FeatureType, UnknownCategories};
        assert_eq!(m.features[0].kind, FeatureType::String);
        assert_eq!(m.features[0].categories[1], Category::String("oslo".into()));
        assert_eq!(m.features[0].unknown_categories, UnknownCategories::Allow);
        assert_eq!(m.features[1].categories[2], Category::Integer(3));
        assert_eq!(m.features[2].kind, FeatureType::Number);
        assert_eq!(m.features[2].unknown_categories, UnknownCategories::Error);
    }

    #[test]
    fn rejects_inconsistent_features() {
        let e = err("[[features]]\nname = \"c\"\ntype = \"string\"\nmin = 0.0");
        assert!(e.contains("min and max apply to numbers"), "{e}");
        let e = err("[[features]]\nname = \"c\"\ncategories = [\"a\"]");
        assert!(e.contains("categories need type"), "{e}");
        let e = err("[[features]]\nname = \"c\"\ntype = \"string\"\ncategories = [\"a\", 2]");
        assert!(
            e.contains("is of type string but lists the category 2"),
            "{e}"
        );
        let e = err("[[features]]\nname = \"c\"\ntype = \"integer\"\ncategories = [1, 1]");
        assert!(e.contains("category 1 twice"), "{e}");
        let e =
            err("[[features]]\nname = \"c\"\ntype = \"string\"\nunknown_categories = \"allow\"");
        assert!(e.contains("needs a list of categories"), "{e}");
        let e = err("[[features]]\nname = \"c\"\ntype = \"text\"");
        assert!(e.contains("text"), "{e}");
    }
}
