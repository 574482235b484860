//! The simulated tenant's views → the fields a host operation projects
//! ([`HostOp::fields`]), shaped as the real cmdlets' output: `tel:` and
//! `sip:` prefixes, the service's plan names, `null` where the cmdlet returns
//! nothing.

use portflow::backend::powershell::ops::HostOp;
use portflow::backend::powershell::protocol::HostError;
use portflow::backend::{
    ConferencingView, Homing, LocationView, NumberView, OnPremUserView, UserView,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::records;
use crate::translate::{Plan, Shape};

fn tel(n: &Option<String>) -> Value {
    n.as_ref()
        .map_or(Value::Null, |n| Value::String(format!("tel:{n}")))
}

/// The service plan names `AssignedPlan` shows for the simulator's licences.
fn plan_name(licence: &str) -> &str {
    match licence {
        "Teams" => "TEAMS1",
        "MCOProfessional" => "MCOSTANDARD",
        other => other,
    }
}

fn parse<T: DeserializeOwned>(v: Value, what: &str) -> Result<T, HostError> {
    serde_json::from_value(v).map_err(|e| {
        records::fake(
            "InvalidResult",
            format!("the simulated tenant answered an unreadable {what}: {e}"),
        )
    })
}

/// `result` for `plan`, from the tenant's answer `v`.
pub fn project(op: &HostOp, plan: &Plan, v: Value) -> Result<Value, HostError> {
    let out = match plan.shape {
        Shape::Nothing => Value::Null,
        Shape::OnlineUser => {
            let u: UserView = parse(v, "user")?;
            let plans: Vec<&str> = u.licences.iter().map(|l| plan_name(l)).collect();
            json!({
                "Identity": u.id,
                "UserPrincipalName": u.upn,
                "SipAddress": format!("sip:{}", u.sip_address),
                "UsageLocation": u.usage_location,
                "HostingProvider": u.hosting_provider,
                "InterpretedUserType": u.interpreted_user_type,
                "TeamsUpgradeEffectiveMode": u.teams_upgrade_effective_mode,
                "LineURI": tel(&u.line_uri),
                "OnPremLineURI": tel(&u.on_prem_line_uri),
                "EnterpriseVoiceEnabled": u.enterprise_voice_enabled,
                "OnlineVoiceRoutingPolicy": u.online_voice_routing_policy,
                "FeatureTypes": u.feature_types,
                "AssignedPlan": plans,
                "AccountType": u.account_type,
                "UserDirSyncEnabled": u.dir_synced,
            })
        }
        Shape::Voicemail => {
            let u: UserView = parse(v, "user")?;
            json!({"VoicemailEnabled": u.hosted_voicemail})
        }
        Shape::NumberRows => {
            let n: Option<NumberView> = parse(v, "number")?;
            let rows: Vec<Value> = n
                .into_iter()
                .map(|n| {
                    json!({
                        "TelephoneNumber": n.telephone_number,
                        "NumberType": n.number_type.as_str(),
                        "ActivationState": n.activation_state,
                        "PstnAssignmentStatus": n.pstn_assignment_status,
                        "AssignedPstnTargetId": n.assigned_pstn_target_id,
                        "LocationId": n.location_id,
                        "NumberSource": n.number_source,
                        "PstnPartnerName": n.pstn_partner_name,
                        "IsoCountryCode": n.iso_country_code,
                        "LocationUpdateSupported": n.location_update_supported,
                        "PortInOrderStatus": null,
                    })
                })
                .collect();
            Value::Array(rows)
        }
        Shape::DialIn => {
            let c: Option<ConferencingView> = parse(v, "conferencing view")?;
            // The cmdlet returns Microsoft audio-conferencing users only.
            match c.filter(|c| c.provider == "Microsoft") {
                None => Value::Null,
                Some(c) => {
                    let upn = plan.identity.clone().unwrap_or_default();
                    json!({
                        "Identity": upn,
                        "SipAddress": format!("sip:{upn}"),
                        "ConferenceId": c.conference_id,
                        "ServiceNumber": c.toll_number,
                        "TollFreeServiceNumber": null,
                    })
                }
            }
        }
        Shape::LisLocation => {
            let l: Option<LocationView> = parse(v, "location")?;
            match l {
                None => Value::Null,
                Some(l) => json!({
                    "LocationId": l.location_id,
                    "CivicAddressId": l.civic_address_id,
                    "Description": l.description,
                    "Location": l.description,
                    "CountryOrRegion": l.country,
                    "ValidationStatus": l.validation_status,
                }),
            }
        }
        Shape::CsUser => {
            let u: Option<OnPremUserView> = parse(v, "on-premises user")?;
            let Some(u) = u else {
                // Get-CsUser throws where the cloud cmdlets return nothing.
                return Err(records::cs_user_not_found(
                    plan.identity.as_deref().unwrap_or(""),
                ));
            };
            json!({
                "UserPrincipalName": u.upn,
                "SipAddress": format!("sip:{}", u.sip_address),
                "EnterpriseVoiceEnabled": u.enterprise_voice_enabled,
                "LineURI": tel(&u.line_uri),
                "RegistrarPool": u.registrar_pool,
                "HostingProvider": match u.homed {
                    Homing::OnPremises => "SRV:",
                    Homing::Online => "sipfed.online.lync.com",
                },
            })
        }
    };
    debug_assert!(fields_match(op, &out), "{}: {out}", op.name);
    Ok(out)
}

/// Whether `out` has exactly the operation's fields (each row, for `many`).
pub fn fields_match(op: &HostOp, out: &Value) -> bool {
    let same = |v: &Value| match v {
        Value::Object(m) => {
            m.len() == op.fields.len() && op.fields.iter().all(|f| m.contains_key(*f))
        }
        _ => false,
    };
    match out {
        Value::Null => true,
        Value::Array(rows) => op.many && rows.iter().all(same),
        v => !op.many && same(v),
    }
}
