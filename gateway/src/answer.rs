//! The SOAP answers of protocol note §7.1: `SendNotificationResult/SubscriptionStatus`, both
//! in the messages namespace, `OK` or `Unsubscribe`, in the request's SOAP version.

use crate::model::SoapVersion;

/// What Exchange is told about the subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscriptionStatus {
    Ok,
    Unsubscribe,
}

impl SubscriptionStatus {
    /// The schema's enumeration value (case-sensitive).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Unsubscribe => "Unsubscribe",
        }
    }
}

impl SoapVersion {
    /// The `Content-Type` of an answer in this version.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::V11 => "text/xml; charset=utf-8",
            Self::V12 => "application/soap+xml; charset=utf-8",
        }
    }

    fn envelope_namespace(self) -> &'static str {
        match self {
            Self::V11 => crate::parse::SOAP11,
            Self::V12 => crate::parse::SOAP12,
        }
    }
}

/// The whole answer body.
pub fn soap_answer(soap: SoapVersion, status: SubscriptionStatus) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<soap:Envelope xmlns:soap="{envelope}" xmlns:m="{messages}">"#,
            "<soap:Body><m:SendNotificationResult>",
            "<m:SubscriptionStatus>{status}</m:SubscriptionStatus>",
            "</m:SendNotificationResult></soap:Body></soap:Envelope>"
        ),
        envelope = soap.envelope_namespace(),
        messages = crate::parse::MESSAGES,
        status = status.as_str(),
    )
}
