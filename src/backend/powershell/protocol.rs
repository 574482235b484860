//! The line protocol between portflow and its PowerShell host (`host.ps1`).
//!
//! - portflow writes one request per line on the host's stdin: a JSON object,
//!   ASCII only (anything else as `\uXXXX`), so the console's input encoding
//!   cannot change a byte of subject data.
//! - The host writes one reply per line on stdout, prefixed with [`FRAME`].
//!   Every other stdout line (banners, `Write-Host`, module warnings) is noise:
//!   logged at debug, never parsed.
//! - One request at a time per process; a reply whose `id` is not the
//!   request's means the process is out of step and it is restarted.
//!
//! Requests (`type`):
//! - `hello` → `{"protocol": 1, "script_sha256", "ps_version", "ps_edition",
//!   "modules": {"MicrosoftTeams": "7.0.0" | null, "SkypeForBusiness": … }}`
//! - `connect` `{"part": "teams" | "onprem", "auth": {...}}` → `{"connected":
//!   true, "module", "module_version"}`. `auth.kind`: `access_tokens` (with
//!   `tokens: [graph, teams]`, handed over here and nowhere else),
//!   `certificate_thumbprint` (`thumbprint`, `application_id`, `tenant_id`:
//!   a certificate in the Windows host's store), or `windows` (the on-premises
//!   part: the SSH account's own identity; `tokens` may still be given for
//!   `Move-CsUser -AccessTokens`).
//! - `call` `{"op": <host operation>, "args": {<parameter>: value}}` → the
//!   operation's projected fields ([`super::ops::HostOp::fields`]): an object,
//!   a list of objects (`many`), or `null` when the cmdlet returned nothing.
//!
//! Errors: `{"id", "ok": false, "error": {"fqid", "category", "type",
//! "message", "correlation_id"}}`, from the PowerShell error record
//! (`FullyQualifiedErrorId`, `CategoryInfo.Category`, the exception's type
//! name and message, and any correlation / request id found in it).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Marks a reply line: ASCII record separator, `PF1`, a space.
pub const FRAME: &str = "\u{1e}PF1 ";
/// Protocol version the host must report in `hello`.
pub const PROTOCOL: u64 = 1;
/// Longest reply line accepted (a `Get-CsPhoneNumberAssignment` page is
/// ~1 KB a row); a longer one means the stream is not ours.
pub const MAX_LINE: usize = 8 * 1024 * 1024;

/// How the host signs in (`connect.auth`). `Debug` never shows a token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConnectAuth {
    /// `Connect-MicrosoftTeams -AccessTokens @(graph, teams)`: app-only tokens
    /// portflow obtained (Graph first, then Skype and Teams Tenant Admin API).
    AccessTokens {
        /// `[graph, teams]`.
        tokens: Vec<String>,
    },
    /// `Connect-MicrosoftTeams -CertificateThumbprint -ApplicationId -TenantId`
    /// (a Windows host with the certificate in its store).
    CertificateThumbprint {
        /// SHA-1 thumbprint, hex.
        thumbprint: String,
        /// The app's client id.
        application_id: String,
        /// The tenant.
        tenant_id: String,
    },
    /// The Skype for Business Server shell as the SSH account; `tokens`, when
    /// given, are passed to `Move-CsUser -AccessTokens`.
    Windows {
        /// `[graph, teams]`, or empty.
        #[serde(default)]
        tokens: Vec<String>,
    },
}

impl std::fmt::Debug for ConnectAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectAuth::AccessTokens { tokens } => {
                write!(f, "AccessTokens({} tokens, redacted)", tokens.len())
            }
            ConnectAuth::CertificateThumbprint { thumbprint, .. } => {
                write!(f, "CertificateThumbprint({thumbprint})")
            }
            ConnectAuth::Windows { tokens } => {
                write!(f, "Windows({} tokens, redacted)", tokens.len())
            }
        }
    }
}

/// One request. `Debug` never shows a token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Who are you (protocol, script hash, PowerShell and module versions)?
    Hello {
        /// Request id, echoed in the reply.
        id: String,
    },
    /// Import the part's module and sign in (again: disconnects first).
    Connect {
        /// Request id.
        id: String,
        /// `teams` or `onprem`.
        part: String,
        /// How.
        auth: ConnectAuth,
    },
    /// Run one operation of the host's table.
    Call {
        /// Request id.
        id: String,
        /// Host operation name ([`super::ops::HostOp::name`]).
        op: String,
        /// Parameter name → value; only names the operation allows.
        args: Map<String, Value>,
    },
}

impl Request {
    /// The request id.
    pub fn id(&self) -> &str {
        match self {
            Request::Hello { id } | Request::Connect { id, .. } | Request::Call { id, .. } => id,
        }
    }

    /// The line to write (ASCII-only JSON, no newline inside, `\n` at the end).
    pub fn to_line(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or(Value::Null);
        let mut s = ascii_json(&v);
        s.push('\n');
        s
    }
}

/// A PowerShell error record, as the host reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostError {
    /// `FullyQualifiedErrorId`, e.g.
    /// `NotFound,Microsoft.Teams.ConfigAPI.Cmdlets.Generated.Cmdlets.SetCsPhoneNumberAssignment_Set`.
    #[serde(default)]
    pub fqid: String,
    /// `CategoryInfo.Category`, e.g. `ObjectNotFound`, `InvalidOperation`.
    #[serde(default)]
    pub category: String,
    /// The exception's type name.
    #[serde(default, rename = "type")]
    pub exception_type: String,
    /// The exception's message.
    #[serde(default)]
    pub message: String,
    /// A correlation or request id found in the error, if any.
    #[serde(default)]
    pub correlation_id: Option<String>,
}

/// One reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's id.
    pub id: String,
    /// Whether the request succeeded.
    pub ok: bool,
    /// Its result when `ok`.
    #[serde(default)]
    pub result: Value,
    /// Its error when not.
    #[serde(default)]
    pub error: Option<HostError>,
}

impl Reply {
    /// A success (for hosts written in Rust, such as the test host).
    pub fn success(id: &str, result: Value) -> Reply {
        Reply {
            id: id.to_string(),
            ok: true,
            result,
            error: None,
        }
    }

    /// A failure.
    pub fn failure(id: &str, error: HostError) -> Reply {
        Reply {
            id: id.to_string(),
            ok: false,
            result: Value::Null,
            error: Some(error),
        }
    }

    /// The framed line, `\n` included.
    pub fn to_line(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or(Value::Null);
        format!("{FRAME}{}\n", ascii_json(&v))
    }
}

/// What one stdout line is.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// A framed reply.
    Reply(Reply),
    /// Framed, but not a reply: the stream cannot be trusted any more.
    Garbled(String),
    /// Not framed: noise to log.
    Noise,
}

/// Classify one stdout line (without its line ending).
pub fn parse_line(line: &str) -> Line {
    let line = line.trim_end_matches(['\r', '\n']);
    // A BOM or stray bytes before the marker still count as a frame.
    let Some(at) = line.find(FRAME) else {
        return Line::Noise;
    };
    let body = &line[at + FRAME.len()..];
    match serde_json::from_str::<Reply>(body) {
        Ok(r) => Line::Reply(r),
        Err(e) => Line::Garbled(format!("unreadable reply frame: {e}")),
    }
}

/// Serialize `v` as compact JSON with every non-ASCII character escaped.
pub fn ascii_json(v: &Value) -> String {
    let raw = v.to_string();
    if raw.is_ascii() {
        return raw;
    }
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            // Non-ASCII appears only inside strings in serde_json's output.
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{:04x}", u));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_one_ascii_line_and_keep_every_byte() {
        let hostile = "x'; Remove-CsOnlineUser -Identity y; '$(whoami)`\u{2019}é😀\n\"@";
        let mut args = Map::new();
        args.insert("Identity".into(), json!(hostile));
        let r = Request::Call {
            id: "7".into(),
            op: "get_online_user".into(),
            args,
        };
        let line = r.to_line();
        assert!(line.is_ascii(), "{line}");
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with('\n'));
        let back: Request = serde_json::from_str(line.trim_end()).expect("json");
        assert_eq!(back, r);
        let Request::Call { args, .. } = back else {
            panic!("a call")
        };
        assert_eq!(args["Identity"], json!(hostile));
    }

    #[test]
    fn replies_are_framed_and_noise_is_not_a_reply() {
        let ok = Reply::success("3", json!({"TelephoneNumber": "+14255550100"}));
        let line = ok.to_line();
        assert!(line.starts_with(FRAME));
        assert_eq!(parse_line(&line), Line::Reply(ok));
        assert_eq!(
            parse_line("WARNING: The names of some imported commands"),
            Line::Noise
        );
        assert_eq!(parse_line(""), Line::Noise);
        assert!(matches!(
            parse_line(&format!("{FRAME}{{\"id\": 3")),
            Line::Garbled(_)
        ));
        // A BOM before the frame (Windows PowerShell's first line).
        let bom = format!("\u{feff}{}", Reply::success("1", Value::Null).to_line());
        assert!(matches!(parse_line(&bom), Line::Reply(r) if r.id == "1"));
    }

    #[test]
    fn tokens_never_show_in_debug() {
        let r = Request::Connect {
            id: "1".into(),
            part: "teams".into(),
            auth: ConnectAuth::AccessTokens {
                tokens: vec!["eyJhbGciOi.graph".into(), "eyJhbGciOi.teams".into()],
            },
        };
        let d = format!("{r:?}");
        assert!(!d.contains("eyJ"), "{d}");
        assert!(r.to_line().contains("eyJhbGciOi.teams"));
    }
}
