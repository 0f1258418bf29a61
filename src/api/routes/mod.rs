//! Handlers, one file per resource.

pub mod admin;
pub mod explain;
pub mod health;
pub mod metrics;
pub mod models;
pub mod monitoring;
pub mod predict;
pub mod traffic;
