//! The operation catalog: one table (`operations!`) from which [`Operation`],
//! [`OperationKind`], [`OperationKind::ALL`], [`Operation::kind`] and
//! [`OperationKind::info`] are generated, with a column per backend (`graph:`,
//! `cmdlet:`). Adding an operation is one row here plus its implementation in
//! each backend.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::NumberType;
#[allow(unused_imports)] // for rustdoc links in the rows
use super::{ConferencingView, LocationView, NumberView, OnPremUserView, PortOrderView, UserView};

/// Type of an operation argument, for validation of workflow `args`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    /// A user principal name.
    Upn,
    /// An E.164 phone number.
    E164,
    /// A [`NumberType`] name.
    NumberType,
    /// Free text.
    String,
    /// `true` or `false`.
    Bool,
}

/// One argument of an operation.
#[derive(Clone, Copy, Debug)]
pub struct Param {
    /// Argument name in YAML.
    pub name: &'static str,
    /// Its type.
    pub ty: ParamType,
    /// Whether it must be given.
    pub required: bool,
}

/// What the engine needs to know about an operation.
#[derive(Clone, Copy, Debug)]
pub struct OperationInfo {
    /// Name in workflows (`op:`).
    pub name: &'static str,
    /// What Microsoft calls it, for people (plans, manual tasks): the cmdlet
    /// or the admin-center action.
    pub microsoft: &'static str,
    /// The Microsoft Graph v1.0 request that performs it, when Graph has one
    /// (`None`: no Graph API, see BACKENDS.md).
    pub graph: Option<&'static str>,
    /// The Teams PowerShell or Skype for Business Server cmdlet that performs
    /// it, when there is one.
    pub cmdlet: Option<&'static str>,
    /// Its arguments.
    pub params: &'static [Param],
    /// Read-only observation (never changes the tenant).
    pub observation: bool,
    /// Safe to issue again when we do not know whether an earlier call took effect.
    pub idempotent: bool,
    /// Takes a phone number out of service.
    pub outage: bool,
    /// Admin-center instructions when real backends cannot automate the
    /// operation (the engine turns it into a manual task); `None` when they can.
    pub manual: Option<&'static str>,
}

const USER: Param = Param {
    name: "user",
    ty: ParamType::Upn,
    required: true,
};
const NUMBER: Param = Param {
    name: "number",
    ty: ParamType::E164,
    required: true,
};
const LOCATION_ID: Param = Param {
    name: "location_id",
    ty: ParamType::String,
    required: true,
};
const NUMBER_TYPE: Param = Param {
    name: "number_type",
    ty: ParamType::NumberType,
    required: true,
};

/// Accept `true`/`false` as a JSON boolean or as text (rendered workflow
/// arguments may arrive as strings); `null` is `false`.
fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Text(String),
    }
    match Option::<B>::deserialize(d)? {
        None => Ok(false),
        Some(B::Bool(b)) => Ok(b),
        Some(B::Text(t)) => match t.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" | "" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "expected true or false, got `{other}`"
            ))),
        },
    }
}

/// An argument as text, for [`Operation::field`]: only text fields are.
trait Field {
    fn text(&self) -> Option<&str> {
        None
    }
}
impl Field for String {
    fn text(&self) -> Option<&str> {
        Some(self)
    }
}
impl Field for Option<String> {}
impl Field for bool {}
impl Field for NumberType {}

/// Generates the operation types from one table. Each row: the variant's docs,
/// its name and arguments (with serde attributes), then the catalog entry.
macro_rules! operations {
    ($(
        $(#[$vmeta:meta])*
        $var:ident {
            $( $(#[$fmeta:meta])* $field:ident : $fty:ty ),* $(,)?
        } => {
            name: $name:literal,
            params: [$($param:expr),* $(,)?],
            observation: $obs:literal,
            idempotent: $idem:literal,
            outage: $outage:literal,
            manual: $manual:expr,
            microsoft: $ms:literal,
            graph: $graph:expr,
            cmdlet: $cmdlet:expr $(,)?
        };
    )*) => {
        /// One admin operation with its arguments, as the engine sends it to a backend.
        ///
        /// Serialized with the operation name in `op` and the arguments beside it, which
        /// is also how a workflow's rendered `args` are turned into an operation.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "op", rename_all = "snake_case")]
        pub enum Operation {
            $(
                $(#[$vmeta])*
                $var { $( $(#[$fmeta])* $field: $fty ),* },
            )*
        }

        /// Name of an operation without arguments (what a workflow's `op:` names).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum OperationKind {
            $(
                #[doc = concat!("See [`Operation::", stringify!($var), "`].")]
                $var,
            )*
        }

        impl Operation {
            /// Which operation this is.
            pub fn kind(&self) -> OperationKind {
                match self {
                    $(Operation::$var { .. } => OperationKind::$var,)*
                }
            }

            /// The text argument called `name` (`user`, `number`, `location_id`), if
            /// this operation has one.
            pub fn field(&self, name: &str) -> Option<&str> {
                match self {
                    $(Operation::$var { $($field),* } => {
                        $(if stringify!($field) == name {
                            return Field::text($field);
                        })*
                        None
                    })*
                }
            }
        }

        impl OperationKind {
            /// Every operation, in catalog order.
            pub const ALL: &'static [OperationKind] = &[$(OperationKind::$var),*];

            /// Catalog entry.
            pub fn info(self) -> &'static OperationInfo {
                match self {
                    $(OperationKind::$var => &OperationInfo {
                        name: $name,
                        microsoft: $ms,
                        graph: $graph,
                        cmdlet: $cmdlet,
                        params: &[$($param),*],
                        observation: $obs,
                        idempotent: $idem,
                        outage: $outage,
                        manual: $manual,
                    },)*
                }
            }
        }
    };
}

operations! {
    /// Read a user (`Get-CsOnlineUser -Identity`). Returns a [`UserView`].
    GetUser {
        /// UPN of the user.
        user: String,
    } => {
        name: "get_user",
        params: [USER],
        observation: true,
        idempotent: true,
        outage: false,
        manual: None,
        microsoft: "Get-CsOnlineUser -Identity",
        graph: Some("GET /users/{upn}, then GET /admin/teams/userConfigurations/{id}"),
        cmdlet: Some("Get-CsOnlineUser -Identity"),
    };
    /// Read a number (`Get-CsPhoneNumberAssignment -TelephoneNumber`).
    /// Returns a [`NumberView`], or `null` when the tenant does not hold the number.
    GetNumber {
        /// E.164 number with `+`.
        number: String,
    } => {
        name: "get_number",
        params: [NUMBER],
        observation: true,
        idempotent: true,
        outage: false,
        manual: None,
        microsoft: "Get-CsPhoneNumberAssignment -TelephoneNumber",
        graph: Some("GET /admin/teams/telephoneNumberManagement/numberAssignments?$filter=telephoneNumber eq '{number}'"),
        cmdlet: Some("Get-CsPhoneNumberAssignment -TelephoneNumber"),
    };
    /// On-premises `Set-CsUser -LineURI $null`: changes AD only; the cloud sees it
    /// after the next directory sync.
    ClearOnpremLineUri {
        /// UPN of the user.
        user: String,
    } => {
        name: "clear_onprem_line_uri",
        params: [USER],
        observation: false,
        idempotent: true,
        outage: true,
        manual: None,
        microsoft: "Set-CsUser -LineURI $null (Skype for Business Server)",
        graph: None,
        cmdlet: Some("Set-CsUser -Identity -LineURI $null (Skype for Business Server)"),
    };
    /// `Remove-CsPhoneNumberAssignment -Identity -PhoneNumber -PhoneNumberType`.
    RemoveNumber {
        /// UPN of the user.
        user: String,
        /// E.164 number.
        number: String,
        /// Type the number has in the tenant.
        number_type: NumberType,
    } => {
        name: "remove_number",
        params: [USER, NUMBER, NUMBER_TYPE],
        observation: false,
        idempotent: true,
        outage: true,
        manual: None,
        microsoft: "Remove-CsPhoneNumberAssignment",
        graph: Some("POST /admin/teams/telephoneNumberManagement/numberAssignments/unassignNumber"),
        cmdlet: Some("Remove-CsPhoneNumberAssignment -Identity -PhoneNumber -PhoneNumberType"),
    };
    /// `Grant-CsOnlineVoiceRoutingPolicy -Identity -PolicyName` (`null` = back to Global).
    GrantVoiceRoutingPolicy {
        /// UPN of the user.
        user: String,
        /// Policy name; `None` removes the per-user policy.
        #[serde(default)]
        policy: Option<String>,
    } => {
        name: "grant_voice_routing_policy",
        params: [USER,
                    Param {
                        name: "policy",
                        ty: ParamType::String,
                        required: false,
                    },],
        observation: false,
        idempotent: true,
        outage: false,
        manual: None,
        microsoft: "Grant-CsOnlineVoiceRoutingPolicy",
        graph: Some("POST /admin/teams/policy/userAssignments/assign (unassign for Global)"),
        cmdlet: Some("Grant-CsOnlineVoiceRoutingPolicy -Identity -PolicyName"),
    };
    /// `Set-CsPhoneNumberAssignment -Identity -PhoneNumber -PhoneNumberType [-LocationId]`.
    AssignNumber {
        /// UPN of the user.
        user: String,
        /// E.164 number.
        number: String,
        /// Type the number has in the tenant.
        number_type: NumberType,
        /// Emergency location id, when the number needs one.
        #[serde(default)]
        location_id: Option<String>,
    } => {
        name: "assign_number",
        params: [USER,
                    NUMBER,
                    NUMBER_TYPE,
                    Param {
                        name: "location_id",
                        ty: ParamType::String,
                        required: false,
                    },],
        observation: false,
        idempotent: true,
        outage: false,
        manual: None,
        microsoft: "Set-CsPhoneNumberAssignment",
        graph: Some("POST /admin/teams/telephoneNumberManagement/numberAssignments/assignNumber"),
        cmdlet: Some("Set-CsPhoneNumberAssignment -Identity -PhoneNumber -PhoneNumberType [-LocationId]"),
    };
    /// Read a user's Skype for Business Server object (`Get-CsUser`, on-premises).
    /// Returns an [`OnPremUserView`], or `null` when the user does not exist on-premises.
    GetOnpremUser {
        /// UPN of the user.
        user: String,
    } => {
        name: "get_onprem_user",
        params: [USER],
        observation: true,
        idempotent: true,
        outage: false,
        manual: None,
        microsoft: "Get-CsUser (Skype for Business Server)",
        graph: None,
        cmdlet: Some("Get-CsUser -Identity (Skype for Business Server)"),
    };
    /// Read the port order of a number (Teams admin center / operator portal).
    /// Returns a [`PortOrderView`], or `null` when no order covers the number.
    GetPortOrder {
        /// E.164 number.
        number: String,
    } => {
        name: "get_port_order",
        params: [NUMBER],
        observation: true,
        idempotent: true,
        outage: false,
        manual: None,
        microsoft: "Port order status (Teams admin center / operator)",
        graph: None,
        cmdlet: None,
    };
    /// `Get-CsOnlineDialInConferencingUser -Identity`. Returns a
    /// [`ConferencingView`], or `null` when the user has no audio conferencing.
    GetConferencing {
        /// UPN of the user.
        user: String,
    } => {
        name: "get_conferencing",
        params: [USER],
        observation: true,
        idempotent: true,
        outage: false,
        manual: None,
        microsoft: "Get-CsOnlineDialInConferencingUser",
        graph: None,
        cmdlet: Some("Get-CsOnlineDialInConferencingUser -Identity"),
    };
    /// `Get-CsOnlineLisLocation -LocationId` with its civic address. Returns a
    /// [`LocationView`], or `null` when the tenant has no such location.
    GetLocation {
        /// Emergency location id.
        location_id: String,
    } => {
        name: "get_location",
        params: [LOCATION_ID],
        observation: true,
        idempotent: true,
        outage: false,
        manual: None,
        microsoft: "Get-CsOnlineLisLocation / civic address",
        graph: None,
        cmdlet: Some("Get-CsOnlineLisLocation -LocationId"),
    };
    /// `Set-MgUserLicense -RemoveLicenses` (Graph `assignLicense`). Removing a
    /// prerequisite licence unassigns the user's number (DOMAIN 1.11).
    RemoveLicence {
        /// UPN of the user.
        user: String,
        /// SKU / plan name (`MCOPSTN1`, `MCOEV`, …).
        sku: String,
    } => {
        name: "remove_licence",
        params: [USER,
                    Param {
                        name: "sku",
                        ty: ParamType::String,
                        required: true,
                    },],
        observation: false,
        idempotent: true,
        outage: false,
        manual: None,
        microsoft: "Set-MgUserLicense -RemoveLicenses",
        graph: Some("POST /users/{id}/assignLicense (removeLicenses)"),
        cmdlet: None,
    };
    /// Skype for Business Server `Set-CsUser -EnterpriseVoiceEnabled $true
    /// -LineURI tel:<number>`: changes the on-premises object and AD; the cloud
    /// sees the line after the next directory sync.
    EnableOnpremVoice {
        /// UPN of the user.
        user: String,
        /// E.164 number for the line URI.
        number: String,
    } => {
        name: "enable_onprem_voice",
        params: [USER, NUMBER],
        observation: false,
        idempotent: true,
        outage: false,
        manual: None,
        microsoft: "Set-CsUser -EnterpriseVoiceEnabled $true -LineURI tel:<number> (Skype for Business Server)",
        graph: None,
        cmdlet: Some("Set-CsUser -Identity -EnterpriseVoiceEnabled $true -LineURI tel:<number> (Skype for Business Server)"),
    };
    /// `Move-CsUser -Target sipfed.online.lync.com [-Force]`: moves an on-premises
    /// user to Teams Only.
    MoveUser {
        /// UPN of the user.
        user: String,
        /// `-Force`: move without contacts and meetings (not recoverable).
        #[serde(default, deserialize_with = "lenient_bool")]
        force: bool,
    } => {
        name: "move_user",
        params: [USER,
                    Param {
                        name: "force",
                        ty: ParamType::Bool,
                        required: false,
                    },],
        observation: false,
        idempotent: true,
        outage: false,
        manual: None,
        microsoft: "Move-CsUser -Target sipfed.online.lync.com [-Force]",
        graph: None,
        cmdlet: Some("Move-CsUser -Identity -Target sipfed.online.lync.com [-Force] (Skype for Business Server)"),
    };
    /// `Set-CsPhoneNumberAssignment -Identity -EnterpriseVoiceEnabled $true`.
    EnableVoiceOnline {
        /// UPN of the user.
        user: String,
    } => {
        name: "enable_voice_online",
        params: [USER],
        observation: false,
        idempotent: true,
        outage: false,
        manual: None,
        microsoft: "Set-CsPhoneNumberAssignment -Identity -EnterpriseVoiceEnabled $true",
        graph: None,
        cmdlet: Some("Set-CsPhoneNumberAssignment -Identity -EnterpriseVoiceEnabled $true"),
    };
    /// `Set-CsUser -HostedVoiceMail $true` (online).
    EnableHostedVoicemail {
        /// UPN of the user.
        user: String,
    } => {
        name: "enable_hosted_voicemail",
        params: [USER],
        observation: false,
        idempotent: true,
        outage: false,
        manual: None,
        microsoft: "Set-CsUser -HostedVoiceMail $true",
        graph: None,
        cmdlet: Some("Set-CsOnlineVoicemailUserSettings -Identity -VoicemailEnabled $true"),
    };
    /// `Set-CsPhoneNumberAssignment -TelephoneNumber -LocationId`: change the
    /// emergency location of a number.
    SetNumberLocation {
        /// E.164 number.
        number: String,
        /// Emergency location id.
        location_id: String,
    } => {
        name: "set_number_location",
        params: [NUMBER, LOCATION_ID],
        observation: false,
        idempotent: true,
        outage: false,
        manual: None,
        microsoft: "Set-CsPhoneNumberAssignment -TelephoneNumber -LocationId",
        graph: Some("POST /admin/teams/telephoneNumberManagement/numberAssignments/updateNumber"),
        cmdlet: Some("Set-CsPhoneNumberAssignment -TelephoneNumber -LocationId"),
    };
    /// `Set-CsOnlineDialInConferencingUser -SendEmail`: e-mails the user their
    /// audio-conferencing information. Not idempotent (each call sends one).
    SendConferencingInfo {
        /// UPN of the user.
        user: String,
    } => {
        name: "send_conferencing_info",
        params: [USER],
        observation: false,
        idempotent: false,
        outage: false,
        manual: None,
        microsoft: "Set-CsOnlineDialInConferencingUser -SendEmail",
        graph: None,
        cmdlet: Some("Set-CsOnlineDialInConferencingUser -Identity -SendEmail"),
    };
    /// Teams admin center "Reset conference ID" (no API since January 2022): a new
    /// 7-digit id, the old one stops working at once, the user gets an e-mail.
    /// Not idempotent (each call draws a new id).
    ResetConferenceId {
        /// UPN of the user.
        user: String,
    } => {
        name: "reset_conference_id",
        params: [USER],
        observation: false,
        idempotent: false,
        outage: false,
        manual: Some(
                    "Teams admin center → Users → Manage users → <user> → Account → \
                     Audio Conferencing → Reset conference ID",
                ),
        microsoft: "Teams admin center: Reset conference ID (no API since 2022)",
        graph: None,
        cmdlet: None,
    };
}

impl Operation {
    /// The user it addresses (its `user` argument), if any.
    pub fn user(&self) -> Option<&str> {
        self.field("user")
    }

    /// The number it addresses (its `number` argument), if any.
    pub fn number(&self) -> Option<&str> {
        self.field("number")
    }

    /// What it is about, for keying per-subject draws and logs: its user, else
    /// its number, else its location; `""` for none.
    pub fn key(&self) -> &str {
        self.user()
            .or_else(|| self.number())
            .or_else(|| self.field("location_id"))
            .unwrap_or("")
    }
}

impl OperationKind {
    /// Look an operation up by its workflow name.
    pub fn from_name(name: &str) -> Option<OperationKind> {
        OperationKind::ALL
            .iter()
            .copied()
            .find(|k| k.info().name == name)
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.info().name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_the_catalog_names() {
        for k in OperationKind::ALL {
            let serde_name = serde_json::to_value(k).ok();
            assert_eq!(serde_name, Some(serde_json::json!(k.info().name)), "{k:?}");
            let params: Vec<&str> = k.info().params.iter().map(|p| p.name).collect();
            assert!(!params.is_empty(), "{k}");
        }
    }

    #[test]
    fn every_automated_operation_names_how_a_real_backend_does_it() {
        for k in OperationKind::ALL {
            let i = k.info();
            // get_port_order has no API (admin center / operator portal);
            // reset_conference_id is manual.
            let unreachable = matches!(k, OperationKind::GetPortOrder) || i.manual.is_some();
            assert_eq!(i.graph.is_some() || i.cmdlet.is_some(), !unreachable, "{k}");
            for text in [i.graph, i.cmdlet].into_iter().flatten() {
                assert!(!text.is_empty(), "{k}");
            }
        }
        assert!(OperationKind::RemoveLicence.info().cmdlet.is_none());
        assert!(OperationKind::ClearOnpremLineUri.info().graph.is_none());
    }

    #[test]
    fn subjects_are_read_from_the_arguments() {
        let remove = Operation::RemoveNumber {
            user: "a@contoso.com".into(),
            number: "+14255550100".into(),
            number_type: NumberType::DirectRouting,
        };
        assert_eq!(remove.user(), Some("a@contoso.com"));
        assert_eq!(remove.number(), Some("+14255550100"));
        assert_eq!(remove.key(), "a@contoso.com");
        let set = Operation::SetNumberLocation {
            number: "+14255550100".into(),
            location_id: "loc-1".into(),
        };
        assert_eq!((set.user(), set.key()), (None, "+14255550100"));
        let loc = Operation::GetLocation {
            location_id: "loc-1".into(),
        };
        assert_eq!((loc.user(), loc.number(), loc.key()), (None, None, "loc-1"));
        let grant = Operation::GrantVoiceRoutingPolicy {
            user: "a@contoso.com".into(),
            policy: Some("p".into()),
        };
        // Only text arguments are fields; an optional one is not a subject.
        assert_eq!(grant.field("policy"), None);
    }
}
