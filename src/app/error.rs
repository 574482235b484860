//! The application's one error type. The CLI turns it into an exit code and
//! the daemon into an HTTP status, both through [`Error::kind`], so a failure
//! is classified once.

use std::path::PathBuf;

use crate::backend::sim::{SimError, TenantNameError};
use crate::engine::executor::EngineError;
use crate::spec::SpecError;
use crate::store::{Damage, StoreError};

/// How to recover a damaged state directory.
pub const RESTORE_HINT: &str = "restore the state directory from a `portflow backup` \
     (docs/operations.md, \"When a store fails\")";

/// What to do about a damaged store.
pub const DAMAGED_HINT: &str = "`portflow verify` shows what is damaged; restore the state \
     directory from a `portflow backup` (docs/operations.md, \"When a store fails\")";

/// What to do about a full disk.
pub const NO_SPACE_HINT: &str = "everything confirmed before the failure is stored; free \
     space on that file system (keep more than --min-free), then `portflow resume`";

/// Runs an ambiguous run id prefix lists at most.
pub const MAX_CANDIDATES: usize = 10;

fn more_runs(total: usize, shown: usize) -> String {
    if total > shown {
        format!(" and {} more", total - shown)
    } else {
        String::new()
    }
}

/// A failure of an application operation, with its cause kept as the source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No stored run has this id.
    #[error("no run {0:?} in this state directory")]
    RunNotFound(String),
    /// A run id prefix that more than one stored run starts with.
    #[error("run id prefix {prefix:?} matches {total} runs: {}{}", .candidates.join(", "), more_runs(*.total, .candidates.len()))]
    AmbiguousRun {
        /// What was given.
        prefix: String,
        /// The first runs it matches (at most [`MAX_CANDIDATES`]).
        candidates: Vec<String>,
        /// How many runs it matches.
        total: usize,
    },
    /// The run has no such subject.
    #[error("run {run} has no subject {subject:?}")]
    SubjectNotFound {
        /// Run id.
        run: String,
        /// The subject asked for.
        subject: String,
    },
    /// No stored schedule has this name.
    #[error("no schedule {0:?}")]
    ScheduleNotFound(String),
    /// An API verb that does not exist.
    #[error("unknown action {verb:?}: {expected}")]
    UnknownAction {
        /// What was asked.
        verb: String,
        /// The verbs there are.
        expected: &'static str,
    },
    /// An operator input applied to no addressed instance.
    #[error(
        "nothing {verb}: none of the {unchanged} addressed instance(s) of run {run} is in a state where this applies"
    )]
    NothingApplies {
        /// Past tense of the verb (`approved`).
        verb: &'static str,
        /// Run id.
        run: String,
        /// Instances addressed.
        unchanged: usize,
    },
    /// A workflow, run or schedule file does not load.
    #[error("{}", .0.to_string().trim_end())]
    Spec(#[from] SpecError),
    /// A path the daemon will not read as a run file.
    #[error(transparent)]
    RunPath(#[from] super::runpath::RunPathError),
    /// A simulated tenant name that could leave `<state>/sim/`.
    #[error(transparent)]
    TenantName(#[from] TenantNameError),
    /// The engine store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A run's tenant failed (today: the simulated tenant in `dir`).
    #[error("simulated tenant {}: {source}", dir.display())]
    Backend {
        /// The tenant's directory.
        dir: PathBuf,
        /// Cause.
        #[source]
        source: SimError,
    },
    /// The executor failed for another reason than its store.
    #[error(transparent)]
    Engine(EngineError),
    /// `daemon.json` names a daemon that does not answer.
    #[error("the daemon at {addr} does not answer: {source}")]
    Unreachable {
        /// Its address.
        addr: String,
        /// The file that named it.
        daemon_file: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The daemon refused a request.
    #[error("{message}")]
    Remote {
        /// HTTP status.
        status: u16,
        /// Its error text.
        message: String,
        /// Its hint.
        hint: Option<String>,
    },
    /// A foreground `run`/`resume` holds the state directory and serves its API,
    /// but drives only its own run: it starts no other.
    #[error("the state directory is held by a foreground `portflow run`/`resume` (pid {pid}), which drives only run {}; it does not {what}", .running.as_deref().unwrap_or("(none now)"))]
    Foreground {
        /// What was asked (`start a run`, `drive run X`).
        what: String,
        /// The run it drives now.
        running: Option<String>,
        /// Its process id.
        pid: u32,
    },
    /// Other bad input.
    #[error("{message}")]
    Input {
        /// What is wrong.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// Other runtime failures.
    #[error("{message}")]
    Runtime {
        /// What went wrong.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// Another error with a hint of the caller's instead of its own.
    #[error("{source}")]
    Hinted {
        /// The error.
        #[source]
        source: Box<Error>,
        /// What to do.
        hint: String,
    },
    /// State that is damaged or gone (a tenant a run used).
    #[error("{message}")]
    Damaged {
        /// What is damaged.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
}

/// The class of an [`Error`]: what the CLI's exit code and the daemon's HTTP
/// status are made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Something named does not exist (HTTP 404, exit 2).
    NotFound,
    /// Bad input (HTTP 400, exit 2).
    Input,
    /// Another process holds the state directory (exit 4).
    Locked,
    /// A store is damaged or a tenant is gone (exit 5).
    Damaged,
    /// Anything else (HTTP 500, exit 1).
    Runtime,
}

impl Kind {
    /// The CLI's exit code for it.
    pub fn exit_code(self) -> u8 {
        use crate::report::exit;
        match self {
            Kind::NotFound | Kind::Input => exit::INPUT,
            Kind::Locked => exit::LOCKED,
            Kind::Damaged => exit::DAMAGED,
            Kind::Runtime => exit::RUNTIME,
        }
    }
}

/// Results of application operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Bad input.
    pub fn input(message: impl Into<String>) -> Error {
        Error::Input {
            message: message.into(),
            hint: None,
        }
    }

    /// A runtime failure.
    pub fn runtime(message: impl Into<String>) -> Error {
        Error::Runtime {
            message: message.into(),
            hint: None,
        }
    }

    /// The same error with this hint.
    pub fn hint(mut self, text: impl Into<String>) -> Error {
        match &mut self {
            Error::Input { hint, .. }
            | Error::Runtime { hint, .. }
            | Error::Damaged { hint, .. } => {
                *hint = Some(text.into());
                self
            }
            _ => Error::Hinted {
                source: Box::new(self),
                hint: text.into(),
            },
        }
    }

    /// A simulated tenant's failure; its store's errors are store errors.
    pub fn backend(dir: &std::path::Path, e: SimError) -> Error {
        match e {
            SimError::Store(inner) => Error::Store(inner),
            source => Error::Backend {
                dir: dir.to_path_buf(),
                source,
            },
        }
    }

    /// Its class.
    pub fn kind(&self) -> Kind {
        match self {
            Error::RunNotFound(_)
            | Error::SubjectNotFound { .. }
            | Error::ScheduleNotFound(_)
            | Error::UnknownAction { .. } => Kind::NotFound,
            Error::NothingApplies { .. }
            | Error::AmbiguousRun { .. }
            | Error::Spec(_)
            | Error::RunPath(_)
            | Error::TenantName(_)
            | Error::Input { .. } => Kind::Input,
            Error::Store(e) => match e.root() {
                StoreError::Locked(_) => Kind::Locked,
                _ if e.is_damage() => Kind::Damaged,
                _ => Kind::Runtime,
            },
            Error::Backend { source, .. } => {
                if matches!(source, SimError::Missing { .. }) || source.is_damage() {
                    Kind::Damaged
                } else {
                    Kind::Runtime
                }
            }
            Error::Remote { status: 404, .. } => Kind::NotFound,
            Error::Remote { status: 400, .. } => Kind::Input,
            // 409: the state directory's holder will not do it (a foreground run).
            Error::Remote { status: 409, .. } | Error::Foreground { .. } => Kind::Locked,
            Error::Damaged { .. } => Kind::Damaged,
            Error::Hinted { source, .. } => source.kind(),
            Error::Engine(_)
            | Error::Unreachable { .. }
            | Error::Remote { .. }
            | Error::Runtime { .. } => Kind::Runtime,
        }
    }

    /// What to do about it, when there is something to say.
    pub fn hint_text(&self) -> Option<String> {
        match self {
            Error::RunNotFound(_) => Some(
                "`portflow status` lists the runs; check --state / PORTFLOW_STATE".to_string(),
            ),
            Error::AmbiguousRun { .. } => Some(
                "give more characters of the run id; `portflow status` lists the runs".to_string(),
            ),
            Error::SubjectNotFound { run, .. } => Some(format!("`portflow status {run}` shows the run")),
            Error::ScheduleNotFound(_) => {
                Some("`portflow schedule list` lists the schedules".to_string())
            }
            Error::NothingApplies { run, .. } => Some(format!(
                "`portflow status {run}` and `portflow show {run} <subject>` show where each instance is"
            )),
            Error::TenantName(_) => Some(format!(
                "a simulated tenant name is {}",
                crate::backend::sim::TENANT_NAME_RULE
            )),
            Error::RunPath(super::runpath::RunPathError::Problems { hint, .. }) => hint.clone(),
            Error::RunPath(_) => Some(
                "pass the absolute path of a run file (.yaml or .yml); docs/operations.md says which paths the API reads"
                    .to_string(),
            ),
            Error::Store(e) => store_hint(e),
            Error::Backend { source, .. } => {
                if source.is_no_space() {
                    Some(NO_SPACE_HINT.to_string())
                } else if self.kind() == Kind::Damaged {
                    Some(DAMAGED_HINT.to_string())
                } else {
                    None
                }
            }
            Error::Unreachable { daemon_file, .. } => Some(format!(
                "if no `portflow serve` runs, remove the stale {}",
                daemon_file.display()
            )),
            Error::Foreground { .. } => Some(
                "wait for it to end (it ends by itself once only people's inputs are left), or stop it with Ctrl-C \
                 and use `portflow serve` to drive several runs at once"
                    .to_string(),
            ),
            Error::Remote { status: 401, .. } => {
                Some("the token in daemon.json does not match the running daemon".to_string())
            }
            Error::Remote { hint, .. }
            | Error::Input { hint, .. }
            | Error::Runtime { hint, .. }
            | Error::Damaged { hint, .. } => hint.clone(),
            Error::Hinted { hint, .. } => Some(hint.clone()),
            Error::UnknownAction { .. } | Error::Spec(_) | Error::Engine(_) => None,
        }
    }
}

fn store_hint(e: &StoreError) -> Option<String> {
    match e.root() {
        StoreError::Locked(p) => Some(format!(
            "another portflow (a `run`, `resume` or `serve`) is using {}; wait for it, stop it with Ctrl-C, or use another --state",
            p.display()
        )),
        StoreError::TooNew { .. } => Some(
            "nothing was changed; use the portflow version that wrote it, or a newer one".to_string(),
        ),
        StoreError::NoSpace { .. } => Some(NO_SPACE_HINT.to_string()),
        StoreError::Damaged {
            path,
            damage: Damage::LostWrites { .. },
        } => Some(format!(
            "{DAMAGED_HINT}; to go on from what the store still holds instead, delete {}",
            path.join(crate::store::sled_store::MARK_FILE).display()
        )),
        _ if e.is_damage() => Some(DAMAGED_HINT.to_string()),
        _ => None,
    }
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Error {
        match e {
            EngineError::Store(s) => Error::Store(s),
            other => Error::Engine(other),
        }
    }
}
