//! The text operators skl2onnx emits for CountVectorizer / TfidfVectorizer, following
//! onnxruntime (`string_normalizer.cc`, contrib `tokenizer.cc`, `tfidfvectorizer.cc`):
//! StringNormalizer (case folding), Tokenizer (com.microsoft: regular-expression tokens, padded
//! rows) and TfIdfVectorizer (n-gram counts with skips, TF / IDF / TFIDF weighting). A Tokenizer
//! feeding a TfIdfVectorizer through a Flatten runs fused (`text_fused.rs`): no token becomes a
//! `String`.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::attrs;
use super::kernel::{Kernel, MlOp, OutShape};
use super::ngrams::{NgramPool, TokenId};
use super::strings::strings_tensor;

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// The elements of a string input, borrowed.
pub(super) fn string_slice<'a>(input: &'a TValue, op: &str) -> TractResult<&'a [String]> {
    ensure!(
        input.datum_type() == String::datum_type(),
        "{op}: expected a string tensor, got {:?}",
        input.datum_type()
    );
    input.try_as_plain_ram()?.as_slice::<String>()
}

// ---------------------------------------------------------------- StringNormalizer

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Lower,
    Upper,
    None,
}

#[derive(Debug)]
struct StringNormalizer {
    case: Case,
}

pub fn string_normalizer(_: &ParsingContext, node: &NodeProto) -> Built {
    let case = match node
        .get_attr_opt::<&str>("case_change_action")?
        .unwrap_or("NONE")
    {
        "LOWER" => Case::Lower,
        "UPPER" => Case::Upper,
        "NONE" => Case::None,
        other => bail!(
            "{} (StringNormalizer): unknown case_change_action {other:?}",
            node.name
        ),
    };
    // Removing stopwords changes the element count, which would break the batch axis.
    ensure!(
        attrs::strings(node, "stopwords")?.is_empty(),
        "{} (StringNormalizer): stopwords are not supported (they remove whole elements)",
        node.name
    );
    Ok((MlOp::boxed(StringNormalizer { case }), vec![]))
}

impl Kernel for StringNormalizer {
    fn name(&self) -> &'static str {
        "StringNormalizer"
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        vec![(String::datum_type(), OutShape::SameAsInput)]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        self.eval_owned(inputs.iter().cloned().collect())
    }

    /// Folds case in place: the input is the plan's only reference to its strings (the Reshape
    /// before it hands over its output), so no string is copied, and ASCII text is folded
    /// without allocating.
    fn eval_owned(&self, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(!inputs.is_empty(), "StringNormalizer: no input");
        string_slice(&inputs[0], "StringNormalizer")?;
        if self.case == Case::None {
            return Ok(tvec!(inputs.swap_remove(0)));
        }
        let mut x = inputs.swap_remove(0).into_tensor();
        let mut view = x.try_as_plain_ram_mut()?;
        for s in view.as_slice_mut::<String>()? {
            match (self.case, s.is_ascii()) {
                (Case::Lower, true) => s.make_ascii_lowercase(),
                (Case::Upper, true) => s.make_ascii_uppercase(),
                (Case::Lower, false) => *s = s.to_lowercase(),
                (Case::Upper, false) => *s = s.to_uppercase(),
                (Case::None, _) => {}
            }
        }
        Ok(tvec!(x.into_tvalue()))
    }
}

// ---------------------------------------------------------------- Tokenizer

#[derive(Debug)]
pub(super) struct Tokenizer {
    pattern: regex::Regex,
    mark: bool,
    pad: String,
    min_chars: usize,
    tokens: Symbol,
}

/// The begin and end marks a Tokenizer with `mark = 1` puts around each text's tokens.
const MARKS: [&str; 2] = ["\u{2}", "\u{3}"];

/// The longest tokenizer pattern accepted, in bytes (patterns come from the model file).
const MAX_PATTERN_BYTES: usize = 4096;

pub fn tokenizer(ctx: &ParsingContext, node: &NodeProto) -> Built {
    let tokens = ctx.template.symbols.new_with_prefix("tokens");
    Ok((MlOp::boxed(parse_tokenizer(node, tokens)?), vec![]))
}

/// The Tokenizer of a node's attributes; `tokens` names its output's last axis.
pub(super) fn parse_tokenizer(node: &NodeProto, tokens: Symbol) -> TractResult<Tokenizer> {
    let name = format!("{} (Tokenizer)", node.name);
    ensure!(
        attrs::strings(node, "separators")?.is_empty(),
        "{name}: separators are not supported, only tokenexp"
    );
    let exp = node
        .get_attr_opt::<String>("tokenexp")?
        .ok_or_else(|| format_err!("{name}: needs tokenexp"))?;
    ensure!(
        exp.len() <= MAX_PATTERN_BYTES,
        "{name}: tokenexp is longer than {MAX_PATTERN_BYTES} bytes"
    );
    let pattern = regex::RegexBuilder::new(&exp)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format_err!("{name}: tokenexp {exp:?}: {e}"))?;
    let min_chars = usize::try_from(node.get_attr_opt::<i64>("mincharnum")?.unwrap_or(1))
        .map_err(|_| format_err!("{name}: negative mincharnum"))?;
    Ok(Tokenizer {
        pattern,
        mark: node.get_attr_opt::<i64>("mark")?.unwrap_or(0) != 0,
        pad: node
            .get_attr_opt::<String>("pad_value")?
            .ok_or_else(|| format_err!("{name}: needs pad_value"))?,
        min_chars,
        tokens,
    })
}

impl Tokenizer {
    /// The tokens of one text, in order.
    pub(super) fn tokens<'a>(&self, text: &'a str) -> impl Iterator<Item = &'a str> + use<'a, '_> {
        self.pattern
            .find_iter(text)
            .map(|m| m.as_str())
            .filter(|t| {
                (self.min_chars <= 1 && !t.is_empty()) || t.chars().count() >= self.min_chars
            })
    }

    /// The padded width of rows whose longest text has `most` tokens (0 when no text has one).
    pub(super) fn width(&self, most: usize) -> usize {
        match (most, self.mark) {
            (0, _) => 0,
            (m, true) => m + 2,
            (m, false) => m,
        }
    }

    /// Appends one text's padded row of token ids: the marks, its tokens' ids (`ids`), the pad.
    pub(super) fn pad_ids(
        &self,
        pool: &NgramPool,
        ids: &[TokenId],
        width: usize,
        row: &mut Vec<TokenId>,
    ) {
        if width == 0 {
            return;
        }
        let start = row.len();
        if self.mark {
            row.push(pool.id(MARKS[0]));
        }
        row.extend_from_slice(ids);
        if self.mark {
            row.push(pool.id(MARKS[1]));
        }
        let pad = pool.id(&self.pad);
        row.resize(start + width, pad);
    }
}

impl Kernel for Tokenizer {
    fn name(&self) -> &'static str {
        "Tokenizer"
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        vec![(
            String::datum_type(),
            OutShape::InputThen(self.tokens.clone()),
        )]
    }

    /// Texts `[N]` give tokens `[N, T]`, texts `[N, C]` tokens `[N, C, T]` (skl2onnx feeds the
    /// `[N, 1]` graph input straight in when there is no StringNormalizer), `T` the most tokens
    /// of any text.
    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let shape = inputs[0].shape().to_vec();
        ensure!(
            matches!(shape.len(), 1 | 2),
            "Tokenizer: takes texts [N] or [N, C], got shape {shape:?}"
        );
        let texts = string_slice(&inputs[0], "Tokenizer")?;
        let rows: Vec<Vec<&str>> = texts.iter().map(|t| self.tokens(t).collect()).collect();
        let width = self.width(rows.iter().map(Vec::len).max().unwrap_or(0));
        let mut out = Vec::with_capacity(rows.len().saturating_mul(width));
        for row in &rows {
            if width == 0 {
                break;
            }
            let start = out.len();
            if self.mark {
                out.push(MARKS[0].to_string());
            }
            out.extend(row.iter().map(|t| t.to_string()));
            if self.mark {
                out.push(MARKS[1].to_string());
            }
            out.resize(start + width, self.pad.clone());
        }
        let out_shape: Vec<usize> = shape.iter().copied().chain([width]).collect();
        Ok(tvec!(strings_tensor(&out_shape, out)?))
    }
}

// ---------------------------------------------------------------- TfIdfVectorizer

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Weighting {
    Tf,
    Idf,
    TfIdf,
}

#[derive(Debug)]
pub(super) struct TfIdfVectorizer {
    pool: NgramPool,
    weighting: Weighting,
    weights: Vec<f32>,
    width: usize,
}

/// Largest n-gram length and skip accepted (both come from the model file).
pub(super) const MAX_GRAM: usize = 64;

pub fn tfidf_vectorizer(_: &ParsingContext, node: &NodeProto) -> Built {
    Ok((MlOp::boxed(parse_tfidf(node)?), vec![]))
}

/// The TfIdfVectorizer of a node's attributes.
pub(super) fn parse_tfidf(node: &NodeProto) -> TractResult<TfIdfVectorizer> {
    let name = format!("{} (TfIdfVectorizer)", node.name);
    ensure!(
        attrs::ints(node, "pool_int64s")?.is_empty(),
        "{name}: integer pools (pool_int64s) are not supported, only pool_strings"
    );
    let strings = attrs::strings(node, "pool_strings")?;
    let counts = attrs::indices(node, "ngram_counts")?;
    let indexes = attrs::indices(node, "ngram_indexes")?;
    let weights = attrs::f32s(node, "weights")?;
    let min_n = attrs_usize(node, "min_gram_length")?;
    let max_n = attrs_usize(node, "max_gram_length")?;
    let max_skip = attrs_usize(node, "max_skip_count")?;
    ensure!(
        (1..=MAX_GRAM).contains(&min_n) && min_n <= max_n && max_n <= MAX_GRAM,
        "{name}: gram lengths {min_n}..={max_n} (at most {MAX_GRAM})"
    );
    ensure!(max_skip <= MAX_GRAM, "{name}: max_skip_count {max_skip}");
    let weighting = match node.get_attr::<&str>("mode")? {
        "TF" => Weighting::Tf,
        "IDF" => Weighting::Idf,
        "TFIDF" => Weighting::TfIdf,
        other => bail!("{name}: unknown mode {other:?}"),
    };
    ensure!(
        weights.is_empty() || weights.len() == indexes.len(),
        "{name}: {} weights for {} n-grams",
        weights.len(),
        indexes.len()
    );
    // ngram_counts[i]: where the (i+1)-grams start in the pool; the k-th n-gram of the pool
    // counts into column ngram_indexes[k], weighted by weights[k].
    let mut grams = Vec::with_capacity(indexes.len());
    let width = indexes.iter().max().map_or(0, |m| m + 1);
    let mut column_weights = vec![1f32; width];
    for (i, start) in counts.iter().enumerate() {
        let n = i + 1;
        let end = counts.get(i + 1).copied().unwrap_or(strings.len());
        ensure!(
            *start <= end && end <= strings.len() && (end - start).is_multiple_of(n),
            "{name}: ngram_counts {counts:?} do not divide the pool of {}",
            strings.len()
        );
        for gram in strings[*start..end].chunks(n) {
            let k = grams.len();
            let column = *indexes
                .get(k)
                .ok_or_else(|| format_err!("{name}: more n-grams than ngram_indexes"))?;
            grams.push((gram, column));
            if let Some(w) = weights.get(k) {
                column_weights[column] = *w;
            }
        }
    }
    Ok(TfIdfVectorizer {
        pool: NgramPool::new(grams, min_n, max_n, max_skip)?,
        weighting,
        weights: column_weights,
        width,
    })
}

fn attrs_usize(node: &NodeProto, name: &str) -> TractResult<usize> {
    let v = node.get_attr::<i64>(name)?;
    usize::try_from(v).map_err(|_| format_err!("{}: attribute {name} is {v}", node.name))
}

impl TfIdfVectorizer {
    pub(super) fn pool(&self) -> &NgramPool {
        &self.pool
    }

    /// Output columns per row.
    pub(super) fn width(&self) -> usize {
        self.width
    }

    /// One output row: the counts of `row`'s n-grams (tokens as ids), weighted.
    pub(super) fn row(&self, row: &[TokenId], out: &mut [f32]) {
        self.pool.count(row, out);
        match self.weighting {
            Weighting::Tf => {}
            Weighting::Idf => {
                for (v, w) in out.iter_mut().zip(&self.weights) {
                    *v = if *v > 0.0 { *w } else { 0.0 };
                }
            }
            Weighting::TfIdf => {
                for (v, w) in out.iter_mut().zip(&self.weights) {
                    *v *= w;
                }
            }
        }
    }
}

impl Kernel for TfIdfVectorizer {
    fn name(&self) -> &'static str {
        "TfIdfVectorizer"
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        vec![(f32::datum_type(), OutShape::Rows(vec![self.width]))]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let shape = inputs[0].shape().to_vec();
        let (rows, per_row) = match shape.as_slice() {
            [n, t] => (*n, *t),
            other => bail!("TfIdfVectorizer: takes [N, tokens], got shape {other:?}"),
        };
        let tokens = string_slice(&inputs[0], "TfIdfVectorizer")?;
        let mut out = vec![0f32; rows * self.width];
        let mut ids: Vec<TokenId> = Vec::with_capacity(per_row);
        for (r, row_out) in out.chunks_exact_mut(self.width.max(1)).enumerate() {
            let Some(row) = tokens.get(r * per_row..(r + 1) * per_row) else {
                break;
            };
            ids.clear();
            ids.extend(row.iter().map(|t| self.pool.id(t)));
            self.row(&ids, row_out);
        }
        Ok(tvec!(
            Tensor::from_shape(&[rows, self.width], &out)?.into_tvalue()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(t: &TValue) -> Vec<String> {
        t.to_plain_array_view::<String>()
            .unwrap()
            .iter()
            .cloned()
            .collect()
    }

    #[test]
    fn string_normalizer_folds_ascii_and_unicode_text() {
        let texts = || strings_tensor(&[3], vec!["Win BIG".into(), "ÉTÉ Ünï".into(), "".into()]);
        let lower = StringNormalizer { case: Case::Lower };
        let out = lower.eval_owned(tvec!(texts().unwrap())).unwrap();
        assert_eq!(strings(&out[0]), vec!["win big", "été ünï", ""]);
        assert_eq!(out[0].shape(), &[3]);
        let upper = StringNormalizer { case: Case::Upper };
        let out = upper.eval(&[texts().unwrap()]).unwrap();
        assert_eq!(strings(&out[0]), vec!["WIN BIG", "ÉTÉ ÜNÏ", ""]);
        // A shared input (another node reads it too) is copied, never changed under the reader.
        let shared = texts().unwrap();
        let out = lower.eval_owned(tvec!(shared.clone())).unwrap();
        assert_eq!(strings(&shared)[0], "Win BIG");
        assert_eq!(strings(&out[0])[0], "win big");
        let none = StringNormalizer { case: Case::None };
        assert_eq!(
            strings(&none.eval(&[texts().unwrap()]).unwrap()[0])[1],
            "ÉTÉ Ünï"
        );
        let numbers = Tensor::from_shape(&[1], &[1f32]).unwrap().into_tvalue();
        assert!(lower.eval(&[numbers]).is_err());
    }

    #[test]
    fn tokenizer_pads_rows_to_the_longest() {
        let t = Tokenizer {
            pattern: regex::Regex::new("[a-zA-Z0-9_]+").unwrap(),
            mark: false,
            pad: "#".into(),
            min_chars: 2,
            tokens: SymbolScope::default().sym("T"),
        };
        let input = strings_tensor(&[2], vec!["win a free prize".into(), "hi".into()]).unwrap();
        let out = t.eval(&[input]).unwrap();
        assert_eq!(out[0].shape(), &[2, 3]);
        let got: Vec<String> = out[0]
            .to_plain_array_view::<String>()
            .unwrap()
            .iter()
            .cloned()
            .collect();
        assert_eq!(got, vec!["win", "free", "prize", "hi", "#", "#"]);
        let empty = strings_tensor(&[1], vec!["!".into()]).unwrap();
        assert_eq!(t.eval(&[empty]).unwrap()[0].shape(), &[1, 0]);
        // [N, C] texts (no StringNormalizer in front): [N, C, T], as onnxruntime.
        let columns = strings_tensor(&[2, 1], vec!["Win big".into(), "no".into()]).unwrap();
        let out = t.eval(&[columns]).unwrap();
        assert_eq!(out[0].shape(), &[2, 1, 2]);
        let got: Vec<String> = out[0]
            .to_plain_array_view::<String>()
            .unwrap()
            .iter()
            .cloned()
            .collect();
        assert_eq!(got, vec!["Win", "big", "no", "#"]);
        let cube = strings_tensor(&[1, 1, 1], vec!["a".into()]).unwrap();
        assert!(t.eval(&[cube]).is_err());
    }
}
