//! PowerShell error records → the engine's error classes.
//!
//! Teams cmdlets' `FullyQualifiedErrorId` starts with the HTTP status name of
//! the service's answer (`NotFound,Microsoft.Teams.ConfigAPI.Cmdlets…`,
//! `Unauthorized,…`, `BadRequest,…`), so the prefix decides first; the message
//! text decides the rest (BACKENDS.md (c), DOMAIN.md 1.13), then the
//! record's category.

use super::protocol::HostError;
use crate::backend::{BackendError, ErrorKind};

/// Message fragments (lower case) and the class they mean, checked in order.
const TEXTS: &[(&str, ErrorKind)] = &[
    ("toomanyrequests", ErrorKind::Throttled),
    ("too many requests", ErrorKind::Throttled),
    ("throttl", ErrorKind::Throttled),
    ("you must call the connect-microsoftteams", ErrorKind::Auth),
    ("access token has expired", ErrorKind::Auth),
    ("access token is empty", ErrorKind::Auth),
    ("invalid credential", ErrorKind::Auth),
    ("aadsts", ErrorKind::Auth),
    ("service is unavailable", ErrorKind::Transient),
    ("service unavailable", ErrorKind::Transient),
    ("unknown error", ErrorKind::Transient),
    ("internal server error", ErrorKind::Transient),
    ("the operation has timed out", ErrorKind::Transient),
    ("already been assigned to another", ErrorKind::Conflict),
    ("already assigned to another", ErrorKind::Conflict),
    ("is not found from tenant", ErrorKind::Precondition),
    ("lacks appropriate licenses", ErrorKind::Precondition),
    ("does not have a valid license", ErrorKind::Precondition),
    ("inherited from a group", ErrorKind::Precondition),
    ("inherited from group", ErrorKind::Precondition),
    ("on-premises", ErrorKind::Precondition),
    ("contact your operator", ErrorKind::Precondition),
    ("management object not found", ErrorKind::NotFound),
    ("user not found", ErrorKind::NotFound),
];

/// The class of a host error record.
pub fn classify(e: &HostError) -> ErrorKind {
    let prefix = e.fqid.split(',').next().unwrap_or("").trim();
    let message = e.message.to_ascii_lowercase();
    let by_text = TEXTS
        .iter()
        .find(|(t, _)| message.contains(t))
        .map(|(_, k)| *k);
    // The host's own refusals: the table and the binary disagree (fatal),
    // or the session lost its connection (sign in again).
    if e.fqid.ends_with(",PortflowHost") {
        return match prefix {
            "NotConnected" => ErrorKind::Auth,
            _ => ErrorKind::Fatal,
        };
    }
    match prefix {
        "TooManyRequests" => return ErrorKind::Throttled,
        "ServiceUnavailable"
        | "InternalServerError"
        | "BadGateway"
        | "GatewayTimeout"
        | "RequestTimeout" => return ErrorKind::Transient,
        "Unauthorized" | "Forbidden" => return ErrorKind::Auth,
        "Conflict" => return ErrorKind::Conflict,
        // "not found from tenant" under NotFound is a wrong number type.
        "NotFound" => return by_text.unwrap_or(ErrorKind::NotFound),
        _ => {}
    }
    if let Some(k) = by_text {
        return k;
    }
    match e.category.as_str() {
        "ObjectNotFound" => ErrorKind::NotFound,
        "AuthenticationError" | "SecurityError" | "PermissionDenied" => ErrorKind::Auth,
        "ConnectionError" | "OperationTimeout" | "ResourceUnavailable" => ErrorKind::Transient,
        "LimitsExceeded" | "QuotaExceeded" => ErrorKind::Throttled,
        _ => ErrorKind::Fatal,
    }
}

/// The engine's error for a host error record: the cmdlet's message, with
/// the error id and any correlation id for the audit trail.
pub fn to_backend(cmdlet: &str, e: &HostError) -> BackendError {
    let mut message = format!("{cmdlet}: {}", e.message.trim());
    if !e.fqid.is_empty() {
        message.push_str(&format!(" [{}]", e.fqid));
    }
    if let Some(c) = e.correlation_id.as_deref().filter(|c| !c.is_empty()) {
        message.push_str(&format!(" [correlation id {c}]"));
    }
    BackendError::new(classify(e), message)
}

/// Whether `e` says the session must sign in again (then the call is sent
/// once more on a fresh connection).
pub fn wants_reconnect(e: &HostError) -> bool {
    classify(e) == ErrorKind::Auth && !e.fqid.starts_with("Forbidden")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(fqid: &str, category: &str, message: &str) -> HostError {
        HostError {
            fqid: fqid.into(),
            category: category.into(),
            exception_type: String::new(),
            message: message.into(),
            correlation_id: None,
        }
    }

    const SET: &str =
        "Microsoft.Teams.ConfigAPI.Cmdlets.Generated.Cmdlets.SetCsPhoneNumberAssignment_Set";

    #[test]
    fn classes_follow_the_error_id_then_the_text() {
        let cases = [
            (err(&format!("NotFound,{SET}"), "ObjectNotFound", "Status: NotFound"), ErrorKind::NotFound),
            (
                err(
                    &format!("NotFound,{SET}"),
                    "",
                    "Telephone Number '+14255550100' is not found from tenant 'x'",
                ),
                ErrorKind::Precondition,
            ),
            (err(&format!("Unauthorized,{SET}"), "", "Invalid credential"), ErrorKind::Auth),
            (err(&format!("TooManyRequests,{SET}"), "", "slow down"), ErrorKind::Throttled),
            (
                err(&format!("BadRequest,{SET}"), "", "The number has already been assigned to another user"),
                ErrorKind::Conflict,
            ),
            (
                err(&format!("BadRequest,{SET}"), "", "Service is unavailable. Please try again"),
                ErrorKind::Transient,
            ),
            (err(&format!("BadRequest,{SET}"), "", "Parameter is not valid"), ErrorKind::Fatal),
            (
                err(
                    "Identity,Microsoft.Rtc.Management.AD.Cmdlets.GetOcsUserCmdlet",
                    "ObjectNotFound",
                    "Management object not found for identity \"a@contoso.com\".",
                ),
                ErrorKind::NotFound,
            ),
            (
                err("", "InvalidOperation", "You must call the Connect-MicrosoftTeams cmdlet before calling any other cmdlets."),
                ErrorKind::Auth,
            ),
            (err("NotConnected,PortflowHost", "", "connect first"), ErrorKind::Auth),
            (err("ParameterNotAllowed,PortflowHost", "", "Foo"), ErrorKind::Fatal),
            (err("X,Y", "ConnectionError", "reset"), ErrorKind::Transient),
        ];
        for (e, want) in cases {
            assert_eq!(classify(&e), want, "{e:?}");
        }
        assert!(wants_reconnect(&err("NotConnected,PortflowHost", "", "")));
        assert!(!wants_reconnect(&err(
            &format!("Forbidden,{SET}"),
            "",
            "Access denied"
        )));
    }

    #[test]
    fn messages_keep_the_id_and_correlation() {
        let mut e = err(&format!("NotFound,{SET}"), "", "Status: NotFound");
        e.correlation_id = Some("0b9e0000-0000-4000-8000-000000000001".into());
        let b = to_backend("Set-CsPhoneNumberAssignment", &e);
        assert_eq!(b.kind, ErrorKind::NotFound);
        assert!(b
            .message
            .starts_with("Set-CsPhoneNumberAssignment: Status: NotFound ["));
        assert!(
            b.message.contains("correlation id 0b9e0000"),
            "{}",
            b.message
        );
    }
}
