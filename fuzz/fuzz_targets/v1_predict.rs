//! `POST /v1/models/{name}:predict` (KServe V1 protocol).
#![no_main]
use infera_fuzz::{post, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let uri = format!("/v1/models/{}:predict", input.model);
    post(&uri, &input, &[("content-type", b"application/json")]);
});
