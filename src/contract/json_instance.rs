//! One JSON instance as a caller sent it. A (nested) rectangular array of numbers, which is what
//! high-volume callers send, is read straight into one flat `f64` buffer plus its shape while the
//! body is parsed: no JSON value tree, one allocation per instance. Anything else (objects of
//! named features, ragged arrays, strings, ...) is kept as a JSON value for the general decoder,
//! which names exactly what is wrong.

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// Integers beyond this lose precision as f64; they stay JSON values (decoded exactly).
const EXACT_INT: u64 = 1 << 53;

#[derive(Debug, Clone, PartialEq)]
pub enum Instance {
    /// A rectangular array of numbers: `values` row-major, `dims` its shape (`[n]` for a flat
    /// array of n numbers).
    Numbers { dims: Vec<usize>, values: Vec<f64> },
    /// Anything else, as parsed.
    Json(Value),
}

impl Instance {
    /// The instance as a JSON value, borrowed when it is one (numbers read into the fast form
    /// are rebuilt, as floats): for the general decoder.
    pub fn as_json(&self) -> std::borrow::Cow<'_, Value> {
        match self {
            Instance::Json(v) => std::borrow::Cow::Borrowed(v),
            numbers => std::borrow::Cow::Owned(numbers.to_value()),
        }
    }

    /// The instance as a JSON value (numbers read into the fast form come back as floats).
    pub fn to_value(&self) -> Value {
        match self {
            Instance::Numbers { dims, values } => rebuild(dims, values),
            Instance::Json(v) => v.clone(),
        }
    }
}

impl serde::Serialize for Instance {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl From<Value> for Instance {
    /// Reads a JSON value the way a request body is read.
    fn from(value: Value) -> Instance {
        Instance::deserialize(value)
            .unwrap_or_else(|_| unreachable!("any JSON value is an instance"))
    }
}

impl<'de> Deserialize<'de> for Instance {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Instance, D::Error> {
        deserializer.deserialize_any(InstanceVisitor)
    }
}

struct InstanceVisitor;

impl<'de> Visitor<'de> for InstanceVisitor {
    type Value = Instance;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON instance")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Instance, A::Error> {
        let mut values = Vec::new();
        Ok(match read_array(seq, &mut values)? {
            Array::Rect(dims) => Instance::Numbers { dims, values },
            Array::Mixed(items) => Instance::Json(Value::Array(items)),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Instance, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(map)).map(Instance::Json)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Instance, E> {
        Ok(Instance::Json(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Instance, E> {
        Ok(Instance::Json(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Instance, E> {
        Ok(Instance::Json(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Instance, E> {
        Ok(Instance::Json(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Instance, E> {
        Ok(Instance::Json(Value::String(v.to_string())))
    }

    fn visit_unit<E>(self) -> Result<Instance, E> {
        Ok(Instance::Json(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Instance, E> {
        Ok(Instance::Json(Value::Null))
    }
}

/// What an array turned out to be.
enum Array {
    /// Rectangular numbers, appended to the shared buffer; the array's shape.
    Rect(Vec<usize>),
    /// Anything else, as JSON values (nothing of it left in the buffer).
    Mixed(Vec<Value>),
}

/// One array element as read.
enum Element {
    /// A number, appended to the buffer.
    Number,
    /// A rectangular array of numbers of this shape, appended to the buffer.
    Rect(Vec<usize>),
    /// Anything else.
    Other(Value),
}

/// The array's elements so far.
enum State {
    Empty,
    Numbers(usize),
    Rects(Vec<usize>, usize),
    Mixed(Vec<Value>),
}

fn read_array<'de, A: SeqAccess<'de>>(mut seq: A, buf: &mut Vec<f64>) -> Result<Array, A::Error> {
    let start = buf.len();
    let mut state = State::Empty;
    while let Some(element) = seq.next_element_seed(ElementSeed { buf: &mut *buf })? {
        state = match (state, element) {
            (State::Empty, Element::Number) => State::Numbers(1),
            (State::Numbers(n), Element::Number) => State::Numbers(n + 1),
            (State::Empty, Element::Rect(dims)) => State::Rects(dims, 1),
            (State::Rects(dims, n), Element::Rect(d)) if d == dims => State::Rects(dims, n + 1),
            (State::Mixed(mut items), element) => {
                items.push(take_element(element, buf));
                State::Mixed(items)
            }
            (state, element) => {
                let mut items = match state {
                    State::Numbers(_) | State::Rects(..) => {
                        let last = take_element(element, buf);
                        let mut items = split_rows(&state, &buf[start..]);
                        buf.truncate(start);
                        items.push(last);
                        items
                    }
                    State::Empty => vec![take_element(element, buf)],
                    State::Mixed(_) => unreachable!("handled above"),
                };
                items.shrink_to_fit();
                State::Mixed(items)
            }
        };
    }
    Ok(match state {
        State::Empty => Array::Rect(vec![0]),
        State::Numbers(n) => Array::Rect(vec![n]),
        State::Rects(dims, n) => Array::Rect(std::iter::once(n).chain(dims).collect()),
        State::Mixed(items) => Array::Mixed(items),
    })
}

/// Turns the element just read back into a JSON value, taking its numbers off the buffer.
fn take_element(element: Element, buf: &mut Vec<f64>) -> Value {
    match element {
        Element::Number => Value::from(buf.pop().unwrap_or_default()),
        Element::Rect(dims) => {
            let n: usize = dims.iter().product();
            let at = buf.len() - n;
            let value = rebuild(&dims, &buf[at..]);
            buf.truncate(at);
            value
        }
        Element::Other(v) => v,
    }
}

/// The elements read so far (all numbers, or all arrays of one shape) as JSON values.
fn split_rows(state: &State, values: &[f64]) -> Vec<Value> {
    match state {
        State::Numbers(_) => values.iter().map(|v| Value::from(*v)).collect(),
        State::Rects(dims, _) => {
            let n: usize = dims.iter().product();
            values.chunks(n.max(1)).map(|c| rebuild(dims, c)).collect()
        }
        State::Empty | State::Mixed(_) => Vec::new(),
    }
}

/// Nested JSON arrays of `dims` holding `values`.
fn rebuild(dims: &[usize], values: &[f64]) -> Value {
    match dims.split_first() {
        None => values
            .first()
            .map(|v| Value::from(*v))
            .unwrap_or(Value::Null),
        Some((_, [])) => Value::Array(values.iter().map(|v| Value::from(*v)).collect()),
        Some((&n, rest)) => {
            let step: usize = rest.iter().product();
            Value::Array(
                (0..n)
                    .map(|i| rebuild(rest, &values[i * step..(i + 1) * step]))
                    .collect(),
            )
        }
    }
}

struct ElementSeed<'b> {
    buf: &'b mut Vec<f64>,
}

impl<'de> DeserializeSeed<'de> for ElementSeed<'_> {
    type Value = Element;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Element, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ElementSeed<'_> {
    type Value = Element;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_f64<E>(self, v: f64) -> Result<Element, E> {
        self.buf.push(v);
        Ok(Element::Number)
    }

    fn visit_u64<E>(self, v: u64) -> Result<Element, E> {
        if v > EXACT_INT {
            return Ok(Element::Other(Value::from(v)));
        }
        self.buf.push(v as f64);
        Ok(Element::Number)
    }

    fn visit_i64<E>(self, v: i64) -> Result<Element, E> {
        if v.unsigned_abs() > EXACT_INT {
            return Ok(Element::Other(Value::from(v)));
        }
        self.buf.push(v as f64);
        Ok(Element::Number)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Element, A::Error> {
        Ok(match read_array(seq, self.buf)? {
            Array::Rect(dims) => Element::Rect(dims),
            Array::Mixed(items) => Element::Other(Value::Array(items)),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Element, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(map)).map(Element::Other)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Element, E> {
        Ok(Element::Other(Value::Bool(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Element, E> {
        Ok(Element::Other(Value::String(v.to_string())))
    }

    fn visit_unit<E>(self) -> Result<Element, E> {
        Ok(Element::Other(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Element, E> {
        Ok(Element::Other(Value::Null))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Instance {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn rectangular_numbers_are_read_flat_with_their_shape() {
        assert_eq!(
            parse("[1, 2.5, -3]"),
            Instance::Numbers {
                dims: vec![3],
                values: vec![1.0, 2.5, -3.0]
            }
        );
        assert_eq!(
            parse("[[[1, 2], [3, 4]], [[5, 6], [7, 8]], [[9, 10], [11, 12]]]"),
            Instance::Numbers {
                dims: vec![3, 2, 2],
                values: (1..=12).map(f64::from).collect()
            }
        );
        assert_eq!(
            parse("[]"),
            Instance::Numbers {
                dims: vec![0],
                values: vec![]
            }
        );
    }

    #[test]
    fn anything_else_stays_json_with_every_value_kept() {
        for text in [
            r#"{"a": 1, "b": [2, 3]}"#,
            r#"[1, 2, "x", 4]"#,
            r#"["x", 1]"#,
            "[[1, 2], [3]]",
            "[[1, 2], 3]",
            "[1, [2, 3]]",
            "[[1, 2], [3, [4]]]",
            "[[[1], [2]], [[3], [4, 5]], [[6], [7]]]",
            "[1, null, true]",
            "[[1, 2], {\"a\": 1}]",
            "7",
            "\"seven\"",
            "null",
        ] {
            let want: Value = serde_json::from_str(text).unwrap();
            let got = parse(text);
            assert!(matches!(got, Instance::Json(_)), "{text}: {got:?}");
            // Same structure; integers read in the fast form come back as floats.
            assert_eq!(normalise(&got.to_value()), normalise(&want), "{text}");
        }
    }

    #[test]
    fn integers_beyond_f64_precision_are_kept_exactly() {
        let got = parse("[1, 9007199254740993]");
        assert_eq!(got, Instance::Json(json!([1.0, 9007199254740993u64])));
    }

    #[test]
    fn from_value_reads_like_a_body() {
        assert_eq!(
            Instance::from(json!([[1, 2], [3, 4]])),
            Instance::Numbers {
                dims: vec![2, 2],
                values: vec![1.0, 2.0, 3.0, 4.0]
            }
        );
    }

    fn normalise(v: &Value) -> Value {
        match v {
            Value::Number(n) => match n.as_u64() {
                Some(u) if u > EXACT_INT => v.clone(),
                _ => json!(n.as_f64().unwrap()),
            },
            Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), normalise(v))).collect())
            }
            other => other.clone(),
        }
    }
}
