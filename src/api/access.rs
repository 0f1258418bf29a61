//! Access control on the REST routes: one table says which scope each route needs; one
//! middleware authenticates the caller, checks the scope and the caller's rate limits, and
//! records usage per caller and model. Probes, metrics and the API documents stay open.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;
use crate::auth::{Caller, Scope};

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Anyone: probes, metrics, the API documents.
    Open,
    Scoped(Scope),
}

/// Every REST route and the scope it needs. A route missing here needs `Admin` (fail closed);
/// a test checks that every route of the OpenAPI document is listed.
pub const TABLE: &[(&str, &str, Rule)] = &[
    ("GET", "/health/live", Rule::Open),
    ("GET", "/health/ready", Rule::Open),
    ("GET", "/metrics", Rule::Open),
    ("GET", "/v2/health/live", Rule::Open),
    ("GET", "/v2/health/ready", Rule::Open),
    ("POST", "/predict", Rule::Scoped(Scope::Predict)),
    (
        "POST",
        "/models/{name}/predict",
        Rule::Scoped(Scope::Predict),
    ),
    (
        "POST",
        "/models/{name}/versions/{version}/predict",
        Rule::Scoped(Scope::Predict),
    ),
    (
        "POST",
        "/v2/models/{name}/infer",
        Rule::Scoped(Scope::Predict),
    ),
    (
        "POST",
        "/v2/models/{name}/versions/{version}/infer",
        Rule::Scoped(Scope::Predict),
    ),
    (
        "POST",
        "/models/{name}/explain",
        Rule::Scoped(Scope::Predict),
    ),
    (
        "POST",
        "/models/{name}/versions/{version}/explain",
        Rule::Scoped(Scope::Predict),
    ),
    ("POST", "/v1/models/{name}", Rule::Scoped(Scope::Predict)),
    (
        "POST",
        "/models/{name}/feedback",
        Rule::Scoped(Scope::Feedback),
    ),
    ("GET", "/models", Rule::Scoped(Scope::Read)),
    ("GET", "/models/{name}", Rule::Scoped(Scope::Read)),
    (
        "GET",
        "/models/{name}/monitoring",
        Rule::Scoped(Scope::Read),
    ),
    (
        "GET",
        "/models/{name}/versions/{version}/monitoring",
        Rule::Scoped(Scope::Read),
    ),
    ("GET", "/v2", Rule::Scoped(Scope::Read)),
    ("GET", "/v2/models", Rule::Scoped(Scope::Read)),
    ("GET", "/v2/models/{name}", Rule::Scoped(Scope::Read)),
    ("GET", "/v2/models/{name}/ready", Rule::Scoped(Scope::Read)),
    (
        "GET",
        "/v2/models/{name}/versions/{version}",
        Rule::Scoped(Scope::Read),
    ),
    (
        "GET",
        "/v2/models/{name}/versions/{version}/ready",
        Rule::Scoped(Scope::Read),
    ),
    ("GET", "/v1/models/{name}", Rule::Scoped(Scope::Read)),
    ("GET", "/admin/repository", Rule::Scoped(Scope::Admin)),
    (
        "POST",
        "/admin/models/{name}/load",
        Rule::Scoped(Scope::Admin),
    ),
    (
        "POST",
        "/admin/models/{name}/unload",
        Rule::Scoped(Scope::Admin),
    ),
    (
        "PUT",
        "/admin/models/{name}/shadow",
        Rule::Scoped(Scope::Admin),
    ),
    (
        "DELETE",
        "/admin/models/{name}/shadow",
        Rule::Scoped(Scope::Admin),
    ),
    (
        "PUT",
        "/admin/models/{name}/canary",
        Rule::Scoped(Scope::Admin),
    ),
    (
        "DELETE",
        "/admin/models/{name}/canary",
        Rule::Scoped(Scope::Admin),
    ),
    (
        "POST",
        "/admin/models/{name}/canary/promote",
        Rule::Scoped(Scope::Admin),
    ),
    (
        "POST",
        "/admin/models/{name}/canary/rollback",
        Rule::Scoped(Scope::Admin),
    ),
];

/// The rule for a matched route. `None`: the route exists with other methods only (the 405
/// fallback answers). Routes of the API documents are open; anything unlisted needs `Admin`.
pub fn rule(method: &Method, route: &str) -> Option<Rule> {
    if route == "/openapi.json" || route == "/docs" || route.starts_with("/docs/") {
        return Some(Rule::Open);
    }
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let mut known_route = false;
    for (m, r, rule) in TABLE {
        if *r == route {
            if *m == method {
                return Some(*rule);
            }
            known_route = true;
        }
    }
    (!known_route).then_some(Rule::Scoped(Scope::Admin))
}

/// What a prediction handler reports for the usage metrics: the model that answered and the
/// instances it predicted. Set as a response extension.
#[derive(Debug, Clone)]
pub struct Usage {
    pub model: String,
    pub instances: usize,
}

/// Authenticates, authorises and rate-limits a request to a scoped route; the caller goes into
/// the request's extensions for the handlers.
pub async fn access(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(route) = request.extensions().get::<MatchedPath>().cloned() else {
        return next.run(request).await;
    };
    let Some(Rule::Scoped(scope)) = rule(request.method(), route.as_str()) else {
        return next.run(request).await;
    };
    let caller = match admit(&state, &request, scope) {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let path_model = path_model(route.as_str(), request.uri().path())
        .filter(|m| state.predictor.store().snapshot().models.contains_key(*m))
        .map(str::to_string);
    request.extensions_mut().insert(caller.clone());
    let response = next.run(request).await;
    let usage = response.extensions().get::<Usage>();
    let model = usage
        .map(|u| u.model.as_str())
        .or(path_model.as_deref())
        .unwrap_or("none");
    state.metrics.access().caller_request(
        caller.name(),
        model,
        response.status().as_u16(),
        usage.map_or(0, |u| u.instances),
    );
    response
}

fn admit(state: &AppState, request: &Request, scope: Scope) -> Result<Caller, ApiError> {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let mut caller = state.access.authorize(authorization, scope)?;
    if let Some(ConnectInfo(addr)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        caller = caller.at(addr.ip());
    }
    state.access.admit(&caller, None)?;
    Ok(caller)
}

/// The `{name}` segment of `path` under the route template `route` (`:verb` suffixes of the V1
/// routes removed). Not yet checked against the repository.
fn path_model<'a>(route: &str, path: &'a str) -> Option<&'a str> {
    let at = route.split('/').position(|seg| seg == "{name}")?;
    let segment = path.split('/').nth(at)?;
    Some(segment.split(':').next().unwrap_or(segment))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_fail_closed_and_leave_wrong_methods_to_the_405_fallback() {
        assert_eq!(rule(&Method::GET, "/metrics"), Some(Rule::Open));
        assert_eq!(rule(&Method::HEAD, "/health/ready"), Some(Rule::Open));
        assert_eq!(
            rule(&Method::POST, "/predict"),
            Some(Rule::Scoped(Scope::Predict))
        );
        assert_eq!(rule(&Method::GET, "/predict"), None);
        assert_eq!(
            rule(&Method::POST, "/some/new/route"),
            Some(Rule::Scoped(Scope::Admin))
        );
        assert_eq!(rule(&Method::GET, "/docs/index.html"), Some(Rule::Open));
    }

    #[test]
    fn the_model_is_read_from_the_path() {
        assert_eq!(
            path_model("/models/{name}/predict", "/models/iris/predict"),
            Some("iris")
        );
        assert_eq!(
            path_model("/v1/models/{name}", "/v1/models/iris:predict"),
            Some("iris")
        );
        assert_eq!(path_model("/predict", "/predict"), None);
    }
}
