//! A host operation with its arguments → the crate's [`Operation`] to run on
//! the simulated tenant, and how to project its answer.
//!
//! Argument names are checked against the table before this runs; here each
//! operation takes the values it needs, as a cmdlet's parameter binding
//! would, and refuses combinations the catalog has no operation for.

use portflow::backend::powershell::ops::HostOp;
use portflow::backend::powershell::protocol::HostError;
use portflow::backend::{NumberType, Operation};
use serde_json::{Map, Value};

use crate::records;

/// How the tenant's answer becomes the reply's `result`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `Get-CsOnlineUser`'s fields from a `UserView`.
    OnlineUser,
    /// `VoicemailEnabled` from a `UserView`.
    Voicemail,
    /// Rows of `Get-CsPhoneNumberAssignment` from a `NumberView` or null.
    NumberRows,
    /// `Get-CsOnlineDialInConferencingUser` from a `ConferencingView`.
    DialIn,
    /// `Get-CsOnlineLisLocation` from a `LocationView`.
    LisLocation,
    /// `Get-CsUser` from an `OnPremUserView`.
    CsUser,
    /// A `Set-`/`Grant-`/`Move-` cmdlet: returns nothing.
    Nothing,
}

/// What one call runs.
#[derive(Clone, Debug)]
pub struct Plan {
    pub op: Operation,
    pub shape: Shape,
    /// The `-Identity` asked for (some replies echo it).
    pub identity: Option<String>,
}

struct Args<'a> {
    op: &'a HostOp,
    args: &'a Map<String, Value>,
}

impl Args<'_> {
    fn missing(&self, name: &str) -> HostError {
        records::binding(
            self.op,
            "MissingMandatoryParameter",
            format!(
                "Cannot process command because of one or more missing mandatory parameters: \
                 {name}."
            ),
        )
    }

    fn wrong(&self, name: &str, want: &str, got: &Value) -> HostError {
        records::binding(
            self.op,
            "ParameterArgumentTransformationError",
            format!("Cannot process argument transformation on parameter '{name}'. Expected {want}, got {got}."),
        )
    }

    /// A required string.
    fn text(&self, name: &str) -> Result<String, HostError> {
        match self.args.get(name) {
            None | Some(Value::Null) => Err(self.missing(name)),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(self.wrong(name, "a string", v)),
        }
    }

    /// An optional string (absent, null and "" alike are none).
    fn opt_text(&self, name: &str) -> Result<Option<String>, HostError> {
        match self.args.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.wrong(name, "a string", v)),
        }
    }

    /// An optional boolean (a switch or `-Name:$true`).
    fn flag(&self, name: &str) -> Result<Option<bool>, HostError> {
        match self.args.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(name, "a boolean", v)),
        }
    }

    /// A parameter the catalog only ever sets to `true`.
    fn must_be_true(&self, name: &str) -> Result<(), HostError> {
        match self.flag(name)? {
            Some(true) => Ok(()),
            None => Err(self.missing(name)),
            Some(false) => Err(unsupported(self.op, &format!("-{name} $false"))),
        }
    }

    fn number_type(&self, name: &str) -> Result<NumberType, HostError> {
        let s = self.text(name)?;
        serde_json::from_value(Value::String(s.clone())).map_err(|_| {
            records::binding(
                self.op,
                "ParameterArgumentValidationError",
                format!(
                    "Cannot validate argument on parameter '{name}'. The argument \"{s}\" does \
                     not belong to the set \"DirectRouting,CallingPlan,OperatorConnect\"."
                ),
            )
        })
    }
}

fn unsupported(op: &HostOp, what: &str) -> HostError {
    records::fake(
        "NotSupported",
        format!(
            "{} {what} is not supported by the test host (no catalog operation does it)",
            op.cmdlet
        ),
    )
}

/// The plan for `op` called with `args`.
pub fn plan(op: &HostOp, args: &Map<String, Value>) -> Result<Plan, HostError> {
    let a = Args { op, args };
    let user = || a.text("Identity");
    let plan = |op: Operation, shape: Shape, identity: Option<String>| Plan {
        op,
        shape,
        identity,
    };
    Ok(match op.name {
        "get_online_user" => {
            let u = user()?;
            plan(
                Operation::GetUser { user: u.clone() },
                Shape::OnlineUser,
                Some(u),
            )
        }
        "get_voicemail_settings" => {
            let u = user()?;
            plan(
                Operation::GetUser { user: u.clone() },
                Shape::Voicemail,
                Some(u),
            )
        }
        "set_voicemail_settings" => {
            let u = user()?;
            a.must_be_true("VoicemailEnabled")?;
            plan(
                Operation::EnableHostedVoicemail { user: u.clone() },
                Shape::Nothing,
                Some(u),
            )
        }
        "get_number_assignment" => plan(
            Operation::GetNumber {
                number: a.text("TelephoneNumber")?,
            },
            Shape::NumberRows,
            None,
        ),
        "set_number_assignment" => {
            let u = user()?;
            plan(
                Operation::AssignNumber {
                    user: u.clone(),
                    number: a.text("PhoneNumber")?,
                    number_type: a.number_type("PhoneNumberType")?,
                    location_id: a.opt_text("LocationId")?,
                },
                Shape::Nothing,
                Some(u),
            )
        }
        "set_enterprise_voice" => {
            let u = user()?;
            a.must_be_true("EnterpriseVoiceEnabled")?;
            plan(
                Operation::EnableVoiceOnline { user: u.clone() },
                Shape::Nothing,
                Some(u),
            )
        }
        "set_number_location" => plan(
            Operation::SetNumberLocation {
                number: a.text("PhoneNumber")?,
                location_id: a.text("LocationId")?,
            },
            Shape::Nothing,
            None,
        ),
        "remove_number_assignment" => {
            let u = user()?;
            plan(
                Operation::RemoveNumber {
                    user: u.clone(),
                    number: a.text("PhoneNumber")?,
                    number_type: a.number_type("PhoneNumberType")?,
                },
                Shape::Nothing,
                Some(u),
            )
        }
        "grant_voice_routing_policy" => {
            let u = user()?;
            // `-PolicyName $null` (or absent) is back to Global.
            plan(
                Operation::GrantVoiceRoutingPolicy {
                    user: u.clone(),
                    policy: a.opt_text("PolicyName")?,
                },
                Shape::Nothing,
                Some(u),
            )
        }
        "get_dialin_user" => {
            let u = user()?;
            plan(
                Operation::GetConferencing { user: u.clone() },
                Shape::DialIn,
                Some(u),
            )
        }
        "send_dialin_email" => {
            let u = user()?;
            a.must_be_true("SendEmail")?;
            plan(
                Operation::SendConferencingInfo { user: u.clone() },
                Shape::Nothing,
                Some(u),
            )
        }
        "get_lis_location" => plan(
            Operation::GetLocation {
                location_id: a.text("LocationId")?,
            },
            Shape::LisLocation,
            None,
        ),
        "get_cs_user" => {
            let u = user()?;
            plan(
                Operation::GetOnpremUser { user: u.clone() },
                Shape::CsUser,
                Some(u),
            )
        }
        "set_cs_user" => set_cs_user(&a)?,
        "move_cs_user" => {
            let u = user()?;
            let target = a.text("Target")?;
            if !target.eq_ignore_ascii_case("sipfed.online.lync.com") {
                return Err(unsupported(op, &format!("-Target {target}")));
            }
            if a.flag("Confirm")? != Some(false) {
                // It would prompt, and the host is non-interactive.
                return Err(unsupported(op, "without -Confirm:$false"));
            }
            plan(
                Operation::MoveUser {
                    user: u.clone(),
                    force: a.flag("Force")?.unwrap_or(false),
                },
                Shape::Nothing,
                Some(u),
            )
        }
        other => {
            return Err(records::fake(
                "NotSupported",
                format!("the test host does not simulate '{other}'"),
            ))
        }
    })
}

/// `Set-CsUser -LineURI $null` clears the line; `-EnterpriseVoiceEnabled
/// $true -LineURI tel:+E164` enables voice with it; nothing else is asked for.
fn set_cs_user(a: &Args<'_>) -> Result<Plan, HostError> {
    let u = a.text("Identity")?;
    let voice = a.flag("EnterpriseVoiceEnabled")?;
    let line = a.args.get("LineURI");
    let op = match (voice, line) {
        (None, Some(Value::Null)) => Operation::ClearOnpremLineUri { user: u.clone() },
        (Some(true), Some(Value::String(l))) => {
            let Some(number) = l.strip_prefix("tel:") else {
                return Err(a.wrong("LineURI", "a tel: URI", &Value::String(l.clone())));
            };
            Operation::EnableOnpremVoice {
                user: u.clone(),
                number: number.to_string(),
            }
        }
        _ => {
            return Err(unsupported(
                a.op,
                "other than -LineURI $null, or -EnterpriseVoiceEnabled $true -LineURI tel:…",
            ))
        }
    };
    Ok(Plan {
        op,
        shape: Shape::Nothing,
        identity: Some(u),
    })
}
