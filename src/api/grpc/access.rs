//! Access control on the gRPC services, the counterpart of `api/access.rs`: one table says which
//! scope each RPC needs; the caller is authenticated from the `authorization` metadata
//! (`Bearer <key>`, as on REST), its scope checked and its rate limits applied before the call
//! reaches a service. Probes (liveness, readiness, the health service) stay open.

use std::net::SocketAddr;

use axum::http::HeaderMap;
use tonic::transport::server::TcpConnectInfo;

use super::layer::UNMATCHED_RPC;
use crate::api::access::Rule;
use crate::api::{ApiError, AppState};
use crate::auth::{Caller, Scope};

/// Every served RPC and what it needs. An RPC missing here needs `Admin` (fail closed); a test
/// checks that every served RPC is listed. Paths that name no served RPC are left to the router,
/// which answers UNIMPLEMENTED (as REST leaves unmatched paths to its 404).
pub const TABLE: &[(&str, Rule)] = &[
    ("inference.GRPCInferenceService/ServerLive", Rule::Open),
    ("inference.GRPCInferenceService/ServerReady", Rule::Open),
    ("grpc.health.v1.Health/Check", Rule::Open),
    ("grpc.health.v1.Health/Watch", Rule::Open),
    (
        "inference.GRPCInferenceService/ModelReady",
        Rule::Scoped(Scope::Read),
    ),
    (
        "inference.GRPCInferenceService/ServerMetadata",
        Rule::Scoped(Scope::Read),
    ),
    (
        "inference.GRPCInferenceService/ModelMetadata",
        Rule::Scoped(Scope::Read),
    ),
    (
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Rule::Scoped(Scope::Read),
    ),
    (
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        Rule::Scoped(Scope::Read),
    ),
    (
        "inference.GRPCInferenceService/ModelInfer",
        Rule::Scoped(Scope::Predict),
    ),
];

/// The rule for an RPC label (see `layer::rpc_label`).
pub fn rule(rpc: &str) -> Rule {
    if rpc == UNMATCHED_RPC {
        return Rule::Open;
    }
    TABLE
        .iter()
        .find(|(r, _)| *r == rpc)
        .map_or(Rule::Scoped(Scope::Admin), |(_, rule)| *rule)
}

/// Authenticates, authorises and rate-limits one call. `None`: the RPC is open (no caller).
pub fn admit(
    state: &AppState,
    rpc: &str,
    headers: &HeaderMap,
    peer: Option<&TcpConnectInfo>,
) -> Result<Option<Caller>, ApiError> {
    let Rule::Scoped(scope) = rule(rpc) else {
        return Ok(None);
    };
    // Metadata that is not visible ASCII cannot be a key: a value no digest matches.
    let authorization = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let mut caller = state.access.authorize(authorization, scope)?;
    if let Some(addr) = peer.and_then(TcpConnectInfo::remote_addr) {
        caller = caller.at(SocketAddr::ip(&addr));
    }
    state.access.admit(&caller, None)?;
    Ok(Some(caller))
}

#[cfg(test)]
mod tests {
    use super::super::layer::RPCS;
    use super::*;

    #[test]
    fn every_served_rpc_has_a_rule_and_probes_stay_open() {
        for rpc in RPCS {
            assert!(
                TABLE.iter().any(|(r, _)| r == rpc),
                "{rpc} is served but missing from the access table"
            );
        }
        assert_eq!(rule("grpc.health.v1.Health/Check"), Rule::Open);
        assert_eq!(
            rule("inference.GRPCInferenceService/ModelInfer"),
            Rule::Scoped(Scope::Predict)
        );
        assert_eq!(rule("some.New/Rpc"), Rule::Scoped(Scope::Admin));
        assert_eq!(rule(UNMATCHED_RPC), Rule::Open);
    }
}
