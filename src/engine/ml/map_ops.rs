//! DictVectorizer and CastMap, on a batch of maps as three tensors (`engine/maps.rs`: keys
//! `[N, M]`, values `[N, M]`, lengths `[N]`), following onnxruntime's kernels
//! (`dictvectorizer.h`, `cast_map.cc`) for each map:
//!
//! - DictVectorizer: one row of the vocabulary's width; column `c` holds the value of the key
//!   `vocabulary[c]` (every column of a key listed twice), or the type's zero (empty string)
//!   when the map lacks it; keys outside the vocabulary are ignored. `[N, V]`.
//! - CastMap (int64 keys; float or string values): `cast_to` TO_FLOAT / TO_INT64 / TO_STRING;
//!   `map_form` DENSE gives the values in ascending key order (`[N, M]`: the maps of one batch
//!   must then have the same number of entries, as one map of `n` entries gives `[1, n]`);
//!   SPARSE gives `[N, max_map]`, the value of key `k` at column `k`, keys from `max_map` on
//!   ignored, a negative key refused, and the pad `0` / `"0.f"` elsewhere.
//!
//! A key given twice in one map (the request decoders refuse it; the tensor protocols can send
//! it) counts once: DictVectorizer keeps the last value, CastMap refuses the map.

use std::collections::HashMap;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::tensor_proto::DataType as PbType;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::attrs;
use super::kernel::{rejected, Kernel, MlOp, OutShape};
use super::map_inputs::{KEY_TYPE_ATTR, VALUE_TYPE_ATTR};

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// The map's key and value types, as the rewrite recorded them on the node.
fn map_types(node: &NodeProto) -> TractResult<(PbType, PbType)> {
    let read = |name: &str| -> TractResult<PbType> {
        let code = node.get_attr_opt::<i64>(name)?.ok_or_else(|| {
            format_err!(
                "{} ({}): its input is not a map graph input",
                node.name,
                node.op_type
            )
        })?;
        i32::try_from(code)
            .ok()
            .and_then(|c| PbType::try_from(c).ok())
            .ok_or_else(|| format_err!("{}: unknown element type {code}", node.op_type))
    };
    Ok((read(KEY_TYPE_ATTR)?, read(VALUE_TYPE_ATTR)?))
}

fn datum(t: PbType) -> TractResult<DatumType> {
    Ok(match t {
        PbType::Float => f32::datum_type(),
        PbType::Double => f64::datum_type(),
        PbType::Int64 => i64::datum_type(),
        PbType::String => String::datum_type(),
        other => bail!("map element type {other:?} is not supported"),
    })
}

/// Rows, slots per row and each row's entry count, checked against the three tensors' shapes.
fn batch(name: &str, inputs: &[TValue]) -> TractResult<(usize, usize, Vec<usize>)> {
    let (keys, values, lengths) = (inputs[0].shape(), inputs[1].shape(), inputs[2].shape());
    let [rows, slots] = *keys else {
        bail!("{name}: map keys must be [N, M], got {keys:?}");
    };
    ensure!(
        values == keys && lengths == [rows],
        "{name}: map values {values:?} and lengths {lengths:?} do not fit keys {keys:?}"
    );
    let lengths = inputs[2].cast_to::<i64>()?;
    let lengths = lengths
        .to_plain_array_view::<i64>()?
        .iter()
        .map(|&n| usize::try_from(n).ok().filter(|n| *n <= slots))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| {
            rejected(format!(
                "{name}: a map length is negative or more than {slots}"
            ))
        })?;
    Ok((rows, slots, lengths))
}

/// A plain slice of a tensor's elements.
fn slice<T: Datum>(t: &TValue) -> TractResult<&[T]> {
    t.try_as_plain_ram()?.as_slice::<T>()
}

fn tensor<T: Datum>(shape: &[usize], data: Vec<T>) -> TractResult<TValue> {
    Ok(tract_ndarray::ArrayD::from_shape_vec(shape, data)?
        .into_tensor()
        .into_tvalue())
}

// ---------------------------------------------------------------- DictVectorizer

#[derive(Debug)]
enum Vocabulary {
    Strings(HashMap<String, Vec<usize>>),
    Ints(HashMap<i64, Vec<usize>>),
}

#[derive(Debug)]
struct DictVectorizer {
    vocabulary: Vocabulary,
    width: usize,
    value: DatumType,
}

pub fn dict_vectorizer(_: &ParsingContext, node: &NodeProto) -> Built {
    let (key, value) = map_types(node)?;
    let strings = attrs::strings(node, "string_vocabulary")?;
    let ints = attrs::ints(node, "int64_vocabulary")?;
    let (vocabulary, width) = match key {
        PbType::String => (Vocabulary::Strings(columns(strings.clone())), strings.len()),
        PbType::Int64 => (Vocabulary::Ints(columns(ints.clone())), ints.len()),
        other => bail!("DictVectorizer: key type {other:?} is not supported"),
    };
    let value = datum(value)?;
    Ok((
        MlOp::boxed(DictVectorizer {
            vocabulary,
            width,
            value,
        }),
        vec![],
    ))
}

/// Each vocabulary entry's columns (a key listed twice fills both).
fn columns<K: std::hash::Hash + Eq>(vocabulary: Vec<K>) -> HashMap<K, Vec<usize>> {
    let mut map: HashMap<K, Vec<usize>> = HashMap::with_capacity(vocabulary.len());
    for (c, k) in vocabulary.into_iter().enumerate() {
        map.entry(k).or_default().push(c);
    }
    map
}

impl DictVectorizer {
    /// Per slot (row-major over `[N, M]`), the columns its key fills.
    fn slot_columns<'a>(&'a self, keys: &TValue) -> TractResult<Vec<Option<&'a [usize]>>> {
        Ok(match &self.vocabulary {
            Vocabulary::Strings(map) => slice::<String>(keys)?
                .iter()
                .map(|k| map.get(k).map(Vec::as_slice))
                .collect(),
            Vocabulary::Ints(map) => slice::<i64>(keys)?
                .iter()
                .map(|k| map.get(k).map(Vec::as_slice))
                .collect(),
        })
    }

    fn scatter<T: Datum + Clone + Default>(
        &self,
        inputs: &[TValue],
        columns: &[Option<&[usize]>],
    ) -> TractResult<TValue> {
        let (rows, slots, lengths) = batch("DictVectorizer", inputs)?;
        let values = slice::<T>(&inputs[1])?;
        let mut out = vec![T::default(); rows * self.width];
        for (r, len) in lengths.iter().enumerate() {
            let row = &mut out[r * self.width..(r + 1) * self.width];
            for s in r * slots..r * slots + len {
                for &c in columns[s].unwrap_or_default() {
                    row[c] = values[s].clone();
                }
            }
        }
        tensor(&[rows, self.width], out)
    }
}

impl Kernel for DictVectorizer {
    fn name(&self) -> &'static str {
        "DictVectorizer"
    }

    fn arity(&self) -> usize {
        3
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        vec![(self.value, OutShape::Rows(vec![self.width]))]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let columns = self.slot_columns(&inputs[0])?;
        let out = match self.value {
            DatumType::F32 => self.scatter::<f32>(inputs, &columns)?,
            DatumType::F64 => self.scatter::<f64>(inputs, &columns)?,
            DatumType::I64 => self.scatter::<i64>(inputs, &columns)?,
            _ => self.scatter::<String>(inputs, &columns)?,
        };
        Ok(tvec!(out))
    }

    fn check_input(&self, dt: DatumType) -> TractResult<()> {
        let want = match self.vocabulary {
            Vocabulary::Strings(_) => String::datum_type(),
            Vocabulary::Ints(_) => i64::datum_type(),
        };
        ensure!(
            dt == want,
            "DictVectorizer: keys must be {want:?}, got {dt:?}"
        );
        Ok(())
    }
}

// ---------------------------------------------------------------- CastMap

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CastTo {
    Float,
    Int64,
    String,
}

#[derive(Debug)]
struct CastMap {
    to: CastTo,
    /// `None`: DENSE; `Some(max_map)`: SPARSE.
    sparse: Option<usize>,
    strings_in: bool,
}

pub fn cast_map(_: &ParsingContext, node: &NodeProto) -> Built {
    let (key, value) = map_types(node)?;
    ensure!(
        key == PbType::Int64 && matches!(value, PbType::Float | PbType::String),
        "CastMap: map({key:?}, {value:?}) is not supported (int64 keys, float or string values)"
    );
    let text = |name: &str, default: &str| -> TractResult<String> {
        Ok(node
            .get_attr_opt::<String>(name)?
            .unwrap_or_else(|| default.into()))
    };
    let to = match text("cast_to", "TO_FLOAT")?.as_str() {
        "TO_FLOAT" => CastTo::Float,
        "TO_INT64" => CastTo::Int64,
        "TO_STRING" => CastTo::String,
        other => bail!("CastMap: cast_to {other:?} is not supported"),
    };
    let sparse = match text("map_form", "DENSE")?.as_str() {
        "DENSE" => None,
        "SPARSE" => {
            let max = node.get_attr_opt::<i64>("max_map")?.unwrap_or(1);
            let max = usize::try_from(max)
                .ok()
                .filter(|m| *m > 0)
                .ok_or_else(|| format_err!("CastMap: max_map must be positive, got {max}"))?;
            Some(max)
        }
        other => bail!("CastMap: map_form {other:?} is not supported"),
    };
    let strings_in = value == PbType::String;
    Ok((
        MlOp::boxed(CastMap {
            to,
            sparse,
            strings_in,
        }),
        vec![],
    ))
}

/// One converted value.
enum Cell {
    F(f32),
    I(i64),
    S(String),
}

impl CastMap {
    fn pad(&self) -> Cell {
        match self.to {
            CastTo::Float => Cell::F(0.0),
            CastTo::Int64 => Cell::I(0),
            CastTo::String => Cell::S("0.f".into()),
        }
    }

    fn cast(&self, inputs: &[TValue], slot: usize) -> TractResult<Cell> {
        if self.strings_in {
            let text = &slice::<String>(&inputs[1])?[slot];
            return Ok(match self.to {
                CastTo::Float => Cell::F(stof(text)?),
                CastTo::Int64 => Cell::I(stoll(text)?),
                CastTo::String => Cell::S(text.clone()),
            });
        }
        let v = slice::<f32>(&inputs[1])?[slot];
        Ok(match self.to {
            CastTo::Float => Cell::F(v),
            CastTo::Int64 => Cell::I(v as i64),
            CastTo::String => Cell::S(to_string(v)),
        })
    }

    /// One row's cells: its entries sorted by key, then placed DENSE or SPARSE.
    fn row(
        &self,
        inputs: &[TValue],
        first: usize,
        len: usize,
        out: &mut Vec<Cell>,
    ) -> TractResult<()> {
        let keys = slice::<i64>(&inputs[0])?;
        let mut entries: Vec<(i64, usize)> = (first..first + len).map(|s| (keys[s], s)).collect();
        entries.sort_unstable();
        if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(rejected(format!(
                "CastMap: key {} given twice in one map",
                w[0].0
            )));
        }
        let Some(max) = self.sparse else {
            for (_, s) in entries {
                out.push(self.cast(inputs, s)?);
            }
            return Ok(());
        };
        if let Some((k, _)) = entries.first().filter(|(k, _)| *k < 0) {
            return Err(rejected(format!(
                "CastMap: negative key {k} (SPARSE takes keys from 0)"
            )));
        }
        let mut next = entries.iter().peekable();
        for col in 0..max {
            match next.next_if(|(k, _)| *k as usize == col) {
                Some((_, s)) => out.push(self.cast(inputs, *s)?),
                None => out.push(self.pad()),
            }
        }
        Ok(())
    }
}

impl Kernel for CastMap {
    fn name(&self) -> &'static str {
        "CastMap"
    }

    fn arity(&self) -> usize {
        3
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        let dt = match self.to {
            CastTo::Float => f32::datum_type(),
            CastTo::Int64 => i64::datum_type(),
            CastTo::String => String::datum_type(),
        };
        let shape = match self.sparse {
            None => OutShape::SameAsInput,
            Some(max) => OutShape::Rows(vec![max]),
        };
        vec![(dt, shape)]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let (rows, slots, lengths) = batch("CastMap", inputs)?;
        let width = self.sparse.unwrap_or(slots);
        if self.sparse.is_none() && lengths.iter().any(|n| *n != slots) {
            return Err(rejected(
                "CastMap DENSE: the maps of one call must have the same number of entries",
            ));
        }
        let mut cells = Vec::with_capacity(rows * width);
        for (r, len) in lengths.iter().enumerate() {
            self.row(inputs, r * slots, *len, &mut cells)?;
        }
        let shape = [rows, width];
        let out = match self.to {
            CastTo::Float => tensor(
                &shape,
                cells
                    .into_iter()
                    .map(|c| match c {
                        Cell::F(v) => v,
                        _ => 0.0,
                    })
                    .collect(),
            )?,
            CastTo::Int64 => tensor(
                &shape,
                cells
                    .into_iter()
                    .map(|c| match c {
                        Cell::I(v) => v,
                        _ => 0,
                    })
                    .collect(),
            )?,
            CastTo::String => tensor(
                &shape,
                cells
                    .into_iter()
                    .map(|c| match c {
                        Cell::S(v) => v,
                        _ => String::new(),
                    })
                    .collect(),
            )?,
        };
        Ok(tvec!(out))
    }

    fn check_input(&self, dt: DatumType) -> TractResult<()> {
        ensure!(
            dt == i64::datum_type(),
            "CastMap: keys must be int64, got {dt:?}"
        );
        Ok(())
    }
}

/// C++ `std::to_string(float)`: `%f`, six decimals.
fn to_string(v: f32) -> String {
    match v {
        v if v.is_nan() => "nan".into(),
        v if v.is_infinite() => if v > 0.0 { "inf" } else { "-inf" }.into(),
        v => format!("{:.6}", f64::from(v)),
    }
}

/// The decimal number at the start of `text` after white space, as C's `strtof` reads it
/// (`inf`, `infinity`, `nan` included; hexadecimal floats are not read); empty when there is
/// no number.
fn number_prefix(text: &str) -> &str {
    let t = text.trim_start();
    let b = t.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    for word in ["infinity", "inf", "nan"] {
        let head = b.get(i..i + word.len());
        if head.is_some_and(|h| h.eq_ignore_ascii_case(word.as_bytes())) {
            return &t[..i + word.len()];
        }
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let mut n = digits(&mut i);
    if b.get(i) == Some(&b'.') {
        let mut j = i + 1;
        let frac = digits(&mut j);
        if n + frac > 0 {
            i = j;
            n += frac;
        }
    }
    if n == 0 {
        return "";
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1 + usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        if digits(&mut j) > 0 {
            i = j;
        }
    }
    &t[..i]
}

/// C++ `std::stof`: the number at the start of the text, an error when there is none or it is
/// out of the float's range.
fn stof(text: &str) -> TractResult<f32> {
    let prefix = number_prefix(text);
    let v: f32 = prefix
        .parse()
        .map_err(|_| rejected(format!("CastMap: {text:?} is not a number")))?;
    let word = prefix
        .trim_start_matches(['+', '-'])
        .starts_with(['i', 'I']);
    if v.is_infinite() && !word {
        return Err(rejected(format!(
            "CastMap: {text:?} is out of the float range"
        )));
    }
    Ok(v)
}

/// C++ `std::stoll`: the base-10 integer at the start of the text after white space.
fn stoll(text: &str) -> TractResult<i64> {
    let t = text.trim_start();
    let sign = usize::from(t.starts_with(['+', '-']));
    let end = sign + t[sign..].bytes().take_while(u8::is_ascii_digit).count();
    if end == sign {
        return Err(rejected(format!("CastMap: {text:?} is not an integer")));
    }
    t[..end]
        .parse()
        .map_err(|_| rejected(format!("CastMap: {text:?} is out of the int64 range")))
}

#[cfg(test)]
#[path = "map_ops_tests.rs"]
mod tests;
