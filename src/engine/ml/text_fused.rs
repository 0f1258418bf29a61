//! Tokenizer -> Flatten -> TfIdfVectorizer (skl2onnx's CountVectorizer / TfidfVectorizer) as one
//! operator. Apart, the Tokenizer makes a `String` per token and per pad cell and the vectorizer
//! looks each up again; fused, tokens stay slices of the input text, each is looked up once in
//! the pool's vocabulary, and the padded rows exist only as token ids. The result is the same as
//! the three nodes' (same tokens, same padding, same n-gram walk).

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{GraphProto, NodeProto};
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, MlOp, OutShape};
use super::ngrams::TokenId;
use super::text::{parse_tfidf, parse_tokenizer, string_slice, TfIdfVectorizer, Tokenizer};

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// The op type the rewrite gives the fused node (registered in `ml::onnx()`).
pub const FUSED_OP: &str = "InferaTokenizedTfIdf";

#[derive(Debug)]
struct TokenizedTfIdf {
    tokenizer: Tokenizer,
    vectorizer: TfIdfVectorizer,
}

/// The fused node carries both nodes' attributes (their names do not overlap).
pub fn tokenized_tfidf(ctx: &ParsingContext, node: &NodeProto) -> Built {
    Ok((
        MlOp::boxed(TokenizedTfIdf {
            // The fused op has no token axis; the symbol only completes the Tokenizer.
            tokenizer: parse_tokenizer(node, ctx.template.symbols.new_with_prefix("tokens"))?,
            vectorizer: parse_tfidf(node)?,
        }),
        vec![],
    ))
}

impl Kernel for TokenizedTfIdf {
    fn name(&self) -> &'static str {
        "TfIdfVectorizer"
    }

    fn outputs(&self) -> Vec<(DatumType, OutShape)> {
        vec![(
            f32::datum_type(),
            OutShape::Rows(vec![self.vectorizer.width()]),
        )]
    }

    /// Texts `[N]` or `[N, C]`; row `n` counts the padded tokens of its `C` texts one after
    /// the other, as Flatten lays out the Tokenizer's `[N, C, T]`.
    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<TValue>> {
        let shape = inputs[0].shape().to_vec();
        let (rows, columns) = match shape.as_slice() {
            [n] => (*n, 1),
            [n, c] => (*n, *c),
            other => bail!("Tokenizer: takes texts [N] or [N, C], got shape {other:?}"),
        };
        let texts = string_slice(&inputs[0], "Tokenizer")?;
        let pool = self.vectorizer.pool();
        // Every text's token ids back to back; ends[i] closes text i.
        let mut ids: Vec<TokenId> = Vec::new();
        let mut ends = Vec::with_capacity(texts.len());
        let mut most = 0;
        for text in texts {
            let start = ids.len();
            ids.extend(self.tokenizer.tokens(text).map(|t| pool.id(t)));
            most = most.max(ids.len() - start);
            ends.push(ids.len());
        }
        let width = self.tokenizer.width(most);
        let out_width = self.vectorizer.width();
        let mut out = vec![0f32; rows * out_width];
        let mut row = Vec::with_capacity(columns.saturating_mul(width));
        for (r, row_out) in out.chunks_exact_mut(out_width.max(1)).enumerate() {
            row.clear();
            for i in r * columns..(r + 1) * columns {
                let start = if i == 0 { 0 } else { ends[i - 1] };
                self.tokenizer
                    .pad_ids(pool, &ids[start..ends[i]], width, &mut row);
            }
            self.vectorizer.row(&row, row_out);
        }
        Ok(tvec!(
            Tensor::from_shape(&[rows, out_width], &out)?.into_tvalue()
        ))
    }
}

/// Replaces each Tokenizer -> Flatten (axis 1) -> TfIdfVectorizer chain whose intermediate
/// values nothing else reads by one fused node. Graphs with subgraphs are left alone (a
/// subgraph could read the intermediate values by name).
pub fn fuse(graph: &mut GraphProto) {
    let has_subgraphs = graph.node.iter().any(|n| {
        n.attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
    });
    if has_subgraphs {
        return;
    }
    while let Some((tokenizer, flatten, vectorizer)) = find_chain(graph) {
        let t = &graph.node[tokenizer];
        let v = &graph.node[vectorizer];
        let fused = NodeProto {
            name: v.name.clone(),
            op_type: FUSED_OP.into(),
            domain: String::new(),
            input: vec![t.input[0].clone()],
            output: v.output.clone(),
            attribute: t.attribute.iter().chain(&v.attribute).cloned().collect(),
            ..Default::default()
        };
        let gone = [t.output[0].clone(), graph.node[flatten].output[0].clone()];
        graph.value_info.retain(|vi| !gone.contains(&vi.name));
        graph.node[vectorizer] = fused;
        let mut removed = [tokenizer, flatten];
        removed.sort_unstable();
        for i in removed.into_iter().rev() {
            graph.node.remove(i);
        }
    }
}

/// The node indices of one fusable chain.
fn find_chain(graph: &GraphProto) -> Option<(usize, usize, usize)> {
    let readers = |value: &str| -> Vec<usize> {
        graph
            .node
            .iter()
            .enumerate()
            .filter(|(_, n)| n.input.iter().any(|i| i == value))
            .map(|(i, _)| i)
            .collect()
    };
    let is_output = |value: &str| graph.output.iter().any(|o| o.name == value);
    graph.node.iter().enumerate().find_map(|(t, node)| {
        if node.op_type != "Tokenizer" || node.input.len() != 1 || node.output.len() != 1 {
            return None;
        }
        let tokens = &node.output[0];
        let [flatten] = readers(tokens)[..] else {
            return None;
        };
        let f = &graph.node[flatten];
        let axis = f
            .attribute
            .iter()
            .find(|a| a.name == "axis")
            .map_or(1, |a| a.i);
        if f.op_type != "Flatten" || axis != 1 || f.output.len() != 1 || is_output(tokens) {
            return None;
        }
        let [vectorizer] = readers(&f.output[0])[..] else {
            return None;
        };
        let v = &graph.node[vectorizer];
        let fits = v.op_type == "TfIdfVectorizer"
            && v.input.len() == 1
            && !is_output(&f.output[0])
            && t < flatten
            && flatten < vectorizer;
        fits.then_some((t, flatten, vectorizer))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::AttributeProto;

    fn attr_s(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 3,
            s: v.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn attr_i(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 2,
            i: v,
            ..Default::default()
        }
    }

    fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 7,
            ints: v.to_vec(),
            ..Default::default()
        }
    }

    fn attr_strings(name: &str, v: &[&str]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 8,
            strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Default::default()
        }
    }

    fn node(op: &str, input: &str, output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            name: format!("{op}_node"),
            op_type: op.into(),
            input: vec![input.into()],
            output: vec![output.into()],
            attribute,
            ..Default::default()
        }
    }

    /// Character bigrams and trigrams with marks and a pad that is also a pool token, so the
    /// fused path must reproduce the padding exactly.
    fn text_nodes(mark: i64) -> (NodeProto, NodeProto, NodeProto) {
        let tokenizer = node(
            "Tokenizer",
            "text",
            "tokens",
            vec![
                attr_s("tokenexp", "."),
                attr_s("pad_value", "#"),
                attr_i("mark", mark),
                attr_i("mincharnum", 1),
            ],
        );
        let flatten = node("Flatten", "tokens", "flat", vec![attr_i("axis", 1)]);
        let pool = [
            "a", "b", "#", "a", "b", "b", "#", "#", "#", "\u{3}", "#", "a", "b", "#",
        ];
        let vectorizer = node(
            "TfIdfVectorizer",
            "flat",
            "counts",
            vec![
                attr_strings("pool_strings", &pool),
                attr_ints("ngram_counts", &[0, 3, 11]),
                attr_ints("ngram_indexes", &[0, 1, 2, 3, 4, 5, 6, 7]),
                attr_i("min_gram_length", 1),
                attr_i("max_gram_length", 3),
                attr_i("max_skip_count", 1),
                attr_s("mode", "TFIDF"),
                AttributeProto {
                    name: "weights".into(),
                    r#type: 6,
                    floats: vec![1.0, 2.0, 0.5, 3.0, 1.5, 0.25, 4.0, 2.5],
                    ..Default::default()
                },
            ],
        );
        (tokenizer, flatten, vectorizer)
    }

    fn values(t: &TValue) -> Vec<f32> {
        t.to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn fused_counts_equal_the_three_nodes() {
        for mark in [0, 1] {
            let (t, _, v) = text_nodes(mark);
            let mut merged = v.clone();
            merged.attribute.extend(t.attribute.clone());
            let symbol = || SymbolScope::default().sym("T");
            let fused = TokenizedTfIdf {
                tokenizer: parse_tokenizer(&merged, symbol()).unwrap(),
                vectorizer: parse_tfidf(&merged).unwrap(),
            };
            let tokenizer = parse_tokenizer(&t, symbol()).unwrap();
            let vectorizer = parse_tfidf(&v).unwrap();
            for (shape, texts) in [
                (vec![3], vec!["abab", "b", ""]),
                (vec![2, 2], vec!["ab", "ba#", "", "aab"]),
                (vec![2], vec!["", ""]),
            ] {
                let input = super::super::strings::strings_tensor(
                    &shape,
                    texts.iter().map(|s| s.to_string()).collect(),
                )
                .unwrap();
                let tokens = tokenizer
                    .eval(std::slice::from_ref(&input))
                    .unwrap()
                    .remove(0);
                let dims = tokens.shape().to_vec();
                let flat = tokens
                    .into_tensor()
                    .into_shape(&[dims[0], dims[1..].iter().product()])
                    .unwrap()
                    .into_tvalue();
                let apart = vectorizer.eval(&[flat]).unwrap();
                let together = fused.eval(&[input]).unwrap();
                assert_eq!(apart[0].shape(), together[0].shape(), "{texts:?}");
                assert_eq!(
                    values(&apart[0]),
                    values(&together[0]),
                    "{texts:?} mark {mark}"
                );
            }
        }
    }

    #[test]
    fn the_rewrite_fuses_only_private_chains() {
        let (t, f, v) = text_nodes(0);
        let mut graph = GraphProto {
            node: vec![t.clone(), f.clone(), v.clone()],
            output: vec![tract_onnx::pb::ValueInfoProto {
                name: "counts".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        fuse(&mut graph);
        assert_eq!(graph.node.len(), 1);
        assert_eq!(graph.node[0].op_type, FUSED_OP);
        assert_eq!(graph.node[0].input, vec!["text"]);
        assert_eq!(graph.node[0].output, vec!["counts"]);
        // The tokens are read by another node too: left as it is.
        let mut graph = GraphProto {
            node: vec![
                t.clone(),
                f.clone(),
                v.clone(),
                node("Identity", "tokens", "x", vec![]),
            ],
            ..Default::default()
        };
        fuse(&mut graph);
        assert_eq!(graph.node.len(), 4);
        // Flatten on another axis: left as it is.
        let mut f2 = f.clone();
        f2.attribute = vec![attr_i("axis", 2)];
        let mut graph = GraphProto {
            node: vec![t, f2, v],
            ..Default::default()
        };
        fuse(&mut graph);
        assert_eq!(graph.node.len(), 3);
    }
}
