//! gRPC `ModelInfer`: the walk that counts a request's lists on the wire before prost decodes it
//! (src/api/grpc/prescan.rs), on any bytes. It must never panic, never refuse as malformed a
//! message that prost decodes, and never pass a message whose decoded lists exceed the limits.
//! The input is the serialised `ModelInferRequest` itself (no model byte: the walk does not
//! depend on the model).
#![no_main]
use infera::api::grpc::proto::ModelInferRequest;
use infera::api::grpc::{check_model_infer, Refusal};
use infera::contract::{DecodeBudget, ListLimits};
use libfuzzer_sys::fuzz_target;
use prost::Message;

const WIDE: DecodeBudget = DecodeBudget {
    max_instances: 1,
    max_elements: usize::MAX,
    lists: ListLimits {
        max_tensors: usize::MAX,
        max_rank: usize::MAX,
        max_parameters: usize::MAX,
    },
};

const TIGHT: DecodeBudget = DecodeBudget {
    max_instances: 1,
    max_elements: 8,
    lists: ListLimits {
        max_tensors: 2,
        max_rank: 3,
        max_parameters: 2,
    },
};

fuzz_target!(|data: &[u8]| {
    let walked = check_model_infer(data, &WIDE);
    let tight = check_model_infer(data, &TIGHT);
    assert!(!matches!(walked, Err(Refusal::Over(_))), "{walked:?}");
    let Ok(request) = ModelInferRequest::decode(data) else {
        return;
    };
    assert_eq!(walked, Ok(()), "prost decodes what the walk refused");
    if tight.is_err() {
        return;
    }
    let parameters = request.parameters.len()
        + request.inputs.iter().map(|i| i.parameters.len()).sum::<usize>()
        + request.outputs.iter().map(|o| o.parameters.len()).sum::<usize>();
    let elements: usize = request
        .inputs
        .iter()
        .filter_map(|i| i.contents.as_ref())
        .map(|c| {
            c.bool_contents.len()
                + c.int_contents.len()
                + c.int64_contents.len()
                + c.uint_contents.len()
                + c.uint64_contents.len()
                + c.fp32_contents.len()
                + c.fp64_contents.len()
                + c.bytes_contents.len()
        })
        .sum();
    assert!(request.inputs.len() <= 2 && request.outputs.len() <= 2);
    assert!(request.raw_input_contents.len() <= 2 && parameters <= 2 && elements <= 8);
    assert!(request.inputs.iter().all(|i| i.shape.len() <= 3));
});
