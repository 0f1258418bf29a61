//! The model card's typed columns (`[[features]]` with `type`, `categories`,
//! `unknown_categories`), located in the input tensors and checked on them once they are
//! decoded, whatever the protocol: an integer refuses fractions, a one-input-per-column model's
//! features keep their ranges, and a value outside a feature's categories is refused with 422
//! `unknown_category` (naming the feature and the value, truncated), or, when the card allows
//! unknowns, served and counted.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::instances::{violation, ContractViolation, ViolationKind};
use crate::engine::{Cell, DataType, Dim, Tensor, TensorData, TensorSpec};

/// The type of a feature's values (the card's `type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeatureType {
    #[default]
    Number,
    Integer,
    String,
}

impl FeatureType {
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureType::Number => "number",
            FeatureType::Integer => "integer",
            FeatureType::String => "string",
        }
    }

    pub fn is_number(&self) -> bool {
        *self == FeatureType::Number
    }
}

/// Characters of a refused value quoted back in an error.
const SHOWN_CHARS: usize = 64;
/// Known categories listed in an error.
const SHOWN_CATEGORIES: usize = 8;

/// One named input column: its type, valid range and categories.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSpec {
    pub name: String,
    pub kind: FeatureType,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The known categories (None: any value of the type).
    pub categories: Option<Arc<CategorySet>>,
    /// An unseen category is served and counted instead of refused.
    pub allow_unknown: bool,
}

impl FeatureSpec {
    /// A number with no range (a bare model's column `f{i}`).
    pub fn unnamed(name: String) -> FeatureSpec {
        FeatureSpec {
            name,
            kind: FeatureType::Number,
            min: None,
            max: None,
            categories: None,
            allow_unknown: false,
        }
    }
}

/// A feature's known categories, with the start of the list for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct CategorySet {
    strings: HashSet<String>,
    integers: HashSet<i64>,
    shown: String,
}

impl CategorySet {
    /// A string feature's categories and an integer feature's (one of the two is empty), in the
    /// card's order.
    pub fn new(strings: &[String], integers: &[i64]) -> CategorySet {
        let total = strings.len() + integers.len();
        let mut shown: Vec<String> = strings
            .iter()
            .map(|s| truncated(s))
            .chain(integers.iter().map(i64::to_string))
            .take(SHOWN_CATEGORIES)
            .collect();
        if total > SHOWN_CATEGORIES {
            shown.push(format!("... ({total} in all)"));
        }
        CategorySet {
            strings: strings.iter().cloned().collect(),
            integers: integers.iter().copied().collect(),
            shown: shown.join(", "),
        }
    }

    pub fn contains_str(&self, s: &str) -> bool {
        self.strings.contains(s)
    }

    pub fn contains_int(&self, i: i64) -> bool {
        self.integers.contains(&i)
    }
}

/// `value` quoted, cut to `SHOWN_CHARS` characters.
fn truncated(value: &str) -> String {
    match value.char_indices().nth(SHOWN_CHARS) {
        Some((at, _)) => format!("{:?}... ({} bytes)", &value[..at], value.len()),
        None => format!("{value:?}"),
    }
}

/// Where a card feature's values are: column `offset` of each row of input `input`.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub spec: FeatureSpec,
    pub input: usize,
    pub offset: usize,
    /// Whether the range is checked here (one input per column) rather than while decoding (a
    /// tabular input checks ranges as it reads).
    range_here: bool,
}

impl Column {
    /// The columns of one tabular `[batch, features]` input.
    pub fn tabular(features: &[FeatureSpec]) -> Vec<Column> {
        features
            .iter()
            .enumerate()
            .map(|(offset, spec)| Column {
                spec: spec.clone(),
                input: 0,
                offset,
                range_here: false,
            })
            .collect()
    }

    /// The columns of a graph with one input per feature (a DataFrame export), when the graph
    /// has that layout (`None` otherwise); an error when the card's names, order or types
    /// contradict the inputs.
    pub fn per_input(
        features: &[FeatureSpec],
        inputs: &[TensorSpec],
    ) -> Option<Result<Vec<Column>, String>> {
        let one_value = |s: &TensorSpec| {
            matches!(
                s.shape.as_slice(),
                [Dim::Batch] | [Dim::Batch, Dim::Fixed(1)]
            )
        };
        if features.len() != inputs.len() || !inputs.iter().all(one_value) {
            return None;
        }
        Some(
            features
                .iter()
                .zip(inputs)
                .enumerate()
                .map(|(i, (f, spec))| {
                    check_input(i, f, spec)?;
                    Ok(Column {
                        spec: f.clone(),
                        input: i,
                        offset: 0,
                        range_here: true,
                    })
                })
                .collect(),
        )
    }

    /// Whether decoded tensors still need this column checked.
    fn needs_check(&self) -> bool {
        let s = &self.spec;
        s.categories.is_some()
            || s.kind == FeatureType::Integer
            || (self.range_here && (s.min.is_some() || s.max.is_some()))
    }

    /// This column's value in row `row` of `tensors` (decoded, batch first).
    pub fn cell<'a>(&self, tensors: &'a [Tensor], row: usize) -> Cell<'a> {
        let Some(t) = tensors.get(self.input) else {
            return Cell::Missing;
        };
        let at = row * t.row_len() + self.offset;
        match &t.data {
            TensorData::String(v) => v.get(at).map_or(Cell::Missing, |s| Cell::Text(s)),
            data => data.get_f64(at).map_or(Cell::Missing, Cell::Number),
        }
    }
}

/// A card feature against its graph input (one value per instance).
fn check_input(i: usize, f: &FeatureSpec, spec: &TensorSpec) -> Result<(), String> {
    if f.name != spec.name {
        return Err(format!(
            "feature {i} is {:?} but graph input {i} is {:?}: list the features under the graph's \
             input names, in its input order ({} {} {:?})",
            f.name,
            spec.name,
            spec.name,
            spec.dtype,
            spec.shape_i64()
        ));
    }
    let strings = spec.dtype == DataType::String;
    if (f.kind == FeatureType::String) != strings {
        return Err(format!(
            "feature {:?} has type = {:?} but graph input {:?} is a {} tensor",
            f.name,
            f.kind.as_str(),
            spec.name,
            spec.dtype
        ));
    }
    Ok(())
}

/// Unseen categories let through (`unknown_categories = "allow"`): (column, count).
pub type Unseen = Vec<(usize, u64)>;

/// Checks the decoded tensors of one request against the typed columns. Returns the unseen
/// categories that were allowed, per column.
pub fn check_columns(columns: &[Column], tensors: &[Tensor]) -> Result<Unseen, ContractViolation> {
    let mut unseen = Unseen::new();
    for (c, column) in columns.iter().enumerate() {
        if !column.needs_check() {
            continue;
        }
        let rows = tensors.get(column.input).map_or(0, Tensor::rows);
        let mut let_through = 0u64;
        for row in 0..rows {
            if !check_cell(column, column.cell(tensors, row), row)? {
                let_through += 1;
            }
        }
        if let_through > 0 {
            unseen.push((c, let_through));
        }
    }
    Ok(unseen)
}

/// One value against its column; `Ok(false)` for an unseen category that is allowed.
fn check_cell(column: &Column, cell: Cell<'_>, row: usize) -> Result<bool, ContractViolation> {
    let spec = &column.spec;
    let known = match cell {
        Cell::Number(v) => {
            if spec.kind == FeatureType::Integer && v.fract() != 0.0 {
                return Err(violation(
                    ViolationKind::WrongType,
                    row,
                    format!(
                        "feature {:?}: expected an integer, got a fractional number ({v})",
                        spec.name
                    ),
                ));
            }
            if column.range_here {
                super::instances::check_range(v, spec, row)?;
            }
            spec.categories
                .as_ref()
                .is_none_or(|set| set.contains_int(v as i64))
        }
        Cell::Text(s) => spec
            .categories
            .as_ref()
            .is_none_or(|set| set.contains_str(s)),
        Cell::Missing => true,
    };
    if known || spec.allow_unknown {
        return Ok(known);
    }
    let value = match cell {
        Cell::Text(s) => truncated(s),
        Cell::Number(v) => v.to_string(),
        Cell::Missing => String::new(),
    };
    let shown = spec.categories.as_ref().map_or("", |s| s.shown.as_str());
    Err(violation(
        ViolationKind::UnknownCategory,
        row,
        format!(
            "feature {:?} has the unseen category {value}; the model knows {shown}",
            spec.name
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `city`: a string with categories rome, oslo; `rooms`: an integer in [1, 9].
    fn card(allow_unknown: bool) -> Vec<FeatureSpec> {
        vec![
            FeatureSpec {
                kind: FeatureType::String,
                categories: Some(Arc::new(CategorySet::new(
                    &["rome".into(), "oslo".into()],
                    &[],
                ))),
                allow_unknown,
                ..FeatureSpec::unnamed("city".into())
            },
            FeatureSpec {
                kind: FeatureType::Integer,
                min: Some(1.0),
                max: Some(9.0),
                ..FeatureSpec::unnamed("rooms".into())
            },
        ]
    }

    fn strings(v: &[&str]) -> Tensor {
        Tensor {
            shape: vec![v.len(), 1],
            data: TensorData::String(v.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn spec(name: &str, dtype: DataType) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype,
            shape: vec![Dim::Batch, Dim::Fixed(1)],
        }
    }

    #[test]
    fn unseen_categories_fractions_and_ranges_are_refused() {
        let inputs = [spec("city", DataType::String), spec("rooms", DataType::F32)];
        let cols = Column::per_input(&card(false), &inputs).unwrap().unwrap();
        let rooms = |v: Vec<f32>| Tensor {
            shape: vec![v.len(), 1],
            data: TensorData::F32(v),
        };
        assert!(
            check_columns(&cols, &[strings(&["rome", "oslo"]), rooms(vec![2.0, 3.0])])
                .unwrap()
                .is_empty()
        );
        let long = "x".repeat(500);
        let e =
            check_columns(&cols, &[strings(&["rome", &long]), rooms(vec![2.0, 3.0])]).unwrap_err();
        assert_eq!(e.kind, ViolationKind::UnknownCategory);
        assert_eq!(e.instance, Some(1));
        assert!(e.message.contains("feature \"city\""), "{e}");
        assert!(e.message.contains("(500 bytes)"), "{e}");
        assert!(e.message.len() < 250, "{e}");
        assert!(e.message.contains("\"rome\", \"oslo\""), "{e}");
        let e = check_columns(&cols, &[strings(&["rome"]), rooms(vec![2.5])]).unwrap_err();
        assert_eq!(e.kind, ViolationKind::WrongType);
        assert!(e.message.contains("expected an integer"), "{e}");
        let e = check_columns(&cols, &[strings(&["rome"]), rooms(vec![10.0])]).unwrap_err();
        assert_eq!(e.kind, ViolationKind::OutOfRange);
    }

    #[test]
    fn allowed_unknowns_are_counted() {
        let inputs = [spec("city", DataType::String), spec("rooms", DataType::I64)];
        let cols = Column::per_input(&card(true), &inputs).unwrap().unwrap();
        let rooms = Tensor {
            shape: vec![3, 1],
            data: TensorData::I64(vec![1, 2, 3]),
        };
        let unseen = check_columns(&cols, &[strings(&["rome", "paris", "lima"]), rooms]).unwrap();
        assert_eq!(unseen, vec![(0, 2)]);
    }

    #[test]
    fn the_card_must_match_the_inputs() {
        let e = Column::per_input(
            &card(false),
            &[spec("city", DataType::F32), spec("rooms", DataType::F32)],
        )
        .unwrap()
        .unwrap_err();
        assert!(
            e.contains("feature \"city\" has type = \"string\" but graph input \"city\" is a f32"),
            "{e}"
        );
        let e = Column::per_input(
            &card(false),
            &[spec("rooms", DataType::F32), spec("city", DataType::String)],
        )
        .unwrap()
        .unwrap_err();
        assert!(e.contains("input order"), "{e}");
        assert!(Column::per_input(&card(false), &[spec("city", DataType::String)]).is_none());
    }
}
