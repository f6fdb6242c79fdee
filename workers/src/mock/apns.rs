//! A mock APNs: HTTP/2 over TLS, validating requests as Apple does (method, path, device
//! token, headers, provider token signature and age, token updates per connection, payload
//! size), recording what it accepted, and misbehaving on request (see [`Script`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::record::{Record, now_ms};
use super::script::{Fault, Reply, Script};
use super::serve::{Connection, ConnectionAuth, bind, spawn_tls};
use super::tls::ClientCertificates;
use super::{MockError, MockTls};

/// Apple's largest payload for an alert push.
const MAX_PAYLOAD: usize = 4096;
/// A connection may change its provider token at most this often.
const MIN_TOKEN_UPDATE_SECS: u64 = 20 * 60;
const PUSH_TYPES: [&str; 9] = [
    "alert",
    "background",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "location",
    "liveactivity",
    "pushtotalk",
];

/// A signing key the mock trusts: its id, its team, its public key (PEM).
#[derive(Clone, Debug)]
pub struct TrustedKey {
    pub key_id: String,
    pub team_id: String,
    pub public_pem: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct MockApnsOptions {
    /// 0: any free port.
    pub port: u16,
    /// Answer 200 to every well-formed request without checking credentials (load tests).
    pub accept_all: bool,
    /// Keep every accepted push for [`MockApns::pushes`]; off: counts only.
    pub record: bool,
    pub keys: Vec<TrustedKey>,
    /// Provider tokens older than this are `ExpiredProviderToken` (Apple: one hour).
    pub max_token_age: Duration,
    pub max_concurrent_streams: u32,
}

impl Default for MockApnsOptions {
    fn default() -> Self {
        Self {
            port: 0,
            accept_all: false,
            record: true,
            keys: Vec::new(),
            max_token_age: Duration::from_secs(3600),
            max_concurrent_streams: 1000,
        }
    }
}

/// A push the mock accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApnsPush {
    pub device_token: String,
    pub topic: String,
    /// `aps.badge`, if the payload had one.
    pub badge: Option<u32>,
    pub payload: String,
    pub apns_id: String,
    pub push_type: Option<String>,
    pub priority: Option<String>,
    pub collapse_id: Option<String>,
    pub expiration: Option<u64>,
    /// The provider token's `iat`.
    pub token_iat: u64,
    pub at_ms: u64,
}

#[derive(Debug)]
struct Shared {
    options: MockApnsOptions,
    keys: HashMap<String, (String, DecodingKey)>,
    /// Client certificates of the CA: DER → topic.
    certificates: ClientCertificates,
    script: Script,
    record: Record<ApnsPush>,
    /// Connections accepted so far.
    connections: Arc<std::sync::atomic::AtomicU64>,
}

/// A running mock APNs; it stops when dropped.
#[derive(Debug)]
pub struct MockApns {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: watch::Sender<bool>,
}

impl MockApns {
    pub async fn start(options: MockApnsOptions, tls: &MockTls) -> Result<Self, MockError> {
        let keys = options
            .keys
            .iter()
            .map(|k| {
                let key = DecodingKey::from_ec_pem(&k.public_pem)
                    .map_err(|e| MockError::Key(format!("{}: {e}", k.key_id)))?;
                Ok((k.key_id.clone(), (k.team_id.clone(), key)))
            })
            .collect::<Result<_, MockError>>()?;
        let (listener, addr) = bind(options.port).await?;
        let streams = options.max_concurrent_streams;
        let shared = Arc::new(Shared {
            keys,
            certificates: tls.clients(),
            record: Record::new(options.record),
            connections: Arc::default(),
            options,
            script: Script::default(),
        });
        let router = Router::new().fallback(push).with_state(shared.clone());
        let (stop, stopped) = watch::channel(false);
        spawn_tls(
            listener,
            tls.server_config(&[b"h2"])?,
            router,
            true,
            streams,
            shared.connections.clone(),
            stopped,
        );
        Ok(Self {
            addr,
            shared,
            _stop: stop,
        })
    }

    /// The base URL an app's `base_url` names.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What to misbehave on.
    pub fn script(&self) -> &Script {
        &self.shared.script
    }

    /// The pushes accepted so far (none when recording is off).
    pub fn pushes(&self) -> Vec<ApnsPush> {
        self.shared.record.pushes()
    }

    /// How many pushes were accepted.
    pub fn accepted(&self) -> u64 {
        self.shared.record.accepted()
    }

    /// Error answers given so far, by `"<status> <reason>"`.
    pub fn refused(&self) -> HashMap<String, u64> {
        self.shared.record.refused()
    }

    /// Forgets what was seen (the script stays).
    pub fn reset(&self) {
        self.shared.record.reset();
    }
}

async fn push(
    State(shared): State<Arc<Shared>>,
    Extension(connection): Extension<Arc<Connection>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = uri.path().strip_prefix("/3/device/").unwrap_or_default();
    let fault = connection
        .before_answer(shared.script.fault_for(token))
        .await;
    let answer = match fault {
        Some(Fault::Drop) => {
            connection.drop.notify_one();
            Err(Reply::new(503, "Shutdown"))
        }
        Some(Fault::Reset) => {
            connection.reset();
            Err(Reply::new(503, "Shutdown"))
        }
        Some(Fault::Reply(reply)) => Err(reply),
        _ => check(&shared, &connection, &method, &uri, &headers, &body),
    };
    match answer {
        Ok(accepted) => {
            let response = ok(&accepted.apns_id);
            shared.record.accept(accepted);
            response
        }
        Err(reply) => {
            shared.record.refuse(&reply);
            refuse(&reply)
        }
    }
}

/// Apple's checks, in Apple's order of concern; the accepted push or the error answer.
fn check(
    shared: &Shared,
    connection: &Connection,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ApnsPush, Reply> {
    let no = |status, reason: &str| Err(Reply::new(status, reason));
    if method != Method::POST {
        return no(405, "MethodNotAllowed");
    }
    let Some(token) = uri.path().strip_prefix("/3/device/") else {
        return no(404, "BadPath");
    };
    if token.is_empty() {
        return no(400, "MissingDeviceToken");
    }
    if token.len() < 64 || token.len() % 2 != 0 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return no(400, "BadDeviceToken");
    }
    for name in headers.keys() {
        if headers.get_all(name).iter().count() > 1 {
            return no(400, "DuplicateHeaders");
        }
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(topic) = header("apns-topic") else {
        return no(400, "MissingTopic");
    };
    let push_type = header("apns-push-type");
    if push_type.is_some_and(|t| !PUSH_TYPES.contains(&t)) {
        return no(400, "InvalidPushType");
    }
    let priority = header("apns-priority");
    if priority.is_some_and(|p| !matches!(p, "1" | "5" | "10")) {
        return no(400, "BadPriority");
    }
    let apns_id = match header("apns-id") {
        Some(id) if uuid::Uuid::parse_str(id).is_err() => return no(400, "BadMessageId"),
        Some(id) => id.to_owned(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let collapse_id = header("apns-collapse-id");
    if collapse_id.is_some_and(|c| c.len() > 64) {
        return no(400, "BadCollapseId");
    }
    let expiration = match header("apns-expiration").map(str::parse::<u64>) {
        Some(Err(_)) => return no(400, "BadExpirationDate"),
        Some(Ok(at)) => Some(at),
        None => None,
    };
    let authorization = header("authorization");
    let token_iat = if shared.options.accept_all {
        0
    } else if authorization.is_none()
        && let Some(der) = &connection.client_certificate
    {
        certificate_topic(shared, der, topic)?;
        0
    } else {
        provider_token(shared, connection, authorization)?
    };
    if body.is_empty() {
        return no(400, "PayloadEmpty");
    }
    if body.len() > MAX_PAYLOAD {
        return no(413, "PayloadTooLarge");
    }
    let badge = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["aps"]["badge"].as_u64())
        .and_then(|b| u32::try_from(b).ok());
    Ok(ApnsPush {
        device_token: token.to_owned(),
        topic: topic.to_owned(),
        badge,
        payload: String::from_utf8_lossy(body).into_owned(),
        apns_id,
        push_type: push_type.map(str::to_owned),
        priority: priority.map(str::to_owned),
        collapse_id: collapse_id.map(str::to_owned),
        expiration,
        token_iat,
        at_ms: now_ms(),
    })
}

/// Certificate auth: the connection's certificate must be one the CA issued for `topic`.
fn certificate_topic(shared: &Shared, der: &[u8], topic: &str) -> Result<(), Reply> {
    let certificates = shared
        .certificates
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    match certificates.get(der) {
        None => Err(Reply::new(403, "BadCertificate")),
        Some(allowed) if allowed != topic => Err(Reply::new(400, "TopicDisallowed")),
        Some(_) => Ok(()),
    }
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    iat: u64,
}

/// Checks the provider token like Apple: signed by a known key of its team, younger than
/// an hour, one team per connection, changed no more than once per 20 minutes. Its `iat`.
fn provider_token(
    shared: &Shared,
    connection: &Connection,
    authorization: Option<&str>,
) -> Result<u64, Reply> {
    let no = |status, reason: &str| Err(Reply::new(status, reason));
    let Some(jwt) = authorization.and_then(|a| {
        a.strip_prefix("bearer ")
            .or_else(|| a.strip_prefix("Bearer "))
    }) else {
        return no(403, "MissingProviderToken");
    };
    let Some(kid) = jsonwebtoken::decode_header(jwt).ok().and_then(|h| h.kid) else {
        return no(403, "InvalidProviderToken");
    };
    let Some((team, key)) = shared.keys.get(&kid) else {
        return no(403, "InvalidProviderToken");
    };
    let mut validation = Validation::new(Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let Ok(claims) = jsonwebtoken::decode::<Claims>(jwt, key, &validation).map(|d| d.claims) else {
        return no(403, "InvalidProviderToken");
    };
    if claims.iss != *team {
        return no(403, "InvalidProviderToken");
    }
    if now_ms() / 1000 > claims.iat + shared.options.max_token_age.as_secs() {
        return no(403, "ExpiredProviderToken");
    }
    let mut pinned = connection.auth.lock().unwrap_or_else(|e| e.into_inner());
    match &*pinned {
        Some(auth) if auth.team != *team => return no(403, "InvalidProviderToken"),
        Some(auth) if auth.jwt == jwt => return Ok(claims.iat),
        Some(auth) if claims.iat < auth.iat + MIN_TOKEN_UPDATE_SECS => {
            return no(429, "TooManyProviderTokenUpdates");
        }
        _ => {}
    }
    *pinned = Some(ConnectionAuth {
        team: team.clone(),
        jwt: jwt.to_owned(),
        iat: claims.iat,
    });
    Ok(claims.iat)
}

fn ok(apns_id: &str) -> Response {
    let mut response = StatusCode::OK.into_response();
    if let Ok(id) = HeaderValue::from_str(apns_id) {
        response.headers_mut().insert("apns-id", id);
    }
    response
}

fn refuse(reply: &Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut body = serde_json::json!({ "reason": reply.reason });
    if let Some(at) = reply.timestamp_ms {
        body["timestamp"] = at.into();
    }
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(secs) = reply.retry_after_secs {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
    }
    response
}
