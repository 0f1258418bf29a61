//! infera: a small, fast model-serving HTTP inference server for ONNX models on CPU.
//!
//! Layers, from the bottom:
//! - [`engine`]: tract loading, plain tensors and the CPU worker pool (no HTTP).
//! - [`repository`]: model directories, manifests (model cards), loading and the live catalog.
//! - [`explain`]: feature attributions (Shapley values), pure math over model outputs.
//! - [`inference`]: the model contract, instance decoding, predictions, the predictor service.
//! - [`monitoring`]: every Prometheus metric.
//! - [`auth`]: API keys with scopes and rate limits (no HTTP types).
//! - [`api`]: the axum REST layer and OpenAPI document.
//! - [`server`], [`config`], [`cli`], [`telemetry`], [`memory`]: wiring.

pub mod api;
pub mod auth;
pub mod capture;
pub mod cli;
pub mod config;
pub mod contract;
pub mod engine;
pub mod explain;
pub mod inference;
pub mod listener;
pub mod memory;
pub mod monitoring;
pub mod repository;
pub mod server;
pub mod telemetry;
