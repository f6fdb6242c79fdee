//! A registration as the fields of its Redis hash. Field names are short because there is
//! one hash per registration.

use std::collections::HashMap;

use super::compact;
use crate::domain::{
    Burst, DeviceToken, Platform, Progress, RegState, RegistrationId, RegistrationRecord,
    SubscriptionId, UnixMillis,
};
use crate::store::StoreError;

const TOKEN: &str = "tok";
const PLATFORM: &str = "plat";
const APP: &str = "app";
const HOME: &str = "home";
const SUBSCRIPTION: &str = "sub";
const INBOX: &str = "inbox";
const STATE: &str = "st";
const DEAD_REASON: &str = "dead";
const BADGE: &str = "badge";
const CREATED: &str = "ct";
const LAST_NOTIFICATION: &str = "ln";
const LAST_WATERMARK: &str = "lw";
const INBOX_UNREAD: &str = "iu";
const RECENT_KEYS: &str = "rk";
const NEWEST_EVENT: &str = "ne";
const BURST: &str = "bu";
const LAST_PUSH: &str = "lp";
const LAST_PUSH_OUTCOME: &str = "lpo";
const CALLBACK_HASH: &str = "cb";
const MOVING_TO: &str = "mv";
pub(super) const VERSION: &str = "v";
/// Set on the hash a deleted registration leaves in its shard for a while: the registration
/// is gone, whatever copy of it an unfinished move left elsewhere.
pub(super) const GONE: &str = "gone";

/// A record's fields, every value written into one buffer: a write costs two allocations
/// per record rather than one per field, and comparing two records' fields costs none.
struct Fields {
    text: String,
    /// Each field's name and the range of its value in `text`; `None`: an optional field
    /// the record does not have (deleted from the hash).
    values: Vec<(&'static str, Option<std::ops::Range<usize>>)>,
}

impl Fields {
    fn of(record: &RegistrationRecord) -> Self {
        let mut fields = Self {
            text: String::with_capacity(512),
            values: Vec::with_capacity(20),
        };
        let progress = &record.progress;
        fields.token(TOKEN, record.platform, Some(&record.device_token));
        fields.put(PLATFORM, Some(record.platform.as_str()));
        fields.put(APP, Some(&record.app_id));
        fields.put(HOME, Some(&record.home_region));
        fields.put(STATE, Some(record.state.as_str()));
        fields.put(BADGE, Some(record.badge));
        fields.put(CREATED, Some(record.created_at.0));
        fields.put(
            CALLBACK_HASH,
            Some(compact::CallbackHash(&record.callback_hash)),
        );
        fields.put(
            SUBSCRIPTION,
            record.subscription_id.as_ref().map(|s| s.as_str()),
        );
        fields.put(INBOX, record.inbox_folder_id.as_deref());
        fields.put(DEAD_REASON, record.dead_reason.as_deref());
        fields.put(LAST_NOTIFICATION, record.last_notification_at.map(|t| t.0));
        fields.put(LAST_WATERMARK, record.last_watermark.as_deref());
        fields.put(INBOX_UNREAD, progress.inbox_unread);
        fields.put(
            RECENT_KEYS,
            (!progress.recent.is_empty()).then_some(compact::Keys(&progress.recent)),
        );
        fields.put(NEWEST_EVENT, progress.newest_event);
        fields.put(BURST, progress.burst.map(BurstField));
        fields.put(LAST_PUSH, record.last_push_at.map(|t| t.0));
        fields.put(LAST_PUSH_OUTCOME, record.last_push_outcome.as_deref());
        fields.token(MOVING_TO, record.platform, record.moving_to.as_ref());
        fields
    }

    /// A device token: an APNs one in its compact form, an FCM one as it is.
    fn token(&mut self, name: &'static str, platform: Platform, token: Option<&DeviceToken>) {
        match platform {
            Platform::Apns => self.put(name, token.map(|t| compact::ApnsToken(t.as_str()))),
            Platform::Fcm => self.put(name, token.map(DeviceToken::as_str)),
        }
    }

    fn put(&mut self, name: &'static str, value: Option<impl std::fmt::Display>) {
        use std::fmt::Write as _;
        let start = self.text.len();
        // Only a value that cannot be written in its stored form fails (an APNs token that
        // is not hex, which `DeviceToken` rules out): it is left out, and the record reads
        // back as corrupt rather than as something else.
        let range = value.and_then(|v| match write!(self.text, "{v}") {
            Ok(()) => Some(start..self.text.len()),
            Err(_) => {
                self.text.truncate(start);
                None
            }
        });
        self.values.push((name, range));
    }

    /// Each field's name and value (`None`: absent), in a fixed order.
    fn iter(&self) -> impl Iterator<Item = (&'static str, Option<&str>)> {
        self.values
            .iter()
            .map(|(name, range)| (*name, range.clone().map(|r| &self.text[r])))
    }
}

/// A burst as `first,last,new mail,events,more events,announce`.
struct BurstField(Burst);

impl std::fmt::Display for BurstField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{},{},{},{},{},{}",
            b.first_at.0,
            b.last_at.0,
            b.new_mail,
            b.events,
            u8::from(b.more_events),
            u8::from(b.announce)
        )
    }
}

/// The fields to set and the optional fields to delete for `record` (without `v`, which
/// the write script sets).
pub(super) fn encode(
    record: &RegistrationRecord,
) -> (Vec<(&'static str, String)>, Vec<&'static str>) {
    let mut set = Vec::new();
    let mut delete = Vec::new();
    for (name, value) in Fields::of(record).iter() {
        match value {
            Some(value) => set.push((name, value.to_owned())),
            None => delete.push(name),
        }
    }
    (set, delete)
}

/// What turns the hash of `stored` into the hash of `record`: the fields whose value
/// changed and the optional fields that are gone. Only valid while the hash holds `stored`
/// (the write checks its version).
pub(super) fn encode_changes(
    stored: &RegistrationRecord,
    record: &RegistrationRecord,
) -> (Vec<(&'static str, String)>, Vec<&'static str>) {
    let (before, after) = (Fields::of(stored), Fields::of(record));
    let mut set = Vec::new();
    let mut delete = Vec::new();
    for ((name, was), (_, now)) in before.iter().zip(after.iter()) {
        match (was, now) {
            (was, Some(now)) if was != Some(now) => set.push((name, now.to_owned())),
            (Some(_), None) => delete.push(name),
            _ => {}
        }
    }
    (set, delete)
}

/// Whether `fields` are the tombstone of a deleted registration.
pub(super) fn is_tombstone(fields: &HashMap<String, String>) -> bool {
    fields.contains_key(GONE)
}

/// The record stored in `fields` (an `HGETALL` answer); `None` for an empty answer or a
/// tombstone.
pub(super) fn decode(
    key: &str,
    id: &RegistrationId,
    mut fields: HashMap<String, String>,
) -> Result<Option<RegistrationRecord>, StoreError> {
    if fields.is_empty() || is_tombstone(&fields) {
        return Ok(None);
    }
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_owned(),
        reason,
    };
    let moving_to = fields.remove(MOVING_TO);
    let mut take = |name: &str| fields.remove(name);
    let mut required =
        |name: &str| take(name).ok_or_else(|| corrupt(format!("missing field {name}")));
    let number = |name: &str, raw: String| {
        raw.parse::<u64>()
            .map_err(|_| corrupt(format!("field {name} is not a number")))
    };

    let platform = required(PLATFORM)?;
    let platform = Platform::parse(&platform).ok_or_else(|| corrupt("bad platform".into()))?;
    let state = required(STATE)?;
    let state = RegState::parse(&state).ok_or_else(|| corrupt("bad state".into()))?;
    let callback_hash = compact::decode_callback_hash(&required(CALLBACK_HASH)?)
        .ok_or_else(|| corrupt("bad callback hash".into()))?;
    let token = |raw: String| match platform {
        Platform::Apns => compact::decode_apns_token(&raw)
            .map(DeviceToken::from_stored)
            .ok_or_else(|| corrupt("bad device token".into())),
        Platform::Fcm => Ok(DeviceToken::from_stored(raw)),
    };
    let device_token = token(required(TOKEN)?)?;
    let moving_to = moving_to.map(token).transpose()?;
    let app_id = required(APP)?;
    let home_region = required(HOME)?;
    let badge = number(BADGE, required(BADGE)?)?;
    let created_at = UnixMillis(number(CREATED, required(CREATED)?)?);
    let version = number(VERSION, required(VERSION)?)?;
    let mut time = |name: &str| -> Result<Option<UnixMillis>, StoreError> {
        take(name)
            .map(|raw| number(name, raw).map(UnixMillis))
            .transpose()
    };
    let last_notification_at = time(LAST_NOTIFICATION)?;
    let last_push_at = time(LAST_PUSH)?;
    Ok(Some(RegistrationRecord {
        id: id.clone(),
        device_token,
        platform,
        app_id,
        home_region,
        subscription_id: take(SUBSCRIPTION).map(SubscriptionId::from_stored),
        inbox_folder_id: take(INBOX),
        state,
        dead_reason: take(DEAD_REASON),
        badge: u32::try_from(badge).map_err(|_| corrupt("badge out of range".into()))?,
        created_at,
        last_notification_at,
        last_push_at,
        last_push_outcome: take(LAST_PUSH_OUTCOME),
        last_watermark: take(LAST_WATERMARK),
        progress: Progress {
            inbox_unread: take(INBOX_UNREAD)
                .map(|raw| raw.parse().map_err(|_| corrupt("bad inbox count".into())))
                .transpose()?,
            recent: take(RECENT_KEYS)
                .map(|raw| {
                    compact::decode_keys(&raw).ok_or_else(|| corrupt("bad recent keys".into()))
                })
                .transpose()?
                .unwrap_or_default(),
            newest_event: take(NEWEST_EVENT)
                .map(|raw| raw.parse().map_err(|_| corrupt("bad newest event".into())))
                .transpose()?,
            burst: take(BURST)
                .map(|raw| decode_burst(&raw).ok_or_else(|| corrupt("bad burst".into())))
                .transpose()?,
        },
        callback_hash,
        moving_to,
        version,
    }))
}

fn decode_burst(raw: &str) -> Option<Burst> {
    let mut parts = raw.split(',');
    let burst = Burst {
        first_at: UnixMillis(parts.next()?.parse().ok()?),
        last_at: UnixMillis(parts.next()?.parse().ok()?),
        new_mail: parts.next()?.parse().ok()?,
        events: parts.next()?.parse().ok()?,
        more_events: parts.next()? == "1",
        announce: parts.next()? == "1",
    };
    parts.next().is_none().then_some(burst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CallbackSecretHash;

    fn record() -> RegistrationRecord {
        RegistrationRecord {
            id: RegistrationId::from_bytes([1; 16]),
            device_token: DeviceToken::from_stored("ab".repeat(32)),
            platform: Platform::Apns,
            app_id: "com.example.mail".into(),
            home_region: "us-east-1".into(),
            subscription_id: Some(SubscriptionId::from_stored("SUB=".into())),
            inbox_folder_id: None,
            state: RegState::Active,
            dead_reason: None,
            badge: 4,
            created_at: UnixMillis(1_700_000_000_000),
            last_notification_at: Some(UnixMillis(1_700_000_000_500)),
            last_push_at: None,
            last_push_outcome: Some("delivered".into()),
            last_watermark: Some("AQAAAJ6Xmtv4ya7Fg7VYBjxa5QEsCx0AAAAAAAE=".into()),
            progress: Progress {
                inbox_unread: Some(4),
                recent: vec![1, u64::MAX, 0xdead_beef],
                newest_event: Some(1_772_615_727),
                burst: Some(Burst {
                    first_at: UnixMillis(1_700_000_000_000),
                    last_at: UnixMillis(1_700_000_000_900),
                    new_mail: 2,
                    events: 5,
                    more_events: true,
                    announce: true,
                }),
            },
            callback_hash: CallbackSecretHash([5; 32]),
            moving_to: Some(DeviceToken::from_stored("cd".repeat(32))),
            version: 3,
        }
    }

    #[test]
    fn a_record_round_trips_through_its_fields() {
        let original = record();
        let (set, delete) = encode(&original);
        assert!(delete.contains(&INBOX) && delete.contains(&LAST_PUSH));
        let mut fields: HashMap<String, String> =
            set.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        fields.insert(VERSION.into(), "3".into());
        let decoded = decode("k", &original.id, fields).unwrap().unwrap();
        assert_eq!(decoded, original);
    }

    /// The hash `set`/`delete` leave when applied to `hash`.
    fn apply(
        mut hash: HashMap<String, String>,
        (set, delete): (Vec<(&str, String)>, Vec<&str>),
    ) -> HashMap<String, String> {
        for name in delete {
            hash.remove(name);
        }
        hash.extend(set.into_iter().map(|(k, v)| (k.to_owned(), v)));
        hash
    }

    #[test]
    fn the_changes_of_a_write_turn_the_stored_hash_into_the_new_one() {
        let stored = record();
        let mut changed = stored.clone();
        changed.badge = 9;
        changed.progress.burst = None;
        changed.inbox_folder_id = Some("AAMk=".into());
        let (set, delete) = encode_changes(&stored, &changed);
        assert_eq!(
            set.len(),
            2,
            "only the badge and the Inbox id are written: {set:?}"
        );
        assert_eq!(delete, [BURST]);
        let full = |r: &RegistrationRecord| apply(HashMap::new(), encode(r));
        assert_eq!(
            apply(full(&stored), encode_changes(&stored, &changed)),
            full(&changed)
        );
        let (set, delete) = encode_changes(&stored, &stored);
        assert!(set.is_empty() && delete.is_empty());
    }

    #[test]
    fn an_empty_hash_is_no_record_and_a_broken_one_is_corrupt() {
        let id = RegistrationId::from_bytes([1; 16]);
        assert!(decode("k", &id, HashMap::new()).unwrap().is_none());
        let fields = HashMap::from([("plat".to_owned(), "pager".to_owned())]);
        assert!(matches!(
            decode("k", &id, fields),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
