//! OAuth2 access tokens for FCM from a Google service-account file, through `gcp_auth`
//! (which signs the assertion and posts it to the file's `token_uri`, caching the token
//! until shortly before it expires). A token FCM refuses is dropped and a new one fetched.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use gcp_auth::{CustomServiceAccount, TokenProvider};

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// A boxed future, so token sources can be trait objects.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

/// Where FCM bearer tokens come from.
pub trait AccessTokens: Send + Sync + fmt::Debug + 'static {
    /// A token to send with, from the cache while it is valid.
    fn token(&self) -> AuthFuture<'_>;
    /// FCM refused `rejected`: the next [`token`](Self::token) is a new one.
    fn invalidate(&self, rejected: &str);
}

/// Tokens for one service account.
pub struct ServiceAccountTokens {
    json: String,
    current: Mutex<Current>,
}

/// The account object in use (its cache is the token cache) and the last token it gave.
struct Current {
    account: Arc<CustomServiceAccount>,
    handed_out: Option<String>,
}

impl fmt::Debug for ServiceAccountTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountTokens")
            .finish_non_exhaustive()
    }
}

impl ServiceAccountTokens {
    /// From the service-account JSON (the file's contents).
    pub fn from_json(json: String) -> Result<Self, String> {
        let account = CustomServiceAccount::from_json(&json).map_err(|e| e.to_string())?;
        Ok(Self {
            json,
            current: Mutex::new(Current {
                account: Arc::new(account),
                handed_out: None,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AccessTokens for ServiceAccountTokens {
    fn token(&self) -> AuthFuture<'_> {
        let account = self.lock().account.clone();
        Box::pin(async move {
            let token = account.token(&[SCOPE]).await.map_err(|e| e.to_string())?;
            let token = token.as_str().to_owned();
            let mut current = self.lock();
            if Arc::ptr_eq(&current.account, &account) {
                current.handed_out = Some(token.clone());
            }
            Ok(token)
        })
    }

    fn invalidate(&self, rejected: &str) {
        let mut current = self.lock();
        // Several sends may hold the refused token: only the first 401 replaces it.
        if current.handed_out.as_deref().is_some_and(|t| t != rejected) {
            return;
        }
        // gcp_auth cannot forget one token: a new account object starts with an empty cache.
        match CustomServiceAccount::from_json(&self.json) {
            Ok(fresh) => {
                current.account = Arc::new(fresh);
                current.handed_out = None;
            }
            Err(error) => tracing::warn!(%error, "cannot reload the FCM service account"),
        }
    }
}
