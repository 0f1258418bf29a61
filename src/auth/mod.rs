//! Who may call what, and how often. API keys with scopes (stored as SHA-256 digests and
//! compared in constant time), and token-bucket rate limits per key, per client address (when
//! no keys are configured), per model and for the whole server. No HTTP types here: the REST
//! and gRPC layers hand in the `Authorization` value and the client address.

mod keys;
mod limit;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use thiserror::Error;

pub use keys::{hash_key, load as load_keys, parse as parse_keys, KeySpec};
pub use limit::{Bucket, PerAddress, Rate, Refusal};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Run models: predict, infer, explain.
    Predict,
    /// Send ground truth.
    Feedback,
    /// Read model cards, metadata and monitoring views.
    Read,
    /// Manage models (load, unload, promote).
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Predict => "predict",
            Scope::Feedback => "feedback",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The label of callers when no keys are configured.
pub const ANONYMOUS: &str = "anonymous";

#[derive(Debug, Error, Clone, PartialEq)]
pub enum AuthError {
    #[error("this endpoint needs an API key: send `Authorization: Bearer <key>`")]
    Missing,
    #[error("the API key is not valid")]
    Invalid,
    #[error("the API key {key:?} lacks the {scope:?} scope this endpoint needs", scope = .scope.as_str())]
    Forbidden { key: Arc<str>, scope: Scope },
}

impl AuthError {
    /// Closed-set reason for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_key",
            AuthError::Invalid => "invalid_key",
            AuthError::Forbidden { .. } => "forbidden",
        }
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Key,
    Address,
    Model,
    Global,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Key => "key",
            LimitKind::Address => "address",
            LimitKind::Model => "model",
            LimitKind::Global => "global",
        }
    }
}

#[derive(Debug, Error, Clone, Copy, PartialEq)]
#[error("rate limit exceeded ({} limit of {} requests); retry in {:.3} s", .kind.as_str(), .refusal.burst, .refusal.retry_after.as_secs_f64())]
pub struct RateLimited {
    pub kind: LimitKind,
    pub refusal: Refusal,
}

/// An authenticated caller. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Index into the keys, or None for the anonymous caller.
    key: Option<usize>,
    name: Arc<str>,
    scopes: u8,
    ip: Option<IpAddr>,
}

impl Caller {
    /// A closed-set label: a key name from the keys file, or `anonymous`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        if self.scopes & scope.bit() != 0 {
            return Ok(());
        }
        if self.key.is_none() {
            return Err(AuthError::Missing);
        }
        Err(AuthError::Forbidden {
            key: self.name.clone(),
            scope,
        })
    }

    /// The caller's address, for per-address limits when no keys are configured.
    pub fn at(mut self, ip: IpAddr) -> Caller {
        self.ip = Some(ip);
        self
    }
}

/// Server-wide rate limits from the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Every request of every caller.
    pub global: Option<Rate>,
    /// Each model separately.
    pub per_model: Option<Rate>,
    /// Each client address, when no keys are configured.
    pub per_address: Option<Rate>,
    /// Most addresses tracked for `per_address`.
    pub max_addresses: usize,
}

struct Key {
    spec: KeySpec,
    name: Arc<str>,
    scopes: u8,
    bucket: Option<Bucket>,
}

/// Told about every refusal, so that the layer above can count them (the core knows no metrics).
pub trait AccessObserver: Send + Sync {
    /// `reason` is [`AuthError::reason`].
    fn auth_refused(&self, reason: &'static str);
    fn rate_limited(&self, kind: LimitKind);
}

/// One bucket per model name, made on first use.
type ModelBuckets = std::sync::RwLock<std::collections::HashMap<String, Arc<Bucket>>>;

struct Inner {
    observer: Option<Arc<dyn AccessObserver>>,
    keys: Vec<Key>,
    global: Option<Bucket>,
    per_address: Option<PerAddress>,
    per_model: Option<(Rate, ModelBuckets)>,
}

/// Authentication and rate limiting for every protocol. Cheap to clone.
#[derive(Clone)]
pub struct Access {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field(
                "keys",
                &self.inner.keys.iter().map(|k| &k.spec).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Most distinct model names given their own bucket (model names come from the repository).
const MAX_MODEL_BUCKETS: usize = 10_000;

impl Access {
    /// No keys: every caller is anonymous with every scope but `Admin`.
    pub fn open(limits: Limits) -> Access {
        Access::new(Vec::new(), limits)
    }

    pub fn new(keys: Vec<KeySpec>, limits: Limits) -> Access {
        let keys = keys
            .into_iter()
            .map(|spec| Key {
                name: Arc::from(spec.name.as_str()),
                scopes: spec.scopes.iter().fold(0, |acc, s| acc | s.bit()),
                bucket: spec
                    .rate
                    .map(|(rps, burst)| Bucket::new(Rate { rps, burst })),
                spec,
            })
            .collect();
        Access {
            inner: Arc::new(Inner {
                observer: None,
                keys,
                global: limits.global.map(Bucket::new),
                per_address: limits
                    .per_address
                    .map(|r| PerAddress::new(r, limits.max_addresses.max(1))),
                per_model: limits.per_model.map(|r| (r, Default::default())),
            }),
        }
    }

    /// Counts refusals through `observer`. Call before the first clone.
    pub fn observed(mut self, observer: Arc<dyn AccessObserver>) -> Access {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.observer = Some(observer);
        }
        self
    }

    /// [`Access::authenticate`] then [`Caller::require`], counting a refusal.
    pub fn authorize(
        &self,
        authorization: Option<&str>,
        scope: Scope,
    ) -> Result<Caller, AuthError> {
        let result = self
            .authenticate(authorization)
            .and_then(|caller| caller.require(scope).map(|()| caller));
        if let (Err(e), Some(observer)) = (&result, &self.inner.observer) {
            observer.auth_refused(e.reason());
        }
        result
    }

    /// Whether API keys are configured (requests then need one).
    pub fn enabled(&self) -> bool {
        !self.inner.keys.is_empty()
    }

    /// Whether any configured key carries `scope` (the admin API exists only then).
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.inner.keys.iter().any(|k| k.scopes & scope.bit() != 0)
    }

    /// The key names: the closed set of caller labels (plus `anonymous`).
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.inner.keys.iter().map(|k| &*k.name)
    }

    /// Identifies the caller from an `Authorization` header value. Without keys configured
    /// everyone is the anonymous caller with every scope but `Admin`; with keys, a missing
    /// header is an anonymous caller with no scope (so a scoped endpoint answers 401).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let anonymous = |scopes| Caller {
            key: None,
            name: Arc::from(ANONYMOUS),
            scopes,
            ip: None,
        };
        if !self.enabled() {
            let all_but_admin = Scope::Predict.bit() | Scope::Feedback.bit() | Scope::Read.bit();
            return Ok(anonymous(all_but_admin));
        }
        let Some(value) = authorization else {
            return Ok(anonymous(0));
        };
        let token = bearer_token(value).ok_or(AuthError::Invalid)?;
        let digest = keys::digest(token.as_bytes());
        // Compare against every key, each in constant time, so timing tells nothing about
        // which key or how many bytes matched.
        let mut found = None;
        for (i, key) in self.inner.keys.iter().enumerate() {
            if constant_time_eq(&key.spec.digest, &digest) {
                found = Some(i);
            }
        }
        let i = found.ok_or(AuthError::Invalid)?;
        let key = &self.inner.keys[i];
        Ok(Caller {
            key: Some(i),
            name: key.name.clone(),
            scopes: key.scopes,
            ip: None,
        })
    }

    /// Takes a token from every bucket that applies to this caller (and model, when known),
    /// counting a refusal.
    pub fn admit(&self, caller: &Caller, model: Option<&str>) -> Result<(), RateLimited> {
        let result = self.take(caller, model);
        self.count(&result);
        result
    }

    /// The model's own limit alone (the predictor applies it once the model is resolved).
    pub fn admit_model(&self, model: &str) -> Result<(), RateLimited> {
        let result = self
            .take_model(model, Instant::now())
            .map_err(|refusal| RateLimited {
                kind: LimitKind::Model,
                refusal,
            });
        self.count(&result);
        result
    }

    fn count(&self, result: &Result<(), RateLimited>) {
        if let (Err(e), Some(observer)) = (result, &self.inner.observer) {
            observer.rate_limited(e.kind);
        }
    }

    fn take(&self, caller: &Caller, model: Option<&str>) -> Result<(), RateLimited> {
        let now = Instant::now();
        let refuse = |kind| move |refusal| RateLimited { kind, refusal };
        if let Some(bucket) = caller.key.and_then(|i| self.inner.keys[i].bucket.as_ref()) {
            bucket.take(now).map_err(refuse(LimitKind::Key))?;
        }
        if let (None, Some(ip), Some(per)) = (caller.key, caller.ip, &self.inner.per_address) {
            per.take(ip, now).map_err(refuse(LimitKind::Address))?;
        }
        if let Some(model) = model {
            self.take_model(model, now)
                .map_err(refuse(LimitKind::Model))?;
        }
        if let Some(bucket) = &self.inner.global {
            bucket.take(now).map_err(refuse(LimitKind::Global))?;
        }
        Ok(())
    }

    fn take_model(&self, model: &str, now: Instant) -> Result<(), Refusal> {
        let Some((rate, buckets)) = &self.inner.per_model else {
            return Ok(());
        };
        let found = buckets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(model)
            .cloned();
        let bucket = match found {
            Some(b) => b,
            None => {
                let mut map = buckets.write().unwrap_or_else(|p| p.into_inner());
                if map.len() >= MAX_MODEL_BUCKETS && !map.contains_key(model) {
                    return Ok(());
                }
                map.entry(model.to_string())
                    .or_insert_with(|| Arc::new(Bucket::new(*rate)))
                    .clone()
            }
        };
        bucket.take(now)
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The limit to tell a client in `Retry-After`: whole seconds, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        let text = format!(
            "[[keys]]\nname = \"app\"\nsha256 = \"{}\"\nscopes = [\"predict\"]\nrps = 1.0\nburst = 2\n\n[[keys]]\nname = \"ops\"\nsha256 = \"{}\"\nscopes = [\"admin\", \"read\"]\n",
            hash_key("app-secret"),
            hash_key("ops-secret")
        );
        Access::new(parse_keys(&text).unwrap(), Limits::default())
    }

    #[test]
    fn without_keys_everyone_may_do_everything_but_admin() {
        let access = Access::open(Limits::default());
        let caller = access.authenticate(None).unwrap();
        assert_eq!(caller.name(), ANONYMOUS);
        for scope in [Scope::Predict, Scope::Feedback, Scope::Read] {
            caller.require(scope).unwrap();
        }
        assert_eq!(caller.require(Scope::Admin), Err(AuthError::Missing));
        assert!(!access.has_scope(Scope::Admin));
    }

    #[test]
    fn keys_are_checked_and_scoped() {
        let access = access();
        assert!(access.has_scope(Scope::Admin));
        let none = access.authenticate(None).unwrap();
        assert_eq!(none.require(Scope::Read), Err(AuthError::Missing));
        assert_eq!(
            access.authenticate(Some("Bearer wrong")).unwrap_err(),
            AuthError::Invalid
        );
        assert_eq!(
            access.authenticate(Some("Basic app-secret")).unwrap_err(),
            AuthError::Invalid
        );
        let app = access.authenticate(Some("bearer  app-secret ")).unwrap();
        assert_eq!(app.name(), "app");
        app.require(Scope::Predict).unwrap();
        let err = app.require(Scope::Admin).unwrap_err();
        assert_eq!(err.reason(), "forbidden");
        assert!(err.to_string().contains("\"app\"") && err.to_string().contains("admin"));
        let ops = access.authenticate(Some("Bearer ops-secret")).unwrap();
        ops.require(Scope::Admin).unwrap();
        assert!(ops.require(Scope::Predict).is_err());
    }

    #[test]
    fn a_keys_rate_limit_applies_to_that_key_only() {
        let access = access();
        let app = access.authenticate(Some("Bearer app-secret")).unwrap();
        let ops = access.authenticate(Some("Bearer ops-secret")).unwrap();
        access.admit(&app, None).unwrap();
        access.admit(&app, None).unwrap();
        let refused = access.admit(&app, None).unwrap_err();
        assert_eq!(refused.kind, LimitKind::Key);
        assert_eq!(refused.refusal.burst, 2);
        for _ in 0..100 {
            access.admit(&ops, None).unwrap();
        }
    }

    #[test]
    fn model_address_and_global_limits() {
        let rate = Rate { rps: 0.5, burst: 1 };
        let access = Access::open(Limits {
            per_model: Some(rate),
            per_address: Some(Rate { rps: 0.5, burst: 2 }),
            max_addresses: 100,
            global: None,
        });
        let a = access
            .authenticate(None)
            .unwrap()
            .at("10.1.1.1".parse().unwrap());
        let b = access
            .authenticate(None)
            .unwrap()
            .at("10.1.1.2".parse().unwrap());
        access.admit(&a, Some("iris")).unwrap();
        assert_eq!(
            access.admit(&b, Some("iris")).unwrap_err().kind,
            LimitKind::Model
        );
        access.admit(&b, Some("digits")).unwrap();
        access.admit(&a, None).unwrap();
        assert_eq!(access.admit(&a, None).unwrap_err().kind, LimitKind::Address);
        let global = Access::open(Limits {
            global: Some(rate),
            ..Limits::default()
        });
        let anyone = global.authenticate(None).unwrap();
        global.admit(&anyone, None).unwrap();
        assert_eq!(
            global.admit(&anyone, None).unwrap_err().kind,
            LimitKind::Global
        );
    }
}
