//! `POST /v2/models/{name}/infer` with a JSON body (Open Inference Protocol).
#![no_main]
use infera_fuzz::{post, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let uri = format!("/v2/models/{}/infer", input.model);
    post(&uri, &input, &[("content-type", b"application/json")]);
});
