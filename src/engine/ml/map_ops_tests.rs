//! DictVectorizer and CastMap on hand-made map batches.

use super::*;

fn strings(shape: &[usize], values: &[&str]) -> TValue {
    tensor(shape, values.iter().map(|s| s.to_string()).collect()).unwrap()
}

fn ints(shape: &[usize], values: &[i64]) -> TValue {
    tensor(shape, values.to_vec()).unwrap()
}

fn floats(shape: &[usize], values: &[f32]) -> TValue {
    tensor(shape, values.to_vec()).unwrap()
}

fn dict(vocabulary: &[&str]) -> DictVectorizer {
    let words: Vec<String> = vocabulary.iter().map(|s| s.to_string()).collect();
    DictVectorizer {
        width: words.len(),
        vocabulary: Vocabulary::Strings(columns(words)),
        value: f32::datum_type(),
    }
}

fn f32s(out: &TValue) -> Vec<f32> {
    slice::<f32>(out).unwrap().to_vec()
}

#[test]
fn dict_vectorizer_fills_the_vocabulary_columns_and_ignores_other_keys() {
    let op = dict(&["a", "b", "c", "b"]);
    // Row 0: {b: 2, z: 9} (z is not in the vocabulary); row 1: {} (padding never read).
    let inputs = [
        strings(&[2, 2], &["b", "z", "a", "c"]),
        floats(&[2, 2], &[2.0, 9.0, 5.0, 6.0]),
        ints(&[2], &[2, 0]),
    ];
    let out = op.eval(&inputs).unwrap().remove(0);
    assert_eq!(out.shape(), [2, 4]);
    assert_eq!(
        f32s(&out),
        [0.0, 2.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0],
        "a key listed twice in the vocabulary fills both columns; an empty map is all zero"
    );
}

#[test]
fn dict_vectorizer_keeps_the_last_value_of_a_key_given_twice() {
    let op = dict(&["a"]);
    let inputs = [
        strings(&[1, 2], &["a", "a"]),
        floats(&[1, 2], &[1.0, 3.0]),
        ints(&[1], &[2]),
    ];
    assert_eq!(f32s(&op.eval(&inputs).unwrap()[0]), [3.0]);
}

#[test]
fn dict_vectorizer_with_int_keys_and_string_values_pads_with_empty_strings() {
    let op = DictVectorizer {
        vocabulary: Vocabulary::Ints(columns(vec![7, 3])),
        width: 2,
        value: String::datum_type(),
    };
    let inputs = [
        ints(&[1, 1], &[3]),
        strings(&[1, 1], &["x"]),
        ints(&[1], &[1]),
    ];
    let out = op.eval(&inputs).unwrap().remove(0);
    assert_eq!(slice::<String>(&out).unwrap(), ["", "x"]);
}

#[test]
fn lengths_beyond_the_slots_are_refused() {
    let op = dict(&["a"]);
    let inputs = [
        strings(&[1, 1], &["a"]),
        floats(&[1, 1], &[1.0]),
        ints(&[1], &[2]),
    ];
    let error = op.eval(&inputs).unwrap_err().to_string();
    assert!(error.contains("negative or more than 1"), "{error}");
}

fn cast(to: CastTo, sparse: Option<usize>, strings_in: bool) -> CastMap {
    CastMap {
        to,
        sparse,
        strings_in,
    }
}

#[test]
fn cast_map_dense_gives_the_values_in_key_order() {
    let op = cast(CastTo::Float, None, false);
    let inputs = [
        ints(&[2, 2], &[5, 1, 0, 2]),
        floats(&[2, 2], &[5.5, 1.5, 0.5, 2.5]),
        ints(&[2], &[2, 2]),
    ];
    let out = op.eval(&inputs).unwrap().remove(0);
    assert_eq!(out.shape(), [2, 2]);
    assert_eq!(f32s(&out), [1.5, 5.5, 0.5, 2.5]);
}

#[test]
fn cast_map_dense_refuses_maps_of_different_sizes_in_one_batch() {
    let op = cast(CastTo::Float, None, false);
    let inputs = [
        ints(&[2, 2], &[0, 1, 0, 0]),
        floats(&[2, 2], &[1.0, 2.0, 3.0, 0.0]),
        ints(&[2], &[2, 1]),
    ];
    let error = op.eval(&inputs).unwrap_err().to_string();
    assert!(error.contains("same number of entries"), "{error}");
}

#[test]
fn cast_map_sparse_places_keys_below_max_map_and_pads_the_rest() {
    let op = cast(CastTo::String, Some(4), false);
    // Keys 2 and 0 placed, key 9 beyond max_map ignored; second row empty.
    let inputs = [
        ints(&[2, 3], &[2, 9, 0, 0, 0, 0]),
        floats(&[2, 3], &[1.5, 7.0, -2.0, 0.0, 0.0, 0.0]),
        ints(&[2], &[3, 0]),
    ];
    let out = op.eval(&inputs).unwrap().remove(0);
    assert_eq!(out.shape(), [2, 4]);
    assert_eq!(
        slice::<String>(&out).unwrap(),
        [
            "-2.000000",
            "0.f",
            "1.500000",
            "0.f",
            "0.f",
            "0.f",
            "0.f",
            "0.f"
        ]
    );
}

#[test]
fn cast_map_sparse_refuses_negative_keys_and_duplicates() {
    let op = cast(CastTo::Int64, Some(2), false);
    let negative = [
        ints(&[1, 2], &[-1, 0]),
        floats(&[1, 2], &[1.0, 2.0]),
        ints(&[1], &[2]),
    ];
    let error = op.eval(&negative).unwrap_err().to_string();
    assert!(error.contains("negative key -1"), "{error}");
    let twice = [
        ints(&[1, 2], &[1, 1]),
        floats(&[1, 2], &[1.0, 2.0]),
        ints(&[1], &[2]),
    ];
    let error = op.eval(&twice).unwrap_err().to_string();
    assert!(error.contains("key 1 given twice"), "{error}");
}

#[test]
fn cast_map_from_strings_reads_numbers_like_stof_and_stoll() {
    let op = cast(CastTo::Int64, Some(3), true);
    let inputs = [
        ints(&[1, 2], &[0, 2]),
        strings(&[1, 2], &["  42abc", "-7.9"]),
        ints(&[1], &[2]),
    ];
    let out = op.eval(&inputs).unwrap().remove(0);
    assert_eq!(slice::<i64>(&out).unwrap(), [42, 0, -7]);
    assert_eq!(stof(" 1.5e3x").unwrap(), 1500.0);
    assert_eq!(stof("2.").unwrap(), 2.0);
    assert_eq!(stof("1e").unwrap(), 1.0);
    assert!(stof("-INF").unwrap().is_infinite());
    assert!(stof("1e99").is_err(), "out of the float range");
    assert!(stof("abc").is_err());
    assert!(stoll("x1").is_err());
    assert!(stoll("99999999999999999999").is_err());
}
