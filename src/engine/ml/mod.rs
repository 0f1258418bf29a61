//! infera's own implementations of ai.onnx.ml operators, registered into tract's ONNX parser so
//! that classic ML graphs (trees, SVMs, scalers, encoders, ZipMap) run as ordinary tract models,
//! mixed freely with standard operators.

mod attrs;
mod kernel;
mod post;
mod transforms;
mod tree;
mod tree_ops;

use tract_onnx::Onnx;

/// tract's ONNX parser with infera's ai.onnx.ml operators registered (replacing tract's own
/// where it has one).
pub fn onnx() -> Onnx {
    let mut onnx = tract_onnx::onnx();
    let reg = &mut onnx.op_register;
    reg.insert("TreeEnsembleClassifier", tree_ops::tree_classifier);
    reg.insert("TreeEnsembleRegressor", tree_ops::tree_regressor);
    reg.insert("Scaler", transforms::scaler);
    reg.insert("Imputer", transforms::imputer);
    reg.insert("Binarizer", transforms::binarizer);
    reg.insert("ZipMap", transforms::zipmap);
    reg.insert("OneHotEncoder", transforms::one_hot_encoder);
    reg.insert("LabelEncoder", transforms::label_encoder);
    reg.insert("FeatureVectorizer", transforms::feature_vectorizer);
    onnx
}
