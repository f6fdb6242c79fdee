//! The registrations service: validates requests, mints callback URLs, and reads and writes
//! registrations through the store. Transport-free: the gRPC layer (and later the gateway's
//! sink) call it and map [`RegistryError`] to their own codes.

mod error;
mod fencing;
mod notification;

use std::sync::Arc;

use crate::domain::{
    CallbackToken, DeviceToken, FieldError, Platform, RegState, RegistrationId, RegistrationRecord,
    SubscriptionId, UnixMillis, validate_folder_id, validate_region,
};
use crate::store::{RegistrationStore, StoreError};

pub use error::RegistryError;
pub use fencing::{Fencing, NotOwner, SoloFencing};
pub(crate) use notification::apply_effect;
pub use notification::{Binding, MessageEffect, decide};

/// How many times a read-modify-write is retried when a concurrent write wins.
const MAX_CONFLICT_RETRIES: usize = 5;

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

#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn RegistrationStore>,
    fencing: Arc<dyn Fencing>,
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
        fencing: Arc<dyn Fencing>,
        settings: RegistrySettings,
    ) -> Self {
        Self {
            store,
            fencing,
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

        let id = RegistrationId::mint(device_token.shard()).map_err(RegistryError::entropy)?;
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
            version: 0,
        };
        let fence = self.fencing.fence(record.device_token.shard())?;
        let record = self.store.create(fence, &record).await?;
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
        self.modify(&id, |record| {
            if let Some(bound) = &record.subscription_id
                && *bound != sub
            {
                return Err(RegistryError::AlreadyExists(
                    "the registration is already bound to another subscription id; register again for a new subscription".into(),
                ));
            }
            record.subscription_id = Some(sub.clone());
            Ok(())
        })
        .await
    }

    pub async fn update_device_token(
        &self,
        raw_id: &str,
        raw_token: &str,
    ) -> Result<RegistrationRecord, RegistryError> {
        let id = RegistrationId::parse("registration_id", raw_id)?;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let current = self.store.get(&id).await?.ok_or(RegistryError::NotFound)?;
            let token = DeviceToken::parse(current.platform, raw_token)?;
            if token == current.device_token {
                return Ok(current);
            }
            let (old_shard, new_shard) = (current.device_token.shard(), token.shard());
            let updated = RegistrationRecord {
                device_token: token,
                ..current
            };
            let result = if old_shard == new_shard {
                self.store
                    .update(self.fencing.fence(old_shard)?, &updated)
                    .await
            } else {
                let (from, to) = (
                    self.fencing.fence(old_shard)?,
                    self.fencing.fence(new_shard)?,
                );
                self.store.relocate(from, to, &updated).await
            };
            match result {
                Err(StoreError::Conflict) => continue,
                other => return Ok(other?),
            }
        }
        Err(RegistryError::Contended)
    }

    pub async fn unregister(&self, raw_id: &str) -> Result<(), RegistryError> {
        let id = RegistrationId::parse("registration_id", raw_id)?;
        let Some(record) = self.store.get(&id).await? else {
            return Ok(());
        };
        let fence = self.fencing.fence(record.device_token.shard())?;
        if self.store.delete(fence, &id).await? {
            tracing::info!(registration = %id, "unregistered");
        }
        Ok(())
    }

    pub async fn list_device(
        &self,
        raw_token: &str,
    ) -> Result<Vec<RegistrationRecord>, RegistryError> {
        // The platform is not part of the request: accept the token if either shape fits.
        let token = DeviceToken::parse(Platform::Apns, raw_token)
            .or_else(|_| DeviceToken::parse(Platform::Fcm, raw_token))
            .map_err(|_| FieldError::new("device_token", "is not an APNs or FCM device token"))?;
        let mut records = self.store.list_device(&token).await?;
        records.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(records)
    }

    /// The registration a callback token names, if the token's secret matches it.
    pub async fn resolve_callback(
        &self,
        raw_token: &str,
    ) -> Result<Option<Arc<RegistrationRecord>>, RegistryError> {
        self.resolve_callback_from(raw_token, |_| None).await
    }

    /// [`Self::resolve_callback`], taking the record from `cached` (a live actor's copy, say)
    /// when it has one instead of reading the store.
    pub async fn resolve_callback_from(
        &self,
        raw_token: &str,
        cached: impl FnOnce(&RegistrationId) -> Option<Arc<RegistrationRecord>>,
    ) -> Result<Option<Arc<RegistrationRecord>>, RegistryError> {
        let Some(token) = CallbackToken::parse(raw_token) else {
            return Ok(None);
        };
        let id = token.registration_id();
        let record = match cached(id) {
            Some(record) => Some(record),
            None => self.store.get(id).await?.map(Arc::new),
        };
        Ok(record.filter(|r| token.matches(&r.callback_hash)))
    }

    /// Reads, changes and writes back a registration, retrying when a concurrent write wins.
    async fn modify(
        &self,
        id: &RegistrationId,
        mut change: impl FnMut(&mut RegistrationRecord) -> Result<(), RegistryError>,
    ) -> Result<RegistrationRecord, RegistryError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let mut record = self.store.get(id).await?.ok_or(RegistryError::NotFound)?;
            let before = record.clone();
            change(&mut record)?;
            if record == before {
                return Ok(record);
            }
            let fence = self.fencing.fence(record.device_token.shard())?;
            match self.store.update(fence, &record).await {
                Err(StoreError::Conflict) => continue,
                other => return Ok(other?),
            }
        }
        Err(RegistryError::Contended)
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
