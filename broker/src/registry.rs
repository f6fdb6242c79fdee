//! The registrations service: validates requests, mints callback URLs, creates
//! registrations, reads them from the store, and hands every change of an existing one to
//! its subscription actor (its one writer). Transport-free: the gRPC layer and the gateway's
//! sink call it and map [`RegistryError`] to their own codes.

mod error;
mod notification;

use std::sync::Arc;

use crate::domain::{
    CallbackToken, DeviceToken, FieldError, Platform, RegState, RegistrationId, RegistrationRecord,
    SubscriptionId, UnixMillis, validate_folder_id, validate_region,
};
use crate::routing::Router;
use crate::store::RegistrationStore;
use crate::subscription::{Command, CommandError};

pub use error::RegistryError;
pub(crate) use notification::apply_effect;
pub use notification::{Binding, MessageEffect, decide};

/// An app the deployment pushes for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownApp {
    pub id: String,
    pub platform: Platform,
}

/// What the registry needs to know of the deployment.
#[derive(Clone, Debug)]
pub struct RegistrySettings {
    /// Base of callback URLs, without a trailing slash.
    pub public_url: String,
    /// The region of this node: the default home region.
    pub region: String,
    /// Every region of the deployment.
    pub regions: Vec<String>,
    pub apps: Vec<KnownApp>,
}

/// A registration request, as received.
#[derive(Clone, Debug, Default)]
pub struct NewRegistration {
    pub device_token: String,
    pub platform: Option<Platform>,
    pub app_id: String,
    pub inbox_folder_id: String,
    pub subscription_id: String,
    pub home_region: String,
}

/// A new registration with its callback URL, which is never shown again.
#[derive(Debug)]
pub struct Registered {
    pub record: RegistrationRecord,
    pub callback_url: String,
}

/// A device token of either platform (a request that does not say which).
pub fn parse_any_device_token(raw: &str) -> Result<DeviceToken, FieldError> {
    DeviceToken::parse(Platform::Apns, raw)
        .or_else(|_| DeviceToken::parse(Platform::Fcm, raw))
        .map_err(|_| FieldError::new("device_token", "is not an APNs or FCM device token"))
}

#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn RegistrationStore>,
    router: Router,
    settings: Arc<RegistrySettings>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("store", &self.store.kind())
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new(
        store: Arc<dyn RegistrationStore>,
        router: Router,
        settings: RegistrySettings,
    ) -> Self {
        Self {
            store,
            router,
            settings: Arc::new(settings),
        }
    }

    pub fn store(&self) -> &Arc<dyn RegistrationStore> {
        &self.store
    }

    pub async fn register(&self, request: NewRegistration) -> Result<Registered, RegistryError> {
        let platform = request
            .platform
            .ok_or_else(|| FieldError::new("platform", "must be PLATFORM_APNS or PLATFORM_FCM"))?;
        let device_token = DeviceToken::parse(platform, &request.device_token)?;
        let app_id = self.known_app(&request.app_id, platform)?;
        let home_region = if request.home_region.is_empty() {
            self.settings.region.clone()
        } else {
            validate_region("home_region", &request.home_region, &self.settings.regions)?.to_owned()
        };
        let inbox_folder_id = validate_folder_id("inbox_folder_id", &request.inbox_folder_id)?;
        let subscription_id = match request.subscription_id.as_str() {
            "" => None,
            raw => Some(SubscriptionId::parse("subscription_id", raw)?),
        };

        let id = RegistrationId::mint(device_token.shard(), &home_region)
            .map_err(RegistryError::entropy)?;
        let token = CallbackToken::mint(id.clone()).map_err(RegistryError::entropy)?;
        let record = RegistrationRecord {
            id,
            device_token,
            platform,
            app_id,
            home_region,
            subscription_id,
            inbox_folder_id,
            state: RegState::Pending,
            dead_reason: None,
            badge: 0,
            created_at: UnixMillis::now(),
            last_notification_at: None,
            last_watermark: None,
            progress: Default::default(),
            last_push_at: None,
            last_push_outcome: None,
            callback_hash: token.secret_hash(),
            moving_to: None,
            version: 0,
        };
        let record = self
            .router
            .create(record)
            .await
            .map_err(|e| RegistryError::from(CommandError::Unavailable(e)))?;
        let callback_url = format!(
            "{}/ews/v1/{}/{}",
            self.settings.public_url,
            record.home_region,
            token.encode()
        );
        tracing::info!(
            registration = %record.id,
            device = %record.device_token.fingerprint(),
            platform = %record.platform,
            "registered"
        );
        Ok(Registered {
            record,
            callback_url,
        })
    }

    pub async fn get(&self, raw_id: &str) -> Result<RegistrationRecord, RegistryError> {
        let id = RegistrationId::parse("registration_id", raw_id)?;
        self.store.get(&id).await?.ok_or(RegistryError::NotFound)
    }

    pub async fn bind_subscription(
        &self,
        raw_id: &str,
        raw_subscription: &str,
    ) -> Result<RegistrationRecord, RegistryError> {
        let id = RegistrationId::parse("registration_id", raw_id)?;
        let sub = SubscriptionId::parse("subscription_id", raw_subscription)?;
        self.change(&id, Command::Bind(sub)).await
    }

    /// Gives the registration a new device token (the app was reinstalled or restored). A
    /// token of another shard moves it there without a moment in which it cannot be found.
    pub async fn update_device_token(
        &self,
        raw_id: &str,
        raw_token: &str,
    ) -> Result<RegistrationRecord, RegistryError> {
        let id = RegistrationId::parse("registration_id", raw_id)?;
        if raw_token.is_empty() {
            return Err(FieldError::new("device_token", "is required").into());
        }
        self.change(&id, Command::SetToken(raw_token.to_owned()))
            .await
    }

    /// Deletes the registration; succeeds if it does not exist. It answers only once the
    /// registration is gone, wherever it moved meanwhile.
    pub async fn unregister(&self, raw_id: &str) -> Result<(), RegistryError> {
        let id = RegistrationId::parse("registration_id", raw_id)?;
        match self.router.command(&id, Command::Unregister).await {
            Ok(_) | Err(crate::subscription::CommandError::NotFound) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }

    /// Has the registration's actor apply `command`; answers the registration as it is then.
    async fn change(
        &self,
        id: &RegistrationId,
        command: Command,
    ) -> Result<RegistrationRecord, RegistryError> {
        self.router
            .command(id, command)
            .await?
            .ok_or(RegistryError::NotFound)
    }

    pub async fn list_device(
        &self,
        raw_token: &str,
    ) -> Result<Vec<RegistrationRecord>, RegistryError> {
        let token = parse_any_device_token(raw_token)?;
        let mut records = self.store.list_device(&token).await?;
        records.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(records)
    }

    /// The registration a callback token names, if the token's secret matches it.
    pub async fn resolve_callback(
        &self,
        raw_token: &str,
    ) -> Result<Option<Arc<RegistrationRecord>>, RegistryError> {
        match CallbackToken::parse(raw_token) {
            Some(token) => self.resolve_callback_from(&token, |_| None).await,
            None => Ok(None),
        }
    }

    /// [`Self::resolve_callback`] for a parsed token, taking the record from `cached` (a
    /// live actor's copy, say) when it has one instead of reading the store.
    pub async fn resolve_callback_from(
        &self,
        token: &CallbackToken,
        cached: impl FnOnce(&RegistrationId) -> Option<Arc<RegistrationRecord>>,
    ) -> Result<Option<Arc<RegistrationRecord>>, RegistryError> {
        let id = token.registration_id();
        let record = match cached(id) {
            Some(record) => Some(record),
            None => self.store.get(id).await?.map(Arc::new),
        };
        Ok(record.filter(|r| token.matches(&r.callback_hash)))
    }

    fn known_app(&self, raw: &str, platform: Platform) -> Result<String, FieldError> {
        if raw.is_empty() {
            return Err(FieldError::new("app_id", "is required"));
        }
        match self.settings.apps.iter().find(|app| app.id == raw) {
            Some(app) if app.platform == platform => Ok(app.id.clone()),
            Some(app) => Err(FieldError::new(
                "app_id",
                format!("'{raw}' is a {} app, not {}", app.platform, platform),
            )),
            None => Err(FieldError::new(
                "app_id",
                format!("'{}' is not a configured app", raw.escape_debug()),
            )),
        }
    }
}
