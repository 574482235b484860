//! A command's failure as the user sees it: one line, an optional hint, an
//! exit code. Built from the application's typed error.

use crate::app::Error;
use crate::report::exit;

/// A command failure: one line, an optional hint, an exit code.
#[derive(Debug)]
pub struct CliError {
    /// Exit code.
    pub code: u8,
    /// What went wrong (may be several `file:line:col: …` lines for input errors).
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl CliError {
    /// Bad input or usage.
    pub(super) fn input(message: impl Into<String>) -> CliError {
        CliError {
            code: exit::INPUT,
            message: message.into(),
            hint: None,
        }
    }

    /// A runtime failure.
    pub(super) fn runtime(message: impl Into<String>) -> CliError {
        CliError {
            code: exit::RUNTIME,
            message: message.into(),
            hint: None,
        }
    }

    /// With this hint.
    pub(super) fn hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> CliError {
        CliError {
            code: e.kind().exit_code(),
            message: e.to_string(),
            hint: e.hint_text(),
        }
    }
}

impl From<crate::spec::SpecError> for CliError {
    fn from(e: crate::spec::SpecError) -> CliError {
        Error::from(e).into()
    }
}
