//! The Graph application permissions each automated operation needs, and
//! `doctor`'s check of them: one read of every read endpoint, and the
//! token's `roles` claim for the writes (a write cannot be tried read-only).
//!
//! Names are Microsoft's least-privileged ones first; any permission of a
//! [`Need`] admits its request (Graph's "any of" lists).

use serde_json::Value;

use super::client::{entity, GraphClient, LogCtx};
use super::odata;
use crate::backend::{BackendError, ErrorKind, OperationKind};

/// One request an operation makes, and the permissions that admit it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    /// What the request is, for people.
    pub request: &'static str,
    /// Any one of these admits it (least privileged first).
    pub any_of: &'static [&'static str],
}

const USERS_READ: Need = Need {
    request: "GET /users/{upn}",
    any_of: &["User.Read.All", "User.ReadWrite.All", "Directory.Read.All"],
};
const USER_CONFIG_READ: Need = Need {
    request: "GET /admin/teams/userConfigurations/{id}",
    any_of: &["TeamsUserConfiguration.Read.All"],
};
const SKUS_READ: Need = Need {
    request: "GET /subscribedSkus",
    any_of: &[
        "LicenseAssignment.Read.All",
        "Organization.Read.All",
        "Directory.Read.All",
    ],
};
const NUMBERS_READ: Need = Need {
    request: "GET /admin/teams/telephoneNumberManagement/numberAssignments",
    any_of: &[
        "TeamsTelephoneNumber.Read.All",
        "TeamsTelephoneNumber.ReadWrite.All",
    ],
};
const NUMBERS_WRITE: Need = Need {
    request: "POST /admin/teams/telephoneNumberManagement/numberAssignments/…",
    any_of: &["TeamsTelephoneNumber.ReadWrite.All"],
};
const LICENCE_WRITE: Need = Need {
    request: "POST /users/{id}/assignLicense",
    any_of: &[
        "LicenseAssignment.ReadWrite.All",
        "User.ReadWrite.All",
        "Directory.ReadWrite.All",
    ],
};
const POLICY_WRITE: Need = Need {
    request: "POST /admin/teams/policy/userAssignments/assign",
    any_of: &["TeamsPolicyUserAssign.ReadWrite.All"],
};

/// The requests `kind` makes on Graph, with their permissions (empty: not a
/// Graph operation).
pub fn needs(kind: OperationKind) -> &'static [Need] {
    use OperationKind as K;
    match kind {
        K::GetUser => &[USERS_READ, USER_CONFIG_READ, SKUS_READ, NUMBERS_READ],
        K::GetNumber => &[NUMBERS_READ],
        // Assigning needs the user's object id; the others address the number.
        K::AssignNumber => &[USERS_READ, NUMBERS_WRITE],
        K::RemoveNumber | K::SetNumberLocation => &[NUMBERS_WRITE],
        K::RemoveLicence => &[USERS_READ, SKUS_READ, LICENCE_WRITE],
        K::GrantVoiceRoutingPolicy => &[USERS_READ, POLICY_WRITE],
        _ => &[],
    }
}

/// What is known about one [`Need`] after the checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Granted {
    /// A read with it succeeded, or the token's roles hold one of its permissions.
    Yes,
    /// Refused (403), or the token's roles hold none of its permissions.
    No,
    /// Not checked, with why (a read failed otherwise, no roles claim).
    Unknown(String),
}

/// The result of [`check`]: per need, what is known.
#[derive(Clone, Debug, Default)]
pub struct Checked {
    /// The token's `roles`, when it is a JWT that has them.
    pub roles: Option<Vec<String>>,
    /// Reads made, by need: `Ok` or the error.
    pub reads: Vec<(Need, Result<(), BackendError>)>,
    /// Why the policy API refuses voice routing policies in this tenant, if
    /// it does (then `grant_voice_routing_policy` needs PowerShell).
    pub policy_type_refused: Option<String>,
}

impl Checked {
    /// What is known about `need`.
    pub fn granted(&self, need: &Need) -> Granted {
        if let Some((_, r)) = self.reads.iter().find(|(n, _)| n == need) {
            match r {
                Ok(()) => return Granted::Yes,
                Err(e) if is_denied(e) => return Granted::No,
                Err(_) => {}
            }
        }
        match &self.roles {
            Some(roles) if need.any_of.iter().any(|p| roles.iter().any(|r| r == p)) => Granted::Yes,
            Some(_) => Granted::No,
            None => Granted::Unknown(match self.reads.iter().find(|(n, _)| n == need) {
                Some((_, Err(e))) => format!("the read failed: {e}"),
                _ => "the token does not list its permissions (no `roles` claim)".into(),
            }),
        }
    }
}

/// A 403 (or an auth-class refusal of a read with a valid token).
fn is_denied(e: &BackendError) -> bool {
    e.kind == ErrorKind::Auth
        && (e.message.contains("403")
            || e.message.contains("nsufficient")
            || e.message.contains("Authorization_RequestDenied")
            || e.message.contains("Forbidden"))
}

/// Get a token (its `roles` are read, never the token printed), then read
/// each read endpoint once: the user `upn` (and their Teams configuration),
/// the tenant's SKUs, and the number `e164`.
pub async fn check(
    client: &GraphClient,
    upn: Option<&str>,
    e164: Option<&str>,
) -> Result<Checked, BackendError> {
    let token = client.token().await?;
    let mut out = Checked {
        roles: token.roles(),
        reads: Vec::new(),
        policy_type_refused: None,
    };
    let log = LogCtx::default();
    if let Some(upn) = upn {
        let path = format!(
            "{}{}",
            odata::user_path(upn),
            odata::query(&[("$select", "id")])
        );
        let user = client.get(&path, log).await;
        let id = user.as_ref().ok().and_then(|r| {
            entity(&r.body)
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        out.reads.push((USERS_READ, user.map(|_| ())));
        if let Some(id) = id {
            let path = format!(
                "/admin/teams/userConfigurations/{}",
                odata::path_segment(&id)
            );
            let r = client.get(&path, log).await.map(|_| ());
            out.reads.push((USER_CONFIG_READ, r));
        }
    }
    let r = client.get("/subscribedSkus", log).await.map(|_| ());
    out.reads.push((SKUS_READ, r));
    let number = e164.unwrap_or("+10000000000");
    let r = client
        .get(&odata::number_assignment_query(number), log)
        .await
        .map(|_| ());
    out.reads.push((NUMBERS_READ, r));
    // The one read of the policy API: does it take voice routing policies?
    let path = format!(
        "/admin/teams/policy/getPolicyId(type='{}',name={})",
        super::ops::OVRP,
        odata::path_segment(&odata::literal("Global"))
    );
    match client.get(&path, log).await {
        Ok(_) => out.reads.push((POLICY_WRITE, Ok(()))),
        Err(e) if is_policy_type_refused(&e) => out.policy_type_refused = Some(e.message),
        Err(e) => out.reads.push((POLICY_WRITE, Err(e))),
    }
    Ok(out)
}

/// A 400 saying the policy API does not take this policy type.
pub fn is_policy_type_refused(e: &BackendError) -> bool {
    let m = e.message.to_ascii_lowercase();
    matches!(e.kind, ErrorKind::Fatal | ErrorKind::Precondition)
        && m.contains("policy type")
        && (m.contains("not supported") || m.contains("is not valid") || m.contains("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use reqwest::header::HeaderMap;

    fn answer(status: u16, code: &str, message: &str) -> BackendError {
        let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
        super::super::errors::classify(status, &HeaderMap::new(), body.as_bytes(), Timestamp(0))
    }

    #[test]
    fn a_refused_policy_type_is_told_from_a_missing_permission() {
        let refused = answer(
            400,
            "BadRequest",
            "Policy type 'OnlineVoiceRoutingPolicy' is not supported.",
        );
        assert!(is_policy_type_refused(&refused), "{refused}");
        let forbidden = answer(
            403,
            "Forbidden",
            "Insufficient permission(s) for the request. API requires any of the following \
             permission(s): TeamsPolicyUserAssign.ReadWrite.All.",
        );
        assert!(!is_policy_type_refused(&forbidden), "{forbidden}");
        assert!(is_denied(&forbidden), "{forbidden}");
        let throttled = answer(429, "TooManyRequests", "policy type whatever not supported");
        assert!(!is_policy_type_refused(&throttled));
    }

    #[test]
    fn what_is_granted_comes_from_reads_then_roles() {
        let c = Checked {
            roles: Some(vec!["TeamsTelephoneNumber.ReadWrite.All".into()]),
            reads: vec![(USERS_READ, Ok(()))],
            policy_type_refused: None,
        };
        assert_eq!(c.granted(&USERS_READ), Granted::Yes);
        assert_eq!(c.granted(&NUMBERS_WRITE), Granted::Yes);
        assert_eq!(
            c.granted(&NUMBERS_READ),
            Granted::Yes,
            "ReadWrite admits reads"
        );
        assert_eq!(c.granted(&POLICY_WRITE), Granted::No);
        let opaque = Checked {
            roles: None,
            reads: Vec::new(),
            policy_type_refused: None,
        };
        assert!(matches!(opaque.granted(&POLICY_WRITE), Granted::Unknown(_)));
        assert_eq!(needs(OperationKind::RemoveNumber), &[NUMBERS_WRITE]);
        assert!(needs(OperationKind::MoveUser).is_empty());
    }
}
