//! Limits held while a request body is deserialised, so refusing an oversize request costs the
//! bytes parsed up to the limit, not a parsed tree of the whole body:
//! - an instance list (`/predict`, V1) stops at its `--max-instances`+1-th instance; its tensor
//!   elements are still counted exactly after decoding (the message names the count), each row
//!   being bounded by the body limit;
//! - V2 `data` arrays stop at the `--max-elements`+1-th value, summed over the request's inputs;
//! - any other list a client sends can be held to a fixed length with [`at_most`] (feedback
//!   items), refused as a data error at the item past it.
//!
//! serde's `Deserialize` takes no context, so the budget of the parse running on this thread is
//! kept in a thread-local for the length of one synchronous parse ([`within`]). A parse outside
//! [`within`] (a model card, a test, `Instance::from`) is not limited here.

use std::cell::Cell;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::json_instance::Instance;
use super::list_limits::{ListLimits, RequestList};

/// The limits one parse is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeBudget {
    /// Instances an instance list may hold (`--max-instances`).
    pub max_instances: usize,
    /// Values the body's V2 `data` arrays may hold in total (`--max-elements`).
    pub max_elements: usize,
    /// Tensors, dimensions and parameters of a named-tensor request.
    pub lists: ListLimits,
}

/// Why a parse was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overrun {
    /// An instance list went past `limit`. `count` is the exact count when the list ended right
    /// after the first instance over the limit; None when more followed (not read).
    Instances { count: Option<usize>, limit: usize },
    /// The body's V2 `data` arrays went past `limit` values (the rest was not read).
    Elements { limit: usize },
    /// A list of a named-tensor request went past its `limit` (the rest was not read).
    List { list: RequestList, limit: usize },
}

#[derive(Debug, Clone, Copy)]
struct Active {
    budget: DecodeBudget,
    elements: usize,
    parameters: usize,
}

thread_local! {
    static ACTIVE: Cell<Option<Active>> = const { Cell::new(None) };
    static OVERRUN: Cell<Option<Overrun>> = const { Cell::new(None) };
}

/// Runs `parse` (one synchronous deserialisation) held to `budget`. `Err` when the parse was
/// stopped by the budget, whatever `parse` itself returned (its error then only says so).
pub fn within<T>(budget: DecodeBudget, parse: impl FnOnce() -> T) -> Result<T, Overrun> {
    /// Puts back the state of an enclosing parse, also if `parse` panics.
    struct Restore(Option<Active>, Option<Overrun>);
    impl Drop for Restore {
        fn drop(&mut self) {
            ACTIVE.set(self.0);
            OVERRUN.set(self.1);
        }
    }
    let _restore = Restore(
        ACTIVE.replace(Some(Active {
            budget,
            elements: 0,
            parameters: 0,
        })),
        OVERRUN.take(),
    );
    let parsed = parse();
    match OVERRUN.take() {
        Some(overrun) => Err(overrun),
        None => Ok(parsed),
    }
}

/// The limit of `list` in the parse running on this thread (none outside [`within`]).
pub(super) fn limit_of(list: RequestList) -> usize {
    ACTIVE.get().map_or(usize::MAX, |a| a.budget.lists.of(list))
}

/// Counts one parameter of the request against `--max-parameters`.
pub(super) fn spend_parameter<E: de::Error>() -> Result<(), E> {
    let Some(mut active) = ACTIVE.get() else {
        return Ok(());
    };
    let limit = active.budget.lists.max_parameters;
    if active.parameters >= limit {
        return Err(stop(Overrun::List {
            list: RequestList::Parameters,
            limit,
        }));
    }
    active.parameters += 1;
    ACTIVE.set(Some(active));
    Ok(())
}

/// Records the overrun for [`within`] and stops the parse with an error.
pub(super) fn stop<E: de::Error>(overrun: Overrun) -> E {
    OVERRUN.set(Some(overrun));
    E::custom("request over its size limits")
}

/// Counts one value of a `data` array against the element budget.
fn spend_element<E: de::Error>() -> Result<(), E> {
    let Some(mut active) = ACTIVE.get() else {
        return Ok(());
    };
    if active.elements >= active.budget.max_elements {
        return Err(stop(Overrun::Elements {
            limit: active.budget.max_elements,
        }));
    }
    active.elements += 1;
    ACTIVE.set(Some(active));
    Ok(())
}

/// `#[serde(deserialize_with)]` for an instance list: stops after the first instance past
/// `--max-instances`, reading nothing after it but the next byte that says whether the list ends.
pub fn bounded_instances<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Instance>, D::Error> {
    d.deserialize_seq(InstancesVisitor)
}

struct InstancesVisitor;

impl<'de> Visitor<'de> for InstancesVisitor {
    type Value = Vec<Instance>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of instances")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Instance>, A::Error> {
        let limit = ACTIVE.get().map_or(usize::MAX, |a| a.budget.max_instances);
        let mut instances = Vec::new();
        while let Some(instance) = seq.next_element::<Instance>()? {
            if instances.len() == limit {
                // Exactly limit+1 when the list closes here; the next instance is never read.
                let ends = matches!(seq.next_element_seed(Unread), Ok(None));
                return Err(stop(Overrun::Instances {
                    count: ends.then_some(limit + 1),
                    limit,
                }));
            }
            instances.push(instance);
        }
        Ok(instances)
    }
}

/// A seed that refuses without reading: asks whether a sequence has another element.
struct Unread;

impl<'de> DeserializeSeed<'de> for Unread {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(de::Error::custom("not read"))
    }
}

/// Reads a JSON array into a `Vec` of at most `limit` items: the parse stops with a data error
/// ("more than {limit} items") at the item past the limit, before the list grows further and
/// without reading the rest. Not tied to [`within`]: the limit holds wherever the type is parsed.
pub fn at_most<'de, D, T>(d: D, limit: usize) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(ListVisitor {
        limit,
        items: PhantomData,
    })
}

struct ListVisitor<T> {
    limit: usize,
    items: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "an array of at most {} items", self.limit)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<T>()? {
            if items.len() == self.limit {
                return Err(de::Error::custom(format_args!(
                    "more than {} items; the limit is {}",
                    self.limit, self.limit
                )));
            }
            items.push(item);
        }
        Ok(items)
    }
}

/// `#[serde(deserialize_with)]` for a V2 `data` field (any JSON, read as a value): every number
/// and string counts against the element budget. `null` reads as absent.
pub fn bounded_data<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    let Counted(value) = Counted::deserialize(d)?;
    Ok((!value.is_null()).then_some(value))
}

/// A JSON value whose scalars were counted against the element budget.
struct Counted(Value);

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Counted, D::Error> {
        d.deserialize_any(CountedVisitor).map(Counted)
    }
}

struct CountedVisitor;

impl<'de> Visitor<'de> for CountedVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        spend_element()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        spend_element()?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        spend_element()?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        spend_element()?;
        Ok(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        spend_element()?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        spend_element()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(CountedVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Counted(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some((key, Counted(value))) = map.next_entry::<String, Counted>()? {
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(deserialize_with = "bounded_instances")]
        instances: Vec<Instance>,
    }

    #[derive(Debug, Deserialize)]
    struct Tensor {
        #[serde(default, deserialize_with = "bounded_data")]
        data: Option<Value>,
    }

    const LISTS: ListLimits = ListLimits {
        max_tensors: 4,
        max_rank: 3,
        max_parameters: 2,
    };

    const BUDGET: DecodeBudget = DecodeBudget {
        max_instances: 3,
        max_elements: 100,
        lists: LISTS,
    };

    fn parse<T: for<'de> Deserialize<'de>>(
        budget: DecodeBudget,
        text: &str,
    ) -> Result<Result<T, serde_json::Error>, Overrun> {
        within(budget, || serde_json::from_str::<T>(text))
    }

    #[test]
    fn lists_within_the_limit_parse_as_without_one() {
        let body = parse::<Body>(BUDGET, r#"{"instances": [[1, 2], [3, 4], {"a": 1}]}"#);
        let free: Body =
            serde_json::from_str(r#"{"instances": [[1, 2], [3, 4], {"a": 1}]}"#).expect("valid");
        assert_eq!(
            body.expect("no overrun").expect("valid").instances,
            free.instances
        );
    }

    #[test]
    fn one_instance_over_is_counted_exactly() {
        let got = parse::<Body>(BUDGET, r#"{"instances": [[1], [2], [3], [4]]}"#);
        assert_eq!(
            got.unwrap_err(),
            Overrun::Instances {
                count: Some(4),
                limit: 3
            }
        );
    }

    #[test]
    fn the_parse_stops_after_the_first_instance_over_the_limit() {
        // Row 5 and everything after it is not JSON: a parser that read on would fail on it.
        for tail in [", [5], garbage", ", }}}", " garbage", ", [1e400]"] {
            let text = format!(r#"{{"instances": [[1], [2], [3], [4]{tail}"#);
            let got = parse::<Body>(BUDGET, &text);
            assert_eq!(
                got.unwrap_err(),
                Overrun::Instances {
                    count: None,
                    limit: 3
                },
                "{text}"
            );
        }
    }

    #[test]
    fn data_values_past_the_element_limit_stop_the_parse() {
        let budget = DecodeBudget {
            max_instances: 10,
            max_elements: 5,
            lists: LISTS,
        };
        let fits = parse::<Vec<Tensor>>(budget, r#"[{"data": [1, 2]}, {"data": [[3], [4], [5]]}]"#);
        assert_eq!(fits.expect("no overrun").expect("valid").len(), 2);
        let over = parse::<Vec<Tensor>>(
            budget,
            r#"[{"data": [1, 2]}, {"data": [3, 4, 5, 6], nonsense"#,
        );
        assert_eq!(over.unwrap_err(), Overrun::Elements { limit: 5 });
        let data = parse::<Tensor>(budget, r#"{"data": [[1, "a"], [true, {"x": 2}]]}"#);
        let Tensor { data } = data.expect("no overrun").expect("valid");
        assert_eq!(data, Some(serde_json::json!([[1, "a"], [true, {"x": 2}]])));
        let null = parse::<Tensor>(budget, r#"{"data": null}"#);
        assert_eq!(null.expect("no overrun").expect("valid").data, None);
        // Instance lists are held to the instance count only; their elements are counted later.
        let rows = parse::<Body>(budget, r#"{"instances": [[1, 2, 3], [4, 5, 6]]}"#);
        assert_eq!(rows.expect("no overrun").expect("valid").instances.len(), 2);
    }

    #[derive(Debug, Deserialize)]
    struct Items {
        #[serde(deserialize_with = "three")]
        items: Vec<u32>,
    }

    fn three<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
        at_most(d, 3)
    }

    #[test]
    fn fixed_length_lists_stop_at_the_item_past_their_limit() {
        let fits: Items = serde_json::from_str(r#"{"items": [1, 2, 3]}"#).expect("valid");
        assert_eq!(fits.items, [1, 2, 3]);
        // What follows the fourth item is not JSON: a parser that read on would say so.
        let over = serde_json::from_str::<Items>(r#"{"items": [1, 2, 3, 4, ]]] garbage"#);
        let e = over.expect_err("over the limit");
        assert!(e.is_data(), "{e}");
        assert!(
            e.to_string()
                .starts_with("more than 3 items; the limit is 3"),
            "{e}"
        );
        let control = serde_json::from_str::<Items>(r#"{"items": [1, 2, 3, ]]] garbage"#);
        assert!(control.expect_err("malformed").is_syntax());
    }

    #[test]
    fn without_a_budget_nothing_is_limited_and_budgets_do_not_leak() {
        let text = format!(r#"{{"instances": [{}]}}"#, vec!["[1]"; 50].join(","));
        assert!(parse::<Body>(BUDGET, &text).is_err());
        let free: Body = serde_json::from_str(&text).expect("valid");
        assert_eq!(free.instances.len(), 50);
        assert!(ACTIVE.get().is_none() && OVERRUN.get().is_none());
    }
}
