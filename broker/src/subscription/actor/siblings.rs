//! A device's other registrations: read for a flush (the device's total badge), and told
//! when one of theirs leaves the device or dies.

use super::{SubMsg, SubState};
use crate::domain::{DeviceToken, RegState, RegistrationRecord};
use crate::store::StoreError;
use crate::subscription::shard::ShardMsg;

/// The registrations of `token`'s device other than this one.
pub(super) async fn siblings(
    state: &SubState,
    token: &DeviceToken,
) -> Result<Vec<RegistrationRecord>, StoreError> {
    state.deps.store.list_device_except(token, &state.id).await
}

/// Tells one other registration of the device `left` (same app, alive) that the device's
/// badge changed, so it pushes the new total: this one left the device or died.
pub(super) async fn nudge_siblings(state: &SubState, left: &RegistrationRecord) {
    match siblings(state, &left.device_token).await {
        Ok(others) => {
            let sibling = others
                .iter()
                .filter(|r| r.app_id == left.app_id && r.state != RegState::Dead)
                .filter(|r| r.moving_to.is_none())
                .min_by(|a, b| a.id.cmp(&b.id));
            if let Some(sibling) = sibling {
                let _ = state.supervisor.send_message(ShardMsg::Route {
                    id: sibling.id.clone(),
                    record: None,
                    message: SubMsg::DeviceChanged,
                });
            }
        }
        Err(error) => {
            tracing::warn!(registration = %state.id, %error, "cannot read the device's other registrations; its badge is corrected at their next notification");
        }
    }
}
