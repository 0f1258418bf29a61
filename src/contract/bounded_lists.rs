//! `#[serde(deserialize_with)]` functions for the lists of a V2 inference request (JSON, and the
//! JSON header of the binary extension), held to the [`ListLimits`](super::ListLimits) of the
//! parse running in [`within`](super::within): `inputs` and `outputs` stop at the tensor past
//! `--max-tensors`, a `shape` at the dimension past `--max-rank`, and parameters (the request's
//! and its tensors', together) at the one past `--max-parameters`. A parameter value is a
//! boolean, a number or a string, as the protocol defines it (a list or an object, which would
//! grow by the body size, is refused). Outside [`within`] the lists are not limited.

use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::decode_budget::{limit_of, spend_parameter, stop, Overrun};
use super::list_limits::RequestList;

/// The request's `inputs`.
pub fn bounded_inputs<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    bounded(d, RequestList::Inputs)
}

/// The request's `outputs` (absent or `null`: none asked for).
pub fn bounded_outputs<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_option(Optional(RequestList::Outputs, PhantomData))
}

/// A tensor's `shape`.
pub fn bounded_shape<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    bounded(d, RequestList::Shape)
}

/// A `parameters` object of the request or of one of its tensors.
pub fn bounded_parameters<'de, D>(d: D) -> Result<Option<Map<String, Value>>, D::Error>
where
    D: Deserializer<'de>,
{
    d.deserialize_option(Parameters)
}

fn bounded<'de, D, T>(d: D, list: RequestList) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(Bounded {
        list,
        limit: limit_of(list),
        items: PhantomData,
    })
}

struct Bounded<T> {
    list: RequestList,
    limit: usize,
    items: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "the array `{}`", self.list.field())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<T>()? {
            if items.len() == self.limit {
                return Err(stop(Overrun::List {
                    list: self.list,
                    limit: self.limit,
                }));
            }
            items.push(item);
        }
        Ok(items)
    }
}

struct Optional<T>(RequestList, PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for Optional<T> {
    type Value = Option<Vec<T>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "the array `{}` or null", self.0.field())
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        bounded(d, self.0).map(Some)
    }
}

struct Parameters;

impl<'de> Visitor<'de> for Parameters {
    type Value = Option<Map<String, Value>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object of parameters or null")
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            spend_parameter::<A::Error>()?;
            let Scalar(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(Some(out))
    }
}

/// A parameter's value: a boolean, a number or a string (`null` is kept too).
struct Scalar(Value);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(ScalarVisitor).map(Scalar)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a parameter value (a boolean, a number or a string)")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::contract::{within, DecodeBudget, ListLimits};

    #[derive(Debug, Deserialize)]
    struct Tensor {
        #[serde(deserialize_with = "bounded_shape")]
        shape: Vec<i64>,
        #[serde(default, deserialize_with = "bounded_parameters")]
        parameters: Option<Map<String, Value>>,
    }

    #[derive(Debug, Deserialize)]
    struct Request {
        #[serde(default, deserialize_with = "bounded_parameters")]
        parameters: Option<Map<String, Value>>,
        #[serde(deserialize_with = "bounded_inputs")]
        inputs: Vec<Tensor>,
        #[serde(default, deserialize_with = "bounded_outputs")]
        outputs: Option<Vec<Tensor>>,
    }

    const BUDGET: DecodeBudget = DecodeBudget {
        max_instances: 1,
        max_elements: 1,
        lists: ListLimits {
            max_tensors: 2,
            max_rank: 3,
            max_parameters: 2,
        },
    };

    fn parse(text: &str) -> Result<Result<Request, serde_json::Error>, Overrun> {
        within(BUDGET, || serde_json::from_str::<Request>(text))
    }

    fn over(list: RequestList, limit: usize) -> Overrun {
        Overrun::List { list, limit }
    }

    #[test]
    fn lists_at_their_limits_parse_as_without_one() {
        let text = r#"{"parameters": {"a": 1}, "inputs": [{"shape": [1, 2, 3], "parameters": {"b": "x"}},
            {"shape": []}], "outputs": [{"shape": [], "parameters": null}, {"shape": [4]}]}"#;
        let r = parse(text).expect("no overrun").expect("valid");
        assert_eq!(r.inputs.len(), 2);
        assert_eq!(r.inputs[0].shape, [1, 2, 3]);
        assert_eq!(r.parameters, json!({"a": 1}).as_object().cloned());
        assert_eq!(
            r.inputs[0].parameters,
            json!({"b": "x"}).as_object().cloned()
        );
        assert_eq!(r.outputs.map(|o| o.len()), Some(2));
        let absent = parse(r#"{"inputs": [], "outputs": null}"#)
            .unwrap()
            .unwrap();
        assert!(absent.outputs.is_none() && absent.parameters.is_none());
        // Outside `within` nothing is limited.
        let free: Request =
            serde_json::from_str(r#"{"inputs": [{"shape": [1, 1, 1, 1, 1]}]}"#).expect("valid");
        assert_eq!(free.inputs[0].shape.len(), 5);
    }

    #[test]
    fn each_list_stops_at_the_item_past_its_limit_without_reading_on() {
        // What follows the item past the limit is not JSON: a parser that read on would fail.
        let cases = [
            (
                r#"{"inputs": [{"shape": []}, {"shape": []}, {"shape": []}, garbage"#,
                over(RequestList::Inputs, 2),
            ),
            (
                r#"{"inputs": [], "outputs": [{"shape": []}, {"shape": []}, {"shape": []} garbage"#,
                over(RequestList::Outputs, 2),
            ),
            (
                r#"{"inputs": [{"shape": [1, 1, 1, 1, garbage"#,
                over(RequestList::Shape, 3),
            ),
            // Parameters count over the whole request: 1 + 1 + 1.
            (
                r#"{"parameters": {"a": 1}, "inputs": [{"shape": [], "parameters": {"b": 2}}], "outputs": [{"shape": [], "parameters": {"c": garbage"#,
                over(RequestList::Parameters, 2),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap_err(), want, "{text}");
        }
    }

    #[test]
    fn parameter_values_are_scalars() {
        for value in ["[1, 2]", r#"{"x": 1}"#] {
            let text = format!(r#"{{"parameters": {{"a": {value}}}, "inputs": []}}"#);
            let e = parse(&text).expect("no overrun").expect_err("refused");
            assert!(e.is_data(), "{e}");
            assert!(e.to_string().contains("a parameter value"), "{e}");
        }
        let text = r#"{"parameters": {"a": true, "b": -1.5}, "inputs": []}"#;
        assert!(parse(text).unwrap().is_ok());
    }
}
