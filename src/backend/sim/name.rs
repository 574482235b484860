//! Names of simulated tenants. A tenant lives in `<state>/sim/<name>`, so a name
//! must stay one plain path component: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`
//! without `..` (run ids, the default per-run names, fit).

/// Longest name, in characters.
pub const MAX_TENANT_NAME: usize = 64;

/// What the rule allows, for hints.
pub const TENANT_NAME_RULE: &str =
    "up to 64 letters, digits, `.`, `_` and `-`, starting with a letter or digit, without `..`";

/// Why a simulated tenant name was refused. The name is quoted `{:?}`, so
/// control characters in it are escaped wherever the message goes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TenantNameError {
    /// The name is empty.
    #[error("a simulated tenant name cannot be empty")]
    Empty,
    /// Longer than [`MAX_TENANT_NAME`].
    #[error("simulated tenant name {0:?}… is longer than 64 characters")]
    TooLong(String),
    /// Starts with something other than a letter or digit (`.`, `-`, `/`).
    #[error("simulated tenant name {0:?} must start with a letter or digit")]
    BadStart(String),
    /// Holds a character outside the set.
    #[error("simulated tenant name {name:?} contains {ch:?}: only letters, digits, `.`, `_` and `-` are allowed")]
    BadChar {
        /// The name.
        name: String,
        /// The first character refused.
        ch: char,
    },
    /// Holds `..`.
    #[error("simulated tenant name {0:?} contains `..`")]
    DotDot(String),
}

/// Check `name` against the rule (see the module documentation).
pub fn check_tenant_name(name: &str) -> Result<(), TenantNameError> {
    let Some(first) = name.chars().next() else {
        return Err(TenantNameError::Empty);
    };
    if name.chars().count() > MAX_TENANT_NAME {
        return Err(TenantNameError::TooLong(
            name.chars().take(MAX_TENANT_NAME).collect(),
        ));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(TenantNameError::BadStart(name.to_string()));
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(TenantNameError::BadChar {
            name: name.to_string(),
            ch,
        });
    }
    if name.contains("..") {
        return Err(TenantNameError::DotDot(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_and_run_ids_pass() {
        for ok in [
            "waves",
            "seed-42",
            "20261123-120236-ee7d",
            "a",
            "A.b_c-9",
            &"x".repeat(64),
        ] {
            assert_eq!(check_tenant_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn paths_and_odd_characters_are_refused() {
        assert_eq!(check_tenant_name(""), Err(TenantNameError::Empty));
        for bad in ["/", "/etc", ".", "..", ".hidden", "-x", "_x"] {
            assert!(
                matches!(check_tenant_name(bad), Err(TenantNameError::BadStart(_))),
                "{bad}"
            );
        }
        for bad in ["a/b", "a\\b", "a b", "a\nb", "aé", "a\0"] {
            assert!(
                matches!(check_tenant_name(bad), Err(TenantNameError::BadChar { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(
            check_tenant_name("a..b"),
            Err(TenantNameError::DotDot("a..b".into()))
        );
        assert!(matches!(
            check_tenant_name(&"x".repeat(65)),
            Err(TenantNameError::TooLong(_))
        ));
    }

    #[test]
    fn messages_escape_control_characters() {
        let e = check_tenant_name("a\nb").unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains("a\\nb"), "{e}");
    }
}
