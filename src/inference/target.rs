//! What a request is aimed at: the model and version it names and the front-end it came
//! through.

use crate::monitoring::Protocol;

/// Which model version a request means (None picks the default model / highest version), and
/// the front-end it came through (the model series' `protocol` label).
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    pub model: Option<&'a str>,
    pub version: Option<u64>,
    pub protocol: Protocol,
    /// Keeps a sticky canary's choice for requests with the same key (`X-Route-Key`).
    pub route_key: Option<&'a str>,
}
