//! The host's operation table, as Rust knows it: each entry is one cmdlet the
//! host may run, the parameter names it may bind, and the fields its reply
//! projects. `host.ps1` holds the same table (a test compares them), so the
//! script can run nothing else.
//!
//! Catalog operations map onto these in [`super::tenant`]; some use two
//! (`get_user`: the user, then their voicemail settings).

use serde::{Deserialize, Serialize};

/// Which host session runs an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// PowerShell 7 (or 5.1) with the MicrosoftTeams module: the cloud.
    Teams,
    /// Windows PowerShell 5.1 with the SkypeForBusiness module on the
    /// on-premises admin box (plus MicrosoftTeams ≥ 6.2.1 for `Move-CsUser`).
    Onprem,
}

impl Part {
    /// `teams` or `onprem`.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Teams => "teams",
            Part::Onprem => "onprem",
        }
    }

    /// The module the part's host imports.
    pub fn module(self) -> &'static str {
        match self {
            Part::Teams => "MicrosoftTeams",
            Part::Onprem => "SkypeForBusiness",
        }
    }
}

/// One entry of the host's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostOp {
    /// Name in requests (`call.op`).
    pub name: &'static str,
    /// Which session runs it.
    pub part: Part,
    /// The cmdlet, verbatim.
    pub cmdlet: &'static str,
    /// Parameter names a request may bind (anything else is refused).
    pub params: &'static [&'static str],
    /// Fields of the reply, each projected explicitly from the cmdlet's
    /// output object (strings, booleans, or lists of strings).
    pub fields: &'static [&'static str],
    /// The reply is a list of such objects (else one object, or `null`).
    pub many: bool,
}

/// Every operation the host can run.
pub const HOST_OPS: &[HostOp] = &[
    HostOp {
        name: "get_online_user",
        part: Part::Teams,
        cmdlet: "Get-CsOnlineUser",
        params: &["Identity"],
        // `AssignedPlan`: the `Capability` of each plan whose
        // `CapabilityStatus` is `Enabled`; `FeatureTypes`: as strings.
        fields: &[
            "Identity",
            "UserPrincipalName",
            "SipAddress",
            "UsageLocation",
            "HostingProvider",
            "InterpretedUserType",
            "TeamsUpgradeEffectiveMode",
            "LineURI",
            "OnPremLineURI",
            "EnterpriseVoiceEnabled",
            "OnlineVoiceRoutingPolicy",
            "FeatureTypes",
            "AssignedPlan",
            "AccountType",
            "UserDirSyncEnabled",
        ],
        many: false,
    },
    HostOp {
        name: "get_voicemail_settings",
        part: Part::Teams,
        cmdlet: "Get-CsOnlineVoicemailUserSettings",
        params: &["Identity"],
        fields: &["VoicemailEnabled"],
        many: false,
    },
    HostOp {
        name: "set_voicemail_settings",
        part: Part::Teams,
        cmdlet: "Set-CsOnlineVoicemailUserSettings",
        params: &["Identity", "VoicemailEnabled"],
        fields: &[],
        many: false,
    },
    HostOp {
        name: "get_number_assignment",
        part: Part::Teams,
        cmdlet: "Get-CsPhoneNumberAssignment",
        params: &["TelephoneNumber"],
        fields: &[
            "TelephoneNumber",
            "NumberType",
            "ActivationState",
            "PstnAssignmentStatus",
            "AssignedPstnTargetId",
            "LocationId",
            "NumberSource",
            "PstnPartnerName",
            "IsoCountryCode",
            "LocationUpdateSupported",
            "PortInOrderStatus",
        ],
        many: true,
    },
    HostOp {
        name: "set_number_assignment",
        part: Part::Teams,
        cmdlet: "Set-CsPhoneNumberAssignment",
        params: &["Identity", "PhoneNumber", "PhoneNumberType", "LocationId"],
        fields: &[],
        many: false,
    },
    HostOp {
        name: "set_enterprise_voice",
        part: Part::Teams,
        cmdlet: "Set-CsPhoneNumberAssignment",
        params: &["Identity", "EnterpriseVoiceEnabled"],
        fields: &[],
        many: false,
    },
    HostOp {
        name: "set_number_location",
        part: Part::Teams,
        cmdlet: "Set-CsPhoneNumberAssignment",
        params: &["PhoneNumber", "LocationId"],
        fields: &[],
        many: false,
    },
    HostOp {
        name: "remove_number_assignment",
        part: Part::Teams,
        cmdlet: "Remove-CsPhoneNumberAssignment",
        params: &["Identity", "PhoneNumber", "PhoneNumberType"],
        fields: &[],
        many: false,
    },
    HostOp {
        name: "grant_voice_routing_policy",
        part: Part::Teams,
        cmdlet: "Grant-CsOnlineVoiceRoutingPolicy",
        params: &["Identity", "PolicyName"],
        fields: &[],
        many: false,
    },
    HostOp {
        name: "get_dialin_user",
        part: Part::Teams,
        cmdlet: "Get-CsOnlineDialInConferencingUser",
        params: &["Identity"],
        // Returned for Microsoft audio-conferencing users only.
        fields: &[
            "Identity",
            "SipAddress",
            "ConferenceId",
            "ServiceNumber",
            "TollFreeServiceNumber",
        ],
        many: false,
    },
    HostOp {
        name: "send_dialin_email",
        part: Part::Teams,
        cmdlet: "Set-CsOnlineDialInConferencingUser",
        params: &["Identity", "SendEmail"],
        fields: &[],
        many: false,
    },
    HostOp {
        name: "get_lis_location",
        part: Part::Teams,
        cmdlet: "Get-CsOnlineLisLocation",
        params: &["LocationId"],
        fields: &[
            "LocationId",
            "CivicAddressId",
            "Description",
            "Location",
            "CountryOrRegion",
            "ValidationStatus",
        ],
        many: false,
    },
    HostOp {
        name: "get_cs_user",
        part: Part::Onprem,
        cmdlet: "Get-CsUser",
        params: &["Identity"],
        fields: &[
            "UserPrincipalName",
            "SipAddress",
            "EnterpriseVoiceEnabled",
            "LineURI",
            "RegistrarPool",
            "HostingProvider",
        ],
        many: false,
    },
    HostOp {
        name: "set_cs_user",
        part: Part::Onprem,
        cmdlet: "Set-CsUser",
        params: &["Identity", "LineURI", "EnterpriseVoiceEnabled"],
        fields: &[],
        many: false,
    },
    HostOp {
        name: "move_cs_user",
        part: Part::Onprem,
        cmdlet: "Move-CsUser",
        // The host adds `-AccessTokens` from its session when it was handed
        // tokens and the cmdlet has the parameter; never from a request.
        params: &[
            "Identity",
            "Target",
            "Force",
            "Confirm",
            "HostedMigrationOverrideUrl",
        ],
        fields: &[],
        many: false,
    },
];

/// The entry called `name`.
pub fn host_op(name: &str) -> Option<&'static HostOp> {
    HOST_OPS.iter().find(|o| o.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::OperationKind;

    #[test]
    fn names_are_unique_and_params_are_plain_identifiers() {
        for (i, op) in HOST_OPS.iter().enumerate() {
            assert!(
                HOST_OPS[..i].iter().all(|o| o.name != op.name),
                "{}",
                op.name
            );
            for p in op.params.iter().chain(op.fields) {
                assert!(
                    !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()),
                    "{}: {p}",
                    op.name
                );
            }
            assert!(op.cmdlet.contains("-Cs"), "{}", op.cmdlet);
        }
    }

    #[test]
    fn every_catalog_cmdlet_is_in_the_table() {
        for k in OperationKind::ALL {
            let Some(text) = k.info().cmdlet else {
                continue;
            };
            let cmdlet = text.split_whitespace().next().unwrap_or("");
            assert!(
                HOST_OPS.iter().any(|o| o.cmdlet == cmdlet),
                "{k}: {cmdlet} is not in the host's table"
            );
        }
    }
}
