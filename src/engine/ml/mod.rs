//! infera's own implementations of ai.onnx.ml operators, registered into tract's ONNX parser so
//! that classic ML graphs (trees, SVMs, scalers, encoders, ZipMap) run as ordinary tract models,
//! mixed freely with standard operators.

mod argmax;
mod attrs;
mod feature_extractor;
mod kernel;
mod linear;
mod logsumexp;
mod map_inputs;
mod map_ops;
mod ngrams;
mod post;
mod refused;
mod strings;
mod svm;
mod text;
mod text_fused;
mod transforms;
mod tree;
mod tree_ops;

use std::path::Path;

use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::{Framework, InferenceModel, TractResult};
use tract_onnx::tract_hir::internal::bail;
use tract_onnx::Onnx;

/// tract's ONNX parser with infera's ai.onnx.ml operators registered (replacing tract's own
/// where it has one).
pub fn onnx() -> Onnx {
    let mut onnx = tract_onnx::onnx();
    let reg = &mut onnx.op_register;
    reg.insert("TreeEnsembleClassifier", tree_ops::tree_classifier);
    reg.insert("TreeEnsembleRegressor", tree_ops::tree_regressor);
    reg.insert("SVMClassifier", svm::svm_classifier);
    reg.insert("SVMRegressor", svm::svm_regressor);
    reg.insert("LinearClassifier", linear::linear_classifier);
    reg.insert("LinearRegressor", linear::linear_regressor);
    reg.insert("Normalizer", linear::normalizer);
    reg.insert("Scaler", transforms::scaler);
    reg.insert("Imputer", transforms::imputer);
    reg.insert("Binarizer", transforms::binarizer);
    reg.insert("ZipMap", transforms::zipmap);
    reg.insert("OneHotEncoder", transforms::one_hot_encoder);
    reg.insert("LabelEncoder", transforms::label_encoder);
    reg.insert("FeatureVectorizer", transforms::feature_vectorizer);
    reg.insert("StringNormalizer", text::string_normalizer);
    reg.insert("Tokenizer", text::tokenizer);
    reg.insert("TfIdfVectorizer", text::tfidf_vectorizer);
    reg.insert(text_fused::FUSED_OP, text_fused::tokenized_tfidf);
    reg.insert("DictVectorizer", map_ops::dict_vectorizer);
    reg.insert("CastMap", map_ops::cast_map);
    reg.insert("ReduceLogSumExp", logsumexp::reduce_log_sum_exp);
    reg.insert("ArgMax", argmax::arg_max);
    reg.insert(
        "ArrayFeatureExtractor",
        feature_extractor::array_feature_extractor,
    );
    onnx
}

/// Reads an ONNX file into a tract inference model with infera's operators, after rewriting the
/// graph where converters rely on onnxruntime behaviour tract does not share.
pub fn load(path: &Path) -> TractResult<InferenceModel> {
    load_with(path, |onnx| onnx)
}

/// As [`load`], with the parser adjusted by `configure` (e.g. dropping the exporter's
/// intermediate shape annotations, which can clash with concrete input shapes when a plan is
/// specialised, or reading the declared output facts).
pub fn load_with(path: &Path, configure: impl FnOnce(Onnx) -> Onnx) -> TractResult<InferenceModel> {
    let onnx = configure(onnx());
    let mut proto = onnx.proto_model_for_path(path)?;
    if let Some(graph) = proto.graph.as_mut() {
        map_inputs::rewrite(path, graph)?;
        refused::refuse_non_tensor_values(graph)?;
    }
    normalise(&mut proto);
    let dir = path.parent().and_then(|d| d.to_str());
    let parsed = onnx.parse(&proto, dir)?;
    if !parsed.unresolved_inputs.is_empty() {
        bail!(
            "could not resolve inputs at top level: {:?}",
            parsed.unresolved_inputs
        );
    }
    Ok(parsed.model)
}

/// The graph's string class labels, when its classifier (or ZipMap) has `classlabels_strings`.
pub fn class_labels(path: &Path) -> TractResult<Option<Vec<String>>> {
    let proto = onnx().proto_model_for_path(path)?;
    Ok(proto.graph.as_ref().and_then(strings::graph_class_labels))
}

/// ArrayFeatureExtractor with a scalar index (skl2onnx's SVM and discretizer graphs): onnxruntime
/// keeps the last axis with length 1, tract drops it. Giving the index the shape [1] makes both
/// agree.
///
/// Tokenizer -> Flatten -> TfIdfVectorizer chains become one fused node (`text_fused.rs`).
fn normalise(proto: &mut ModelProto) {
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    text_fused::fuse(graph);
    let scalar_indices: Vec<String> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "ArrayFeatureExtractor")
        .filter_map(|n| n.input.get(1).cloned())
        .collect();
    for init in graph.initializer.iter_mut() {
        if init.dims.is_empty() && scalar_indices.contains(&init.name) {
            init.dims = vec![1];
        }
    }
}
