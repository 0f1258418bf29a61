//! The walk against prost's own decoding: messages built by prost and by hand (packed and
//! unpacked fields, nested messages, merged fields, groups, unknown fields), every limit at and
//! past its value, and truncated or mutated bytes (never a panic, never a refusal of a message
//! prost accepts).

use std::collections::HashMap;

use prost::Message;

use super::*;
use crate::api::grpc::proto::infer_parameter::ParameterChoice;
use crate::api::grpc::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use crate::api::grpc::proto::{InferParameter, InferTensorContents, ModelInferRequest};
use crate::contract::ListLimits;

const WIDE: DecodeBudget = DecodeBudget {
    max_instances: 1,
    max_elements: 1 << 40,
    lists: ListLimits {
        max_tensors: 1 << 40,
        max_rank: 1 << 40,
        max_parameters: 1 << 40,
    },
};

fn parameters(keys: &[&str]) -> HashMap<String, InferParameter> {
    keys.iter()
        .map(|k| {
            let choice = ParameterChoice::StringParam(format!("value of {k}"));
            (
                k.to_string(),
                InferParameter {
                    parameter_choice: Some(choice),
                },
            )
        })
        .collect()
}

/// A request with every field the walk counts: typed contents of every type, shapes,
/// parameters on the request, an input and an output, raw contents.
fn full_request() -> ModelInferRequest {
    let contents = InferTensorContents {
        bool_contents: vec![true, false],
        int_contents: vec![-1, 300],
        int64_contents: vec![i64::MIN, 0, 1 << 40],
        uint_contents: vec![7],
        uint64_contents: vec![u64::MAX, 1],
        fp32_contents: vec![1.5; 5],
        fp64_contents: vec![2.5; 3],
        bytes_contents: vec![b"".to_vec().into(), b"abc".to_vec().into()],
    };
    ModelInferRequest {
        model_name: "iris".into(),
        model_version: "1".into(),
        id: "request-7".into(),
        parameters: parameters(&["priority", "timeout"]),
        inputs: vec![
            InferInputTensor {
                name: "a".into(),
                datatype: "FP32".into(),
                shape: vec![1, -1, 300_000],
                parameters: parameters(&["x"]),
                contents: Some(contents),
            },
            InferInputTensor {
                name: "b".into(),
                datatype: "INT64".into(),
                shape: vec![2],
                parameters: HashMap::new(),
                contents: None,
            },
        ],
        outputs: vec![InferRequestedOutputTensor {
            name: "out".into(),
            parameters: parameters(&["classification"]),
        }],
        raw_input_contents: vec![b"\x01\x02".to_vec().into()],
    }
}

/// The counts of a decoded request, as the walk counts them.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    inputs: usize,
    outputs: usize,
    raw: usize,
    parameters: usize,
    rank: usize,
    elements: usize,
}

fn counts(r: &ModelInferRequest) -> Counts {
    let elements = |c: &InferTensorContents| {
        c.bool_contents.len()
            + c.int_contents.len()
            + c.int64_contents.len()
            + c.uint_contents.len()
            + c.uint64_contents.len()
            + c.fp32_contents.len()
            + c.fp64_contents.len()
            + c.bytes_contents.len()
    };
    Counts {
        inputs: r.inputs.len(),
        outputs: r.outputs.len(),
        raw: r.raw_input_contents.len(),
        parameters: r.parameters.len()
            + r.inputs.iter().map(|i| i.parameters.len()).sum::<usize>()
            + r.outputs.iter().map(|o| o.parameters.len()).sum::<usize>(),
        rank: r.inputs.iter().map(|i| i.shape.len()).max().unwrap_or(0),
        elements: r
            .inputs
            .iter()
            .filter_map(|i| i.contents.as_ref())
            .map(elements)
            .sum(),
    }
}

fn budget(c: Counts) -> DecodeBudget {
    DecodeBudget {
        max_instances: 1,
        max_elements: c.elements,
        lists: ListLimits {
            max_tensors: c.inputs.max(c.outputs).max(c.raw),
            max_rank: c.rank,
            max_parameters: c.parameters,
        },
    }
}

fn list_over(list: RequestList, limit: usize) -> Result<(), Refusal> {
    Err(Refusal::Over(Overrun::List { list, limit }))
}

/// The walk passes `bytes` at exactly prost's counts and refuses each count one below it.
fn assert_counted_exactly(bytes: &[u8]) {
    let decoded = ModelInferRequest::decode(bytes).expect("prost decodes the message");
    let c = counts(&decoded);
    let exact = budget(c);
    assert_eq!(check(bytes, &exact), Ok(()), "{c:?}");
    let mut lower = exact;
    lower.max_elements = c.elements - 1;
    let elements = Err(Refusal::Over(Overrun::Elements {
        limit: c.elements - 1,
    }));
    assert_eq!(check(bytes, &lower), elements, "{c:?}");
    let mut lower = exact;
    lower.lists.max_rank = c.rank - 1;
    assert_eq!(
        check(bytes, &lower),
        list_over(RequestList::Shape, c.rank - 1)
    );
    let mut lower = exact;
    lower.lists.max_parameters = c.parameters - 1;
    let over = list_over(RequestList::Parameters, c.parameters - 1);
    assert_eq!(check(bytes, &lower), over);
}

#[test]
fn a_full_request_is_counted_as_prost_decodes_it() {
    let bytes = full_request().encode_to_vec();
    assert_counted_exactly(&bytes);
    let c = counts(&full_request());
    assert_eq!((c.inputs, c.outputs, c.raw), (2, 1, 1));
    assert_eq!((c.parameters, c.rank, c.elements), (4, 3, 20));
    let tensors = |n| DecodeBudget {
        lists: ListLimits {
            max_tensors: n,
            ..WIDE.lists
        },
        ..WIDE
    };
    assert_eq!(check(&bytes, &tensors(2)), Ok(()));
    assert_eq!(
        check(&bytes, &tensors(1)),
        list_over(RequestList::Inputs, 1)
    );
    let two_outputs = ModelInferRequest {
        outputs: vec![InferRequestedOutputTensor::default(); 2],
        ..Default::default()
    };
    let over = list_over(RequestList::Outputs, 1);
    assert_eq!(check(&two_outputs.encode_to_vec(), &tensors(1)), over);
    let two_raw = ModelInferRequest {
        raw_input_contents: vec![Default::default(); 2],
        ..Default::default()
    };
    let over = list_over(RequestList::RawContents, 1);
    assert_eq!(check(&two_raw.encode_to_vec(), &tensors(1)), over);
}

// Hand-built wire bytes.

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(field: u32, wire_type: u8, out: &mut Vec<u8>) {
    varint(u64::from(field << 3 | u32::from(wire_type)), out);
}

fn len_field(field: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    key(field, 2, &mut out);
    varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

fn varint_field(field: u32, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    key(field, 0, &mut out);
    varint(v, &mut out);
    out
}

#[test]
fn unpacked_and_merged_fields_are_counted_as_prost_appends_them() {
    // contents: int64 unpacked (3 fields), then packed (2 values), fp32 unpacked (wire type 5);
    // a second contents field for the same input merges into the first.
    let mut contents = Vec::new();
    for v in [1u64, 1 << 50, u64::MAX] {
        contents.extend(varint_field(3, v));
    }
    let mut packed = Vec::new();
    varint(5, &mut packed);
    varint(1 << 35, &mut packed);
    contents.extend(len_field(3, &packed));
    key(6, 5, &mut contents);
    contents.extend(1.5f32.to_le_bytes());
    let more = len_field(8, b"bytes");
    // shape: two unpacked dims, then a packed field of two more.
    let mut input = Vec::new();
    input.extend(varint_field(3, 4));
    input.extend(varint_field(3, 2));
    let mut dims = Vec::new();
    varint(3, &mut dims);
    varint(1 << 20, &mut dims);
    input.extend(len_field(3, &dims));
    input.extend(len_field(5, &contents));
    input.extend(len_field(5, &more));
    let bytes = len_field(5, &input);
    let decoded = ModelInferRequest::decode(bytes.as_slice()).unwrap();
    let c = decoded.inputs[0].contents.as_ref().unwrap();
    assert_eq!(c.int64_contents.len(), 5);
    assert_eq!(c.fp32_contents, [1.5]);
    assert_eq!(c.bytes_contents.len(), 1);
    assert_eq!(decoded.inputs[0].shape.len(), 4);
    assert_eq!(counts(&decoded).elements, 7);
    let mut with_parameter = bytes.clone();
    with_parameter.extend(len_field(4, &len_field(1, b"k")));
    assert_counted_exactly(&with_parameter);
}

#[test]
fn unknown_fields_and_groups_are_skipped_as_prost_skips_them() {
    let mut bytes = full_request().encode_to_vec();
    // Field 99: a group holding a varint, a nested group and a string; field 100: fixed64.
    key(99, 3, &mut bytes);
    bytes.extend(varint_field(1, 5));
    key(2, 3, &mut bytes);
    key(2, 4, &mut bytes);
    bytes.extend(len_field(3, b"xyz"));
    key(99, 4, &mut bytes);
    key(100, 1, &mut bytes);
    bytes.extend(7u64.to_le_bytes());
    assert_counted_exactly(&bytes);
    // An unknown field inside an input's contents is not an element.
    let input = len_field(
        5,
        &[len_field(5, &varint_field(42, 1)), varint_field(3, 1)].concat(),
    );
    assert!(ModelInferRequest::decode(input.as_slice()).is_ok());
    let none = DecodeBudget {
        max_elements: 0,
        ..WIDE
    };
    assert_eq!(check(&input, &none), Ok(()));
}

#[test]
fn two_million_empty_inputs_stop_at_the_first_past_the_limit() {
    let bytes = [0x2a, 0x00].repeat(2_000_000);
    let limits = DecodeBudget {
        lists: ListLimits {
            max_tensors: 1024,
            ..WIDE.lists
        },
        ..WIDE
    };
    assert_eq!(check(&bytes, &limits), list_over(RequestList::Inputs, 1024));
    // The same count of shape entries in one input, and of parameters.
    let shape = len_field(5, &len_field(3, &vec![1u8; 2_000_000]));
    let rank = DecodeBudget {
        lists: ListLimits {
            max_rank: 32,
            ..WIDE.lists
        },
        ..WIDE
    };
    assert_eq!(check(&shape, &rank), list_over(RequestList::Shape, 32));
}

#[test]
fn malformed_bytes_are_refused_as_prost_refuses_them() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("end group at the top", vec![0x0c]),
        ("field number 0", vec![0x00, 0x00]),
        ("wire type 7", vec![0x0f]),
        ("length past the end", vec![0x2a, 0x05, 0x00]),
        ("varint cut short", vec![0x08 | 0x80]),
        (
            "eleven-byte varint",
            [vec![0x20], vec![0xff; 10], vec![0x01]].concat(),
        ),
        ("inputs as a varint", varint_field(5, 1)),
        (
            "shape as fixed64",
            len_field(5, &[0x19, 0, 0, 0, 0, 0, 0, 0, 0]),
        ),
        (
            "packed fp32 of 5 bytes",
            len_field(5, &len_field(5, &len_field(6, &[0; 5]))),
        ),
        (
            "packed varint cut short",
            len_field(5, &len_field(5, &len_field(3, &[0x81]))),
        ),
        (
            "group without its end",
            [vec![0x9b, 0x06], varint_field(1, 1)].concat(),
        ),
    ];
    for (what, bytes) in cases {
        let walked = check(&bytes, &WIDE);
        assert!(
            matches!(walked, Err(Refusal::Malformed(_))),
            "{what}: {walked:?}"
        );
        assert!(
            ModelInferRequest::decode(bytes.as_slice()).is_err(),
            "{what}"
        );
    }
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

/// prost accepts => the walk accepts (so the walk refuses as malformed only what prost refuses).
/// Says whether prost accepted.
fn assert_agrees_with_prost(bytes: &[u8]) -> bool {
    let walked = check(bytes, &WIDE);
    let accepted = ModelInferRequest::decode(bytes).is_ok();
    if accepted {
        assert_eq!(walked, Ok(()), "{bytes:?}");
    }
    accepted
}

#[test]
fn truncated_and_mutated_messages_never_panic_nor_refuse_what_prost_accepts() {
    let bytes = full_request().encode_to_vec();
    let prefixes = (0..bytes.len())
        .filter(|end| assert_agrees_with_prost(&bytes[..*end]))
        .count();
    assert!(prefixes > 0);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0;
    for _ in 0..40_000 {
        let mut mutated = bytes.clone();
        for _ in 0..1 + rng.below(2) {
            let at = rng.below(mutated.len());
            match rng.below(3) {
                0 => mutated[at] = rng.below(256) as u8,
                1 => mutated.insert(at, rng.below(256) as u8),
                _ => {
                    mutated.remove(at);
                }
            }
        }
        accepted += usize::from(assert_agrees_with_prost(&mutated));
    }
    eprintln!("{accepted} of 40000 mutations accepted by prost");
    // Enough of the mutations are still messages prost accepts for the check to mean something.
    assert!(
        accepted > 2_000,
        "{accepted} of 40000 mutations accepted by prost"
    );
}
