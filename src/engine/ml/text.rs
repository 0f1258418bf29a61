//! The text operators skl2onnx emits for CountVectorizer / TfidfVectorizer, following
//! onnxruntime (`string_normalizer.cc`, contrib `tokenizer.cc`, `tfidfvectorizer.cc`):
//! StringNormalizer (case folding), Tokenizer (com.microsoft: regular-expression tokens, padded
//! rows) and TfIdfVectorizer (n-gram counts with skips, TF / IDF / TFIDF weighting).

use std::collections::HashMap;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::attrs;
use super::kernel::{Kernel, MlOp, OutShape};
use super::strings::strings_tensor;

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

fn strings_of(input: &TValue, op: &str) -> TractResult<Vec<String>> {
    ensure!(
        input.datum_type() == String::datum_type(),
        "{op}: expected a string tensor, got {:?}",
        input.datum_type()
    );
    Ok(input
        .to_plain_array_view::<String>()?
        .iter()
        .cloned()
        .collect())
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
        let shape = inputs[0].shape().to_vec();
        let mut x = strings_of(&inputs[0], "StringNormalizer")?;
        for s in x.iter_mut() {
            match self.case {
                Case::Lower => *s = s.to_lowercase(),
                Case::Upper => *s = s.to_uppercase(),
                Case::None => {}
            }
        }
        Ok(tvec!(strings_tensor(&shape, x)?))
    }
}

// ---------------------------------------------------------------- Tokenizer

#[derive(Debug)]
struct Tokenizer {
    pattern: regex::Regex,
    mark: bool,
    pad: String,
    min_chars: usize,
    tokens: Symbol,
}

/// The longest tokenizer pattern accepted, in bytes (patterns come from the model file).
const MAX_PATTERN_BYTES: usize = 4096;

pub fn tokenizer(ctx: &ParsingContext, node: &NodeProto) -> Built {
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
    Ok((
        MlOp::boxed(Tokenizer {
            pattern,
            mark: node.get_attr_opt::<i64>("mark")?.unwrap_or(0) != 0,
            pad: node
                .get_attr_opt::<String>("pad_value")?
                .ok_or_else(|| format_err!("{name}: needs pad_value"))?,
            min_chars,
            tokens: ctx.template.symbols.new_with_prefix("tokens"),
        }),
        vec![],
    ))
}

impl Tokenizer {
    fn tokens<'a>(&self, text: &'a str) -> Vec<&'a str> {
        self.pattern
            .find_iter(text)
            .map(|m| m.as_str())
            .filter(|t| t.chars().count() >= self.min_chars)
            .collect()
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
        let texts = strings_of(&inputs[0], "Tokenizer")?;
        let rows: Vec<Vec<&str>> = texts.iter().map(|t| self.tokens(t)).collect();
        let marks = if self.mark { 2 } else { 0 };
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        let width = if width == 0 { 0 } else { width + marks };
        let mut out = Vec::with_capacity(rows.len().saturating_mul(width));
        for row in &rows {
            if width == 0 {
                break;
            }
            if self.mark {
                out.push("\u{2}".to_string());
            }
            out.extend(row.iter().map(|t| t.to_string()));
            if self.mark {
                out.push("\u{3}".to_string());
            }
            let filled = row.len() + marks;
            out.extend(std::iter::repeat_n(self.pad.clone(), width - filled));
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
struct TfIdfVectorizer {
    /// n-gram (its tokens joined by '\0') -> output column.
    pool: HashMap<String, usize>,
    min_n: usize,
    max_n: usize,
    max_skip: usize,
    weighting: Weighting,
    weights: Vec<f32>,
    width: usize,
}

/// Largest n-gram length and skip accepted (both come from the model file).
const MAX_GRAM: usize = 64;

pub fn tfidf_vectorizer(_: &ParsingContext, node: &NodeProto) -> Built {
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
    let mut pool = HashMap::new();
    let width = indexes.iter().max().map_or(0, |m| m + 1);
    let mut column_weights = vec![1f32; width];
    let mut k = 0;
    for (i, start) in counts.iter().enumerate() {
        let n = i + 1;
        let end = counts.get(i + 1).copied().unwrap_or(strings.len());
        ensure!(
            *start <= end && end <= strings.len() && (end - start).is_multiple_of(n),
            "{name}: ngram_counts {counts:?} do not divide the pool of {}",
            strings.len()
        );
        for gram in strings[*start..end].chunks(n) {
            let column = *indexes
                .get(k)
                .ok_or_else(|| format_err!("{name}: more n-grams than ngram_indexes"))?;
            pool.insert(gram.join("\0"), column);
            if let Some(w) = weights.get(k) {
                column_weights[column] = *w;
            }
            k += 1;
        }
    }
    Ok((
        MlOp::boxed(TfIdfVectorizer {
            pool,
            min_n,
            max_n,
            max_skip,
            weighting,
            weights: column_weights,
            width,
        }),
        vec![],
    ))
}

fn attrs_usize(node: &NodeProto, name: &str) -> TractResult<usize> {
    let v = node.get_attr::<i64>(name)?;
    usize::try_from(v).map_err(|_| format_err!("{}: attribute {name} is {v}", node.name))
}

impl TfIdfVectorizer {
    /// Counts of one row's n-grams into `out`, walking starts and skips as onnxruntime does:
    /// unigrams once, longer n-grams once per skip distance.
    fn count(&self, row: &[String], out: &mut [f32]) {
        let mut key = String::new();
        for distance in 1..=self.max_skip + 1 {
            let lo = if distance == 1 {
                self.min_n
            } else {
                self.min_n.max(2)
            };
            if lo > self.max_n {
                break;
            }
            for start in 0..row.len() {
                for n in lo..=self.max_n {
                    let last = start + (n - 1) * distance;
                    if last >= row.len() {
                        break;
                    }
                    key.clear();
                    for j in 0..n {
                        if j > 0 {
                            key.push('\0');
                        }
                        key.push_str(&row[start + j * distance]);
                    }
                    if let Some(c) = self.pool.get(&key) {
                        out[*c] += 1.0;
                    }
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
        let tokens = strings_of(&inputs[0], "TfIdfVectorizer")?;
        let mut out = vec![0f32; rows * self.width];
        for r in 0..rows {
            let row_out = &mut out[r * self.width..(r + 1) * self.width];
            self.count(&tokens[r * per_row..(r + 1) * per_row], row_out);
            for (c, v) in row_out.iter_mut().enumerate() {
                *v = match self.weighting {
                    Weighting::Tf => *v,
                    Weighting::Idf if *v > 0.0 => self.weights[c],
                    Weighting::Idf => 0.0,
                    Weighting::TfIdf => *v * self.weights[c],
                };
            }
        }
        Ok(tvec!(
            Tensor::from_shape(&[rows, self.width], &out)?.into_tvalue()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tokens: &[&str]) -> Vec<String> {
        tokens.iter().map(|t| t.to_string()).collect()
    }

    fn vectorizer(
        grams: &[(&str, usize)],
        min_n: usize,
        max_n: usize,
        skip: usize,
    ) -> TfIdfVectorizer {
        TfIdfVectorizer {
            pool: grams
                .iter()
                .map(|(g, c)| (g.replace(' ', "\0"), *c))
                .collect(),
            min_n,
            max_n,
            max_skip: skip,
            weighting: Weighting::Tf,
            weights: vec![1.0; 4],
            width: 4,
        }
    }

    #[test]
    fn ngrams_are_counted_once_per_skip_distance_and_unigrams_once() {
        let v = vectorizer(&[("a", 0), ("b", 1), ("a b", 2), ("a a", 3)], 1, 2, 0);
        let mut out = vec![0.0; 4];
        v.count(&row(&["a", "b", "a", "b"]), &mut out);
        assert_eq!(out, vec![2.0, 2.0, 2.0, 0.0]);
        // With one skip, "a _ a" adds an "a a" bigram; unigrams are not counted again.
        let v = vectorizer(&[("a", 0), ("b", 1), ("a b", 2), ("a a", 3)], 1, 2, 1);
        let mut out = vec![0.0; 4];
        v.count(&row(&["a", "b", "a", "b"]), &mut out);
        assert_eq!(out, vec![2.0, 2.0, 2.0, 1.0]);
        // Bigrams only.
        let v = vectorizer(&[("a", 0), ("a b", 2)], 2, 2, 0);
        let mut out = vec![0.0; 4];
        v.count(&row(&["a", "b", "#"]), &mut out);
        assert_eq!(out, vec![0.0, 0.0, 1.0, 0.0]);
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
