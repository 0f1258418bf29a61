//! `POST /models/{name}/feedback`: ground truth joined to earlier predictions.
#![no_main]
use infera_fuzz::{post, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let uri = format!("/models/{}/feedback", input.model);
    post(&uri, &input, &[("content-type", b"application/json")]);
});
