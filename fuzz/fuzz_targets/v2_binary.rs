//! `POST /v2/models/{name}/infer` with the binary tensor data extension: the body is a JSON
//! header followed by raw tensor bytes, split at `Inference-Header-Content-Length`. The first
//! four bytes of the body part of the input are that header's value (little-endian u32, sent as
//! decimal text, so lengths past the body are tried too); the rest is the request body.
#![no_main]
use infera_fuzz::{post, Input, HEADER_LENGTH};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(mut input) = Input::parse(data) else {
        return;
    };
    let Some((length, body)) = input.body.split_first_chunk::<4>() else {
        return;
    };
    let length = u32::from_le_bytes(*length).to_string();
    input.body = body;
    let uri = format!("/v2/models/{}/infer", input.model);
    post(
        &uri,
        &input,
        &[
            ("content-type", b"application/octet-stream"),
            (HEADER_LENGTH, length.as_bytes()),
        ],
    );
});
