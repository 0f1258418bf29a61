//! infera's integration tests, in one binary so CI links once.

mod access;
mod admin;
mod batching;
mod common;
mod conformance;
mod drain;
mod engine_modes;
mod errors;
mod explain;
mod golden;
mod graph_types;
mod grpc;
mod hardening;
mod metrics;
mod models;
mod monitoring;
mod onnx;
mod openapi;
mod overload;
mod server;
mod traffic;
mod updates;
mod v2;
