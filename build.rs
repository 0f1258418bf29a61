//! Generates the gRPC Open Inference Protocol code from proto/grpc_predict_v2.proto with prost and
//! tonic. protoc comes from the `protoc-bin-vendored` crate, so a bare machine needs nothing
//! installed; a `PROTOC` set in the environment is used instead when present.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTO: &str = "proto/grpc_predict_v2.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    println!("cargo:rerun-if-env-changed=PROTOC");
    if std::env::var_os("PROTOC").is_none() {
        // Build scripts run single-threaded, so setting the variable here races with nothing.
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Raw tensor bytes stay `bytes::Bytes`: decoding slices the received buffer, no copy.
        .bytes(".inference")
        .file_descriptor_set_path(out.join("inference_descriptor.bin"))
        .compile_protos(&[PROTO], &["proto"])?;
    Ok(())
}
