//! The Open Inference Protocol (KServe V2) REST API.

mod datatype;
pub mod routes;
pub mod types;
