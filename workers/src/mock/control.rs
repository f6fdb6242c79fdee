//! The control API of a standalone mock pair (plain HTTP, JSON): what the mocks received,
//! their counters, and their scripts — for SREs and tools running `herald-mock-push`.
//!
//! | request | effect |
//! |---|---|
//! | `GET /apns/pushes`, `GET /fcm/pushes` | the accepted pushes (none in accept-all mode) |
//! | `GET /stats` | accepted and refused counts of both, FCM access tokens issued |
//! | `POST /apns/script/token`, `POST /fcm/script/token` | a [`TokenRule`]: a fault for one device token |
//! | `POST /apns/script/share`, `POST /fcm/script/share` | a [`ShareRule`]: a fault for a share of traffic |
//! | `POST /fcm/revoke-tokens` | every access token issued so far stops working |
//! | `POST /script/clear` | every script cleared (both mocks accept again) |
//! | `POST /reset` | scripts cleared, recordings and counters forgotten |

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{ApnsPush, FcmPush, MockProviders, ShareRule, TokenRule};

pub fn router(providers: Arc<MockProviders>) -> Router {
    Router::new()
        .route("/apns/pushes", get(apns_pushes))
        .route("/fcm/pushes", get(fcm_pushes))
        .route("/stats", get(stats))
        .route("/apns/script/token", post(apns_token_rule))
        .route("/fcm/script/token", post(fcm_token_rule))
        .route("/apns/script/share", post(apns_share_rule))
        .route("/fcm/script/share", post(fcm_share_rule))
        .route("/fcm/revoke-tokens", post(revoke))
        .route("/script/clear", post(clear_scripts))
        .route("/reset", post(reset))
        .with_state(providers)
}

type Mocks = State<Arc<MockProviders>>;

async fn apns_pushes(State(p): Mocks) -> Json<Vec<ApnsPush>> {
    Json(p.apns.pushes())
}

async fn fcm_pushes(State(p): Mocks) -> Json<Vec<FcmPush>> {
    Json(p.fcm.pushes())
}

async fn stats(State(p): Mocks) -> Json<Value> {
    Json(json!({
        "apns": { "accepted": p.apns.accepted(), "refused": p.apns.refused() },
        "fcm": {
            "accepted": p.fcm.accepted(),
            "refused": p.fcm.refused(),
            "tokens_issued": p.fcm.tokens_issued(),
        },
    }))
}

async fn apns_token_rule(State(p): Mocks, Json(rule): Json<TokenRule>) -> StatusCode {
    p.apns.script().for_token(rule);
    StatusCode::NO_CONTENT
}

async fn fcm_token_rule(State(p): Mocks, Json(rule): Json<TokenRule>) -> StatusCode {
    p.fcm.script().for_token(rule);
    StatusCode::NO_CONTENT
}

async fn apns_share_rule(State(p): Mocks, Json(rule): Json<ShareRule>) -> StatusCode {
    share(rule, |r| p.apns.script().for_share(r))
}

async fn fcm_share_rule(State(p): Mocks, Json(rule): Json<ShareRule>) -> StatusCode {
    share(rule, |r| p.fcm.script().for_share(r))
}

fn share(rule: ShareRule, apply: impl FnOnce(ShareRule)) -> StatusCode {
    if !(0.0..=1.0).contains(&rule.share) {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    apply(rule);
    StatusCode::NO_CONTENT
}

async fn revoke(State(p): Mocks) -> StatusCode {
    p.fcm.revoke_tokens();
    StatusCode::NO_CONTENT
}

async fn clear_scripts(State(p): Mocks) -> StatusCode {
    p.apns.script().clear();
    p.fcm.script().clear();
    StatusCode::NO_CONTENT
}

async fn reset(State(p): Mocks) -> StatusCode {
    p.apns.script().clear();
    p.fcm.script().clear();
    p.apns.reset();
    p.fcm.reset();
    StatusCode::NO_CONTENT
}
