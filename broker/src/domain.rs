//! The registration domain: what Herald knows about a device's mailbox subscription, and
//! the rules its fields obey. No I/O here.

mod callback;
mod feedback;
mod ids;
mod progress;
mod registration;
mod validate;

pub use callback::{CallbackSecretHash, CallbackToken};
pub use feedback::DeadToken;
pub use ids::{DeviceToken, RegistrationId, SubscriptionId, home_tag};
pub use progress::{Burst, Progress, RECENT_KEYS};
pub use registration::{Platform, RegState, RegistrationRecord, UnixMillis};
pub use validate::{FieldError, validate_folder_id, validate_region};
