//! Field validation with messages that name the field, for `INVALID_ARGUMENT` answers.

use std::fmt;

use super::ids::MAX_OPAQUE_ID_LEN;

/// A field of a request that failed validation, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.reason)
    }
}

impl std::error::Error for FieldError {}

/// Opaque EWS identifiers (subscription ids, folder ids): non-empty, bounded, printable
/// ASCII without spaces — Exchange writes them as base64.
pub(super) fn opaque_id(field: &'static str, raw: &str) -> Result<(), FieldError> {
    if raw.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if raw.len() > MAX_OPAQUE_ID_LEN {
        return Err(FieldError::new(
            field,
            format!("is longer than {MAX_OPAQUE_ID_LEN} bytes"),
        ));
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FieldError::new(
            field,
            "must be printable ASCII without spaces",
        ));
    }
    Ok(())
}

/// An optional Inbox folder id: empty means "not given".
pub fn validate_folder_id(field: &'static str, raw: &str) -> Result<Option<String>, FieldError> {
    if raw.is_empty() {
        return Ok(None);
    }
    opaque_id(field, raw).map(|()| Some(raw.to_owned()))
}

/// A region name that the deployment knows.
pub fn validate_region<'a>(
    field: &'static str,
    raw: &str,
    known: &'a [String],
) -> Result<&'a str, FieldError> {
    known
        .iter()
        .find(|r| *r == raw)
        .map(String::as_str)
        .ok_or_else(|| {
            FieldError::new(
                field,
                format!(
                    "'{}' is not a known region ({})",
                    raw.escape_debug(),
                    known.join(", ")
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_ids_refuse_empty_long_and_unprintable_values() {
        assert!(opaque_id("subscription_id", "AQMk+/==").is_ok());
        assert_eq!(
            opaque_id("subscription_id", "").unwrap_err().reason,
            "is required"
        );
        assert!(opaque_id("subscription_id", &"A".repeat(513)).is_err());
        assert!(opaque_id("subscription_id", "a b").is_err());
        assert!(opaque_id("subscription_id", "é").is_err());
    }

    #[test]
    fn regions_must_be_known() {
        let known = vec!["us-east-1".to_owned(), "eu-west-1".to_owned()];
        assert_eq!(
            validate_region("home_region", "eu-west-1", &known).unwrap(),
            "eu-west-1"
        );
        let err = validate_region("home_region", "mars-1", &known).unwrap_err();
        assert!(
            err.to_string()
                .contains("home_region 'mars-1' is not a known region")
        );
    }
}
