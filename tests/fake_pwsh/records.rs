//! PowerShell error records as the fake host reports them.
//!
//! - The script's own refusals: `<Reason>,PortflowHost` (as `host.ps1`).
//! - What only the fake cannot do: `<Reason>,PortflowFakeHost`.
//! - Service errors of the Teams module's generated cmdlets:
//!   `<Status>,Microsoft.Teams.ConfigAPI.Cmdlets.Generated.Cmdlets.<Cmdlet>_<Verb>`
//!   with a `RestException` and a fresh correlation id.
//! - Skype for Business Server cmdlets: `<Status>,Microsoft.Rtc.Management.AD.Cmdlets.<Class>`
//!   (`Get-CsUser`'s class name is the real one; the others follow its
//!   pattern), a `ManagementException`, no correlation id (the on-premises
//!   shell gives none).

use portflow::backend::powershell::ops::{HostOp, Part};
use portflow::backend::powershell::protocol::HostError;
use portflow::backend::{BackendError, ErrorKind};

/// What sim serve's 401 becomes: the Teams module's text for a token it
/// refuses (expired, revoked or not yet valid alike).
pub const UNAUTHORIZED_MESSAGE: &str =
    "Unauthorized: Access token has expired or is not yet valid.";
const REST_EXCEPTION: &str = "Microsoft.Teams.ConfigAPI.Cmdlets.Generated.Runtime.RestException";
const SFB_EXCEPTION: &str = "Microsoft.Rtc.Management.AD.ManagementException";

/// A refusal of the host script itself (before any cmdlet runs).
pub fn host(reason: &str, category: &str, exception: &str, message: String) -> HostError {
    HostError {
        fqid: format!("{reason},PortflowHost"),
        category: category.into(),
        exception_type: exception.into(),
        message,
        correlation_id: None,
    }
}

/// Something the test host does not simulate.
pub fn fake(reason: &str, message: String) -> HostError {
    HostError {
        fqid: format!("{reason},PortflowFakeHost"),
        category: "NotImplemented".into(),
        exception_type: "System.NotSupportedException".into(),
        message,
        correlation_id: None,
    }
}

/// The error-id suffix of `op`'s cmdlet: `Microsoft.Teams…Cmdlets.SetCsUser_Set`
/// for the cloud, the SfB cmdlet class on-premises.
pub fn cmdlet_class(op: &HostOp) -> String {
    match op.part {
        Part::Teams => {
            let verb = op.cmdlet.split('-').next().unwrap_or("");
            format!(
                "Microsoft.Teams.ConfigAPI.Cmdlets.Generated.Cmdlets.{}_{verb}",
                op.cmdlet.replace('-', "")
            )
        }
        Part::Onprem => {
            // Get-CsUser → GetOcsUserCmdlet (the SfB shell's "Ocs" class names).
            let class = op.cmdlet.replace("-Cs", "Ocs").replace('-', "");
            format!("Microsoft.Rtc.Management.AD.Cmdlets.{class}Cmdlet")
        }
    }
}

/// A record thrown by `op`'s cmdlet: `status` leads the error id.
pub fn cmdlet(
    op: &HostOp,
    status: &str,
    category: &str,
    message: String,
    correlation_id: String,
) -> HostError {
    let (exception, correlation) = match op.part {
        Part::Teams => (REST_EXCEPTION, Some(correlation_id)),
        Part::Onprem => (SFB_EXCEPTION, None),
    };
    HostError {
        fqid: format!("{status},{}", cmdlet_class(op)),
        category: category.into(),
        exception_type: exception.into(),
        message,
        correlation_id: correlation,
    }
}

/// The simulated tenant's error, as `op`'s cmdlet would throw it; the message
/// verbatim.
pub fn from_backend(op: &HostOp, e: &BackendError, correlation_id: String) -> HostError {
    let status = match e.kind {
        ErrorKind::Throttled => "TooManyRequests",
        ErrorKind::Transient => "ServiceUnavailable",
        ErrorKind::NotFound => "NotFound",
        ErrorKind::Conflict => "Conflict",
        ErrorKind::Precondition | ErrorKind::Fatal => "BadRequest",
        ErrorKind::Auth => "Unauthorized",
    };
    let category = match e.kind {
        ErrorKind::NotFound => "ObjectNotFound",
        ErrorKind::Auth => "AuthenticationError",
        _ => "InvalidOperation",
    };
    cmdlet(op, status, category, e.message.clone(), correlation_id)
}

/// sim serve refused the session's token.
pub fn unauthorized(op: &HostOp, correlation_id: String) -> HostError {
    cmdlet(
        op,
        "Unauthorized",
        "AuthenticationError",
        UNAUTHORIZED_MESSAGE.into(),
        correlation_id,
    )
}

/// `Get-CsUser` of a user the on-premises directory does not hold.
pub fn cs_user_not_found(identity: &str) -> HostError {
    HostError {
        fqid: "Identity,Microsoft.Rtc.Management.AD.Cmdlets.GetOcsUserCmdlet".into(),
        category: "ObjectNotFound".into(),
        exception_type: SFB_EXCEPTION.into(),
        message: format!("Management object not found for identity \"{identity}\"."),
        correlation_id: None,
    }
}

/// PowerShell's own parameter binding failures (`reason`:
/// `MissingMandatoryParameter`, `ParameterArgumentTransformationError`, …).
pub fn binding(op: &HostOp, reason: &str, message: String) -> HostError {
    HostError {
        fqid: format!("{reason},{}", cmdlet_class(op)),
        category: "InvalidArgument".into(),
        exception_type: "System.Management.Automation.ParameterBindingException".into(),
        message,
        correlation_id: None,
    }
}
