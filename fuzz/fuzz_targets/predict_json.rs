//! `POST /models/{name}/predict` (and `/predict` for the default model): infera's JSON instances.
#![no_main]
use infera_fuzz::{post, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let uri = if input.model == "iris" {
        "/predict".to_string()
    } else {
        format!("/models/{}/predict", input.model)
    };
    post(&uri, &input, &[("content-type", b"application/json")]);
});
