//! A mock FCM: the HTTP v1 `messages:send` endpoint over TLS (HTTP/2 or HTTP/1.1), checking
//! the bearer against the access tokens its OAuth2 token endpoint (plain HTTP, as a
//! service-account file's `token_uri` may name) handed out, validating messages as Google
//! does, recording what it accepted, and misbehaving on request (see [`Script`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::record::{Record, now_ms};
use super::script::{Fault, Reply, Script};
use super::serve::{Connection, bind, spawn_plain, spawn_tls};
use super::{MockError, MockTls};

const MAX_MESSAGE: usize = 4096;
const MAX_TTL_SECS: f64 = 2_419_200.0;
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// The throwaway service-account key the mock trusts (committed test data, not a secret).
pub const TEST_SERVICE_ACCOUNT_KEY: &str = include_str!("../../../testdata/fcm/test-sa-key.pem");
const TEST_SERVICE_ACCOUNT_PUBLIC: &str = include_str!("../../../testdata/fcm/test-sa-key.pub.pem");

#[derive(Clone, Debug)]
pub struct MockFcmOptions {
    /// 0: any free port (the TLS API); the token endpoint gets its own free port.
    pub port: u16,
    pub token_port: u16,
    /// Accept any bearer (load tests).
    pub accept_all: bool,
    /// Keep every accepted message for [`MockFcm::pushes`]; off: counts only.
    pub record: bool,
    /// How long access tokens live.
    pub token_lifetime: Duration,
}

impl Default for MockFcmOptions {
    fn default() -> Self {
        Self {
            port: 0,
            token_port: 0,
            accept_all: false,
            record: true,
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

/// A message the mock accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FcmPush {
    pub project: String,
    pub token: String,
    pub data: BTreeMap<String, String>,
    pub collapse_key: Option<String>,
    pub priority: Option<String>,
    pub ttl: Option<String>,
    pub at_ms: u64,
}

/// The access tokens the token endpoint handed out.
#[derive(Debug, Default)]
struct Tokens {
    issued: u64,
    valid: HashSet<String>,
}

#[derive(Debug)]
struct Shared {
    options: MockFcmOptions,
    assertion_key: DecodingKey,
    script: Script,
    record: Record<FcmPush>,
    tokens: Mutex<Tokens>,
    /// Connections accepted so far.
    connections: Arc<std::sync::atomic::AtomicU64>,
}

/// A running mock FCM; it stops when dropped.
#[derive(Debug)]
pub struct MockFcm {
    addr: SocketAddr,
    token_addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: watch::Sender<bool>,
}

impl MockFcm {
    pub async fn start(options: MockFcmOptions, tls: &MockTls) -> Result<Self, MockError> {
        let assertion_key = DecodingKey::from_rsa_pem(TEST_SERVICE_ACCOUNT_PUBLIC.as_bytes())
            .map_err(|e| MockError::Key(e.to_string()))?;
        let (listener, addr) = bind(options.port).await?;
        let (token_listener, token_addr) = bind(options.token_port).await?;
        let shared = Arc::new(Shared {
            record: Record::new(options.record),
            options,
            assertion_key,
            script: Script::default(),
            tokens: Mutex::default(),
            connections: Arc::default(),
        });
        let api = Router::new()
            .route("/v1/projects/{project}/messages:send", post(send))
            .fallback(not_found)
            .with_state(shared.clone());
        let tokens = Router::new()
            .route("/token", post(issue_token))
            .with_state(shared.clone());
        let (stop, stopped) = watch::channel(false);
        let tls = tls.server_config(&[b"h2", b"http/1.1"])?;
        spawn_tls(
            listener,
            tls,
            api,
            false,
            1000,
            shared.connections.clone(),
            stopped.clone(),
        );
        spawn_plain(token_listener, tokens, stopped);
        Ok(Self {
            addr,
            token_addr,
            shared,
            _stop: stop,
        })
    }

    /// The base URL an app's `base_url` names.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The OAuth2 token endpoint, for a service-account file's `token_uri`.
    pub fn token_uri(&self) -> String {
        format!("http://{}/token", self.token_addr)
    }

    /// A service-account file for `project` whose tokens come from this mock.
    pub fn service_account_json(&self, project: &str) -> String {
        json!({
            "type": "service_account",
            "project_id": project,
            "private_key_id": "mock",
            "private_key": TEST_SERVICE_ACCOUNT_KEY,
            "client_email": format!("herald@{project}.iam.gserviceaccount.com"),
            "client_id": "1",
            "token_uri": self.token_uri(),
        })
        .to_string()
    }

    pub fn script(&self) -> &Script {
        &self.shared.script
    }

    /// Connections accepted so far (the API listener's).
    pub fn connections(&self) -> u64 {
        self.shared
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn pushes(&self) -> Vec<FcmPush> {
        self.shared.record.pushes()
    }

    pub fn accepted(&self) -> u64 {
        self.shared.record.accepted()
    }

    pub fn refused(&self) -> HashMap<String, u64> {
        self.shared.record.refused()
    }

    /// Access tokens handed out so far.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.tokens().issued
    }

    /// Every access token handed out so far stops working (as when Google revokes them).
    pub fn revoke_tokens(&self) {
        self.shared.tokens().valid.clear();
    }

    /// Forgets what was seen (the script and the issued tokens stay).
    pub fn reset(&self) {
        self.shared.record.reset();
    }
}

impl Shared {
    fn tokens(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: String,
    assertion: String,
}

#[derive(Deserialize)]
struct Assertion {
    scope: String,
    exp: u64,
}

/// The OAuth2 JWT-bearer grant: a signed assertion in, an access token out.
async fn issue_token(
    State(shared): State<Arc<Shared>>,
    Form(request): Form<TokenRequest>,
) -> Response {
    if request.grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return oauth_error("unsupported_grant_type");
    }
    match assertion_scope(&request.assertion, &shared.assertion_key) {
        Some(scope) if scope.split(' ').any(|s| s == SCOPE) => {}
        Some(_) => return oauth_error("invalid_scope"),
        None => return oauth_error("invalid_grant"),
    }
    let mut tokens = shared.tokens();
    tokens.issued += 1;
    let token = format!("mock-fcm-{}-{:016x}", tokens.issued, fastrand::u64(..));
    tokens.valid.insert(token.clone());
    drop(tokens);
    Json(json!({
        "access_token": token,
        "expires_in": shared.options.token_lifetime.as_secs(),
        "token_type": "Bearer",
    }))
    .into_response()
}

/// The `scope` of an RS256 assertion signed by `key`. Google accepts base64url with or
/// without padding (gcp_auth pads), so this does not use `jsonwebtoken::decode`.
fn assertion_scope(assertion: &str, key: &DecodingKey) -> Option<String> {
    let (message, signature) = assertion.rsplit_once('.')?;
    let (_, claims) = message.split_once('.')?;
    let signature = signature.trim_end_matches('=');
    if !jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, Algorithm::RS256)
        .unwrap_or(false)
    {
        return None;
    }
    let claims = URL_SAFE_NO_PAD.decode(claims.trim_end_matches('=')).ok()?;
    let claims: Assertion = serde_json::from_slice(&claims).ok()?;
    let now = now_ms() / 1000;
    (claims.exp > now).then_some(claims.scope)
}

fn oauth_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

async fn not_found() -> Response {
    google_error(&Reply::new(404, "NOT_FOUND"), "no such method", None)
}

async fn send(
    State(shared): State<Arc<Shared>>,
    Extension(connection): Extension<Arc<Connection>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let message: Option<Value> = serde_json::from_slice::<Value>(&body)
        .ok()
        .map(|v| v["message"].clone());
    let token = message
        .as_ref()
        .and_then(|m| m["token"].as_str())
        .unwrap_or_default()
        .to_owned();
    let fault = connection
        .before_answer(shared.script.fault_for(&token))
        .await;
    let answer = match fault {
        Some(Fault::Drop) => {
            connection.drop.notify_one();
            Err((Reply::new(503, "UNAVAILABLE"), "connection dropped"))
        }
        Some(Fault::Reset) => {
            connection.reset();
            Err((Reply::new(503, "UNAVAILABLE"), "connection reset"))
        }
        Some(Fault::Reply(reply)) => Err((reply, "scripted error")),
        _ => check(&shared, &project, &headers, &body, message),
    };
    match answer {
        Ok(push) => {
            let n = shared.record.accept(push);
            let name = format!("projects/{project}/messages/0:{n}");
            Json(json!({ "name": name })).into_response()
        }
        Err((reply, message)) => {
            shared.record.refuse(&reply);
            let field = (reply.reason == "INVALID_ARGUMENT" && message.contains("token"))
                .then_some("message.token");
            google_error(&reply, message, field)
        }
    }
}

type Refusal = (Reply, &'static str);

/// Google's checks: a bearer it issued, a target, string data, a valid TTL and priority, a
/// message within 4 KiB.
fn check(
    shared: &Shared,
    project: &str,
    headers: &HeaderMap,
    body: &[u8],
    message: Option<Value>,
) -> Result<FcmPush, Refusal> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "));
    let authorized = match bearer {
        None => false,
        Some(_) if shared.options.accept_all => true,
        Some(token) => shared.tokens().valid.contains(token),
    };
    if !authorized {
        return Err((
            Reply::new(401, "UNAUTHENTICATED"),
            "Request had invalid authentication credentials.",
        ));
    }
    let invalid = |message| Err((Reply::new(400, "INVALID_ARGUMENT"), message));
    let Some(message) = message.filter(Value::is_object) else {
        return invalid("the request has no message");
    };
    let Some(token) = message["token"].as_str().filter(|t| !t.is_empty()) else {
        return invalid("the message has no token (the only target Herald uses)");
    };
    if body.len() > MAX_MESSAGE {
        return invalid("the message is too big");
    }
    let mut data = BTreeMap::new();
    if let Some(fields) = message["data"].as_object() {
        for (key, value) in fields {
            let Some(value) = value.as_str() else {
                return invalid("data values must be strings");
            };
            if key == "from" || key.starts_with("google.") || key.starts_with("gcm.") {
                return invalid("a data key is reserved");
            }
            data.insert(key.clone(), value.to_owned());
        }
    }
    let android = &message["android"];
    let ttl = android["ttl"].as_str();
    if let Some(ttl) = ttl
        && !valid_ttl(ttl)
    {
        return invalid("android.ttl is not a duration of at most 28 days");
    }
    let priority = android["priority"].as_str();
    if priority.is_some_and(|p| !matches!(p, "normal" | "high" | "NORMAL" | "HIGH")) {
        return invalid("android.priority is not normal or high");
    }
    Ok(FcmPush {
        project: project.to_owned(),
        token: token.to_owned(),
        data,
        collapse_key: android["collapseKey"].as_str().map(str::to_owned),
        priority: priority.map(str::to_owned),
        ttl: ttl.map(str::to_owned),
        at_ms: now_ms(),
    })
}

/// `^\d+(\.\d{1,9})?s$`, at most 28 days.
fn valid_ttl(ttl: &str) -> bool {
    let Some(number) = ttl.strip_suffix('s') else {
        return false;
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole)
        && digits(fraction)
        && fraction.len() <= 9
        && number.parse::<f64>().is_ok_and(|secs| secs <= MAX_TTL_SECS)
}

/// A Google API error: canonical status, and the FCM error code in `details`.
fn google_error(reply: &Reply, message: &str, field: Option<&str>) -> Response {
    let canonical = match reply.status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    let mut details = vec![json!({
        "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
        "errorCode": reply.reason,
    })];
    if let Some(field) = field {
        details.push(json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{ "field": field, "description": message }],
        }));
    }
    let body = json!({ "error": {
        "code": reply.status,
        "message": message,
        "status": canonical,
        "details": details,
    }});
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(body)).into_response();
    if let Some(secs) = reply.retry_after_secs {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::valid_ttl;

    #[test]
    fn ttls_are_google_durations_of_at_most_28_days() {
        for good in ["0s", "3600s", "1.5s", "2419200s", "0.000000001s"] {
            assert!(valid_ttl(good), "{good}");
        }
        for bad in [
            "3600",
            "s",
            "-1s",
            "1.s",
            "2419201s",
            "1.0000000001s",
            "1h",
            " 1s",
        ] {
            assert!(!valid_ttl(bad), "{bad}");
        }
    }
}
