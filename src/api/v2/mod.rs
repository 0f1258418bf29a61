//! The Open Inference Protocol (KServe V2) REST API.

pub(in crate::api) mod bytes;
pub(in crate::api) mod datatype;
pub mod routes;
pub mod types;
