//! Microsoft Graph backend: `backend: {kind: microsoft}` in a run file.
//!
//! - [`auth`]: OAuth2 client credentials (secret or certificate assertion),
//!   the token cache.
//! - [`errors`]: Graph/Entra error bodies → the engine's error classes.
//! - [`odata`]: putting UPNs and numbers into URLs safely.
//! - [`client`]: the request layer (tokens, client-request-ids, errors,
//!   paging, origin checks, a concurrency cap).
//! - [`ops`] and [`tenant`]: [`tenant::GraphTenant`], the `Tenant` contract
//!   over Graph.
//! - [`open`]: building one from the run file's config (the registry calls it).
//!
//! Endpoints: the global cloud by default. GCC High and DoD are refused: the
//! Teams telephone-number APIs are "global service only". Base URL overrides
//! are for tests against a local simulator and accepted only for loopback
//! hosts, where `http://` is allowed.

pub mod auth;
pub mod client;
pub mod errors;
pub mod odata;
pub mod open;
pub mod ops;
pub mod permissions;
pub mod tenant;
#[cfg(test)]
mod tenant_tests;

use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;

/// Global Entra authority.
pub const GLOBAL_LOGIN: &str = "https://login.microsoftonline.com";
/// Global Graph service root (without the version).
pub const GLOBAL_GRAPH: &str = "https://graph.microsoft.com";

/// A Microsoft cloud.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cloud {
    /// The worldwide service (also GCC tenants).
    Global,
    /// US Government L4.
    GccHigh,
    /// US Government L5.
    Dod,
}

impl Cloud {
    /// Parse `global`, `gcc_high` or `dod`.
    pub fn parse(s: &str) -> Result<Cloud, String> {
        match s {
            "global" => Ok(Cloud::Global),
            "gcc_high" => Ok(Cloud::GccHigh),
            "dod" => Ok(Cloud::Dod),
            other => Err(format!("unknown cloud {other:?} (expected global)")),
        }
    }
}

/// Where to get tokens and call Graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// Entra authority root, without a trailing slash.
    pub login: String,
    /// Graph service root, without a trailing slash or version.
    pub graph: String,
}

impl Endpoints {
    /// The endpoints of `cloud`, with optional loopback overrides.
    pub fn new(
        cloud: Cloud,
        login: Option<&str>,
        graph: Option<&str>,
    ) -> Result<Endpoints, String> {
        match cloud {
            Cloud::Global => {}
            Cloud::GccHigh | Cloud::Dod => {
                let name = if cloud == Cloud::Dod {
                    "DoD"
                } else {
                    "GCC High"
                };
                return Err(format!(
                    "the Microsoft Graph backend does not support {name}: Graph's Teams \
                     telephone-number APIs exist only in the global service; use the \
                     PowerShell backend for {name} tenants"
                ));
            }
        }
        Ok(Endpoints {
            login: match login {
                Some(u) => loopback_override("login_url", u)?,
                None => GLOBAL_LOGIN.into(),
            },
            graph: match graph {
                Some(u) => loopback_override("base_url", u)?,
                None => GLOBAL_GRAPH.into(),
            },
        })
    }

    /// `…/{tenant}/oauth2/v2.0/token`; the tenant is a GUID or a domain name.
    pub fn token_url(&self, tenant: &str) -> Result<String, String> {
        let ok = !tenant.is_empty()
            && tenant.len() <= 253
            && tenant
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !tenant.starts_with('.');
        if !ok {
            return Err(format!(
                "tenant_id {tenant:?} is neither a GUID nor a domain name"
            ));
        }
        Ok(format!("{}/{tenant}/oauth2/v2.0/token", self.login))
    }

    /// The app-only scope, `<graph>/.default`.
    pub fn scope(&self) -> String {
        format!("{}/.default", self.graph)
    }

    /// The v1.0 root every call is made under.
    pub fn v1(&self) -> String {
        format!("{}/v1.0", self.graph)
    }
}

/// Accept an override only when its host is loopback (`127.0.0.0/8`, `::1`,
/// `localhost`); `http` is then allowed. No credentials, query or fragment.
fn loopback_override(field: &str, raw: &str) -> Result<String, String> {
    let refuse = |why: &str| Err(format!("graph.{field} {raw:?}: {why}"));
    let Ok(u) = Url::parse(raw) else {
        return refuse("not a URL");
    };
    if !matches!(u.scheme(), "http" | "https") {
        return refuse("must be http:// or https://");
    }
    if !u.username().is_empty() || u.password().is_some() {
        return refuse("must not contain credentials");
    }
    if u.query().is_some() || u.fragment().is_some() {
        return refuse("must not have a query or fragment");
    }
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    if !loopback {
        return refuse(
            "overrides are accepted only for loopback hosts (127.0.0.0/8, ::1, localhost), \
             for testing against `portflow sim serve`",
        );
    }
    Ok(u.as_str().trim_end_matches('/').to_string())
}

/// Install ring as rustls' process-wide crypto provider (idempotent).
pub fn install_crypto_provider() {
    // Err means a provider is already installed (ours or the embedder's).
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP client for one tenant: rustls on ring, timeouts, no redirects
/// (a redirect could carry a token elsewhere). `https_only` unless the
/// endpoints are loopback overrides.
pub fn http_client(endpoints: &Endpoints, timeout: Duration) -> Result<reqwest::Client, String> {
    install_crypto_provider();
    let https_only =
        endpoints.login.starts_with("https://") && endpoints.graph.starts_with("https://");
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .https_only(https_only)
        .user_agent(concat!("portflow/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_is_the_default_and_sovereign_clouds_are_refused() {
        let e = Endpoints::new(Cloud::Global, None, None).expect("global");
        assert_eq!(e.scope(), "https://graph.microsoft.com/.default");
        assert_eq!(e.v1(), "https://graph.microsoft.com/v1.0");
        assert_eq!(
            e.token_url("2f1c0000-0000-4000-8000-000000000000").expect("url"),
            "https://login.microsoftonline.com/2f1c0000-0000-4000-8000-000000000000/oauth2/v2.0/token"
        );
        for (c, name) in [(Cloud::GccHigh, "GCC High"), (Cloud::Dod, "DoD")] {
            let err = Endpoints::new(c, None, None).expect_err("refused");
            assert!(
                err.contains(name) && err.contains("PowerShell backend"),
                "{err}"
            );
        }
        assert_eq!(Cloud::parse("gcc_high"), Ok(Cloud::GccHigh));
        assert!(Cloud::parse("china").is_err());
    }

    #[test]
    fn overrides_only_for_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3:1/",
            "http://[::1]:9000",
            "https://localhost:8443",
            "http://LOCALHOST",
        ] {
            let e = Endpoints::new(Cloud::Global, Some(ok), Some(ok)).expect(ok);
            assert!(!e.graph.ends_with('/'), "{e:?}");
        }
        for bad in [
            "http://graph.microsoft.com",
            "https://10.0.0.1",
            "http://localhost.evil.com",
            "http://127.0.0.1.nip.io",
            "http://[::ffff:8.8.8.8]",
            "http://user:pw@127.0.0.1",
            "http://127.0.0.1/?x=1",
            "ftp://127.0.0.1",
            "not a url",
        ] {
            assert!(
                Endpoints::new(Cloud::Global, None, Some(bad)).is_err(),
                "{bad}"
            );
            assert!(
                Endpoints::new(Cloud::Global, Some(bad), None).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn tenant_ids_cannot_change_the_token_path() {
        let e = Endpoints::new(Cloud::Global, None, None).expect("global");
        assert!(e.token_url("contoso.onmicrosoft.com").is_ok());
        for bad in ["", "a/b", "..", "x?y", "x#y", "a b", "../common"] {
            assert!(e.token_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn builds_a_client_with_ring() {
        let e = Endpoints::new(Cloud::Global, None, None).expect("global");
        http_client(&e, Duration::from_secs(30)).expect("client");
    }
}
