//! The command line: argument parsing, exit codes, and one module per command group.

mod backup;
mod bench;
mod client;
mod guard;
mod inspect;
mod logging;
mod operate;
mod outages;
mod plan;
mod progress;
mod remote;
mod runpath;
mod runs;
mod scan;
mod schedule;
mod scheduler;
mod serve;
mod simcmd;
mod verify;
mod web;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::spec;
use crate::store::sled_store::SledStore;
use crate::store::StoreError;

/// Exit codes (documented in docs/operations.md).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Runtime error: backend, storage.
    pub const RUNTIME: u8 = 1;
    /// Bad input or usage.
    pub const INPUT: u8 = 2;
    /// The run ended with failed or needs-attention instances.
    pub const FAILED: u8 = 3;
    /// The state directory is locked by another process.
    pub const LOCKED: u8 = 4;
    /// A store in the state directory is damaged (will not open, lost writes,
    /// a record fails its checksum) or a simulated tenant's state is gone.
    pub const DAMAGED: u8 = 5;
    /// Stopped by Ctrl-C / SIGTERM; resumable.
    pub const INTERRUPTED: u8 = 130;
}

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
    fn input(message: impl Into<String>) -> CliError {
        CliError {
            code: exit::INPUT,
            message: message.into(),
            hint: None,
        }
    }
    fn runtime(message: impl Into<String>) -> CliError {
        CliError {
            code: exit::RUNTIME,
            message: message.into(),
            hint: None,
        }
    }
    fn hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }
}

/// How to recover a damaged state directory.
pub(crate) const RESTORE_HINT: &str = "restore the state directory from a `portflow backup` \
     (docs/operations.md, \"When a store fails\")";

/// What to do about a damaged store.
pub(crate) const DAMAGED_HINT: &str = "`portflow verify` shows what is damaged; restore the state \
     directory from a `portflow backup` (docs/operations.md, \"When a store fails\")";

/// What to do about a full disk.
pub(crate) const NO_SPACE_HINT: &str = "everything confirmed before the failure is stored; free \
     space on that file system (keep more than --min-free), then `portflow resume`";

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> CliError {
        let message = e.to_string();
        match e.root() {
            StoreError::Locked(p) => CliError {
                code: exit::LOCKED,
                message,
                hint: Some(format!(
                    "another portflow (a `run`, `resume` or `serve`) is using {}; wait for it, stop it with Ctrl-C, or use another --state",
                    p.display()
                )),
            },
            StoreError::TooNew { .. } => CliError::runtime(message)
                .hint("nothing was changed; use the portflow version that wrote it, or a newer one"),
            StoreError::NoSpace { .. } => CliError::runtime(message).hint(NO_SPACE_HINT),
            root if e.is_damage() => {
                let hint = match root {
                    StoreError::Damaged {
                        path,
                        damage: crate::store::Damage::LostWrites { .. },
                    } => format!(
                        "{DAMAGED_HINT}; to go on from what the store still holds instead, delete {}",
                        path.join(crate::store::sled_store::MARK_FILE).display()
                    ),
                    _ => DAMAGED_HINT.to_string(),
                };
                CliError {
                    code: exit::DAMAGED,
                    message,
                    hint: Some(hint),
                }
            }
            _ => CliError::runtime(message),
        }
    }
}

impl CliError {
    /// A simulated tenant that cannot be used: damaged or gone (exit 5), a
    /// full disk, or another failure.
    pub(crate) fn sim(dir: &Path, e: crate::backend::sim::SimError) -> CliError {
        use crate::backend::sim::SimError;
        if let SimError::Store(inner) = e {
            return inner.into();
        }
        let message = format!("simulated tenant {}: {e}", dir.display());
        if e.is_no_space() {
            CliError::runtime(message).hint(NO_SPACE_HINT)
        } else if matches!(e, SimError::Missing { .. }) || e.is_damage() {
            CliError {
                code: exit::DAMAGED,
                message,
                hint: Some(DAMAGED_HINT.to_string()),
            }
        } else {
            CliError::runtime(message)
        }
    }
}

impl From<crate::backend::sim::TenantNameError> for CliError {
    fn from(e: crate::backend::sim::TenantNameError) -> CliError {
        CliError::input(e.to_string()).hint(format!(
            "a simulated tenant name is {}",
            crate::backend::sim::TENANT_NAME_RULE
        ))
    }
}

impl From<spec::SpecError> for CliError {
    fn from(e: spec::SpecError) -> CliError {
        CliError::input(e.to_string().trim_end().to_string())
    }
}

impl From<crate::engine::executor::EngineError> for CliError {
    fn from(e: crate::engine::executor::EngineError) -> CliError {
        match e {
            crate::engine::executor::EngineError::Store(s) => s.into(),
            other => CliError::runtime(other.to_string()),
        }
    }
}

/// portflow: durable orchestrator for Microsoft Teams Phone migrations.
#[derive(Debug, Parser)]
#[command(name = "portflow", version, about, long_about = None)]
pub struct Cli {
    /// State directory (sled store and simulated tenants).
    #[arg(long, global = true, env = "PORTFLOW_STATE", default_value = "state")]
    pub state: PathBuf,
    /// Machine output: one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Extra directory to look up workflows by name (before ./workflows and the built-in set).
    #[arg(long = "workflows", global = true, env = "PORTFLOW_WORKFLOWS")]
    pub workflow_dirs: Vec<PathBuf>,
    /// Hold subjects before an outage step while the disk holding the state
    /// directory has less free space than this (`256MiB`, `1GiB`; `0` turns it off).
    #[arg(long, global = true, env = "PORTFLOW_MIN_FREE", default_value = "256MiB", value_parser = parse_min_free)]
    pub min_free: u64,
    /// Log format on stderr: text, or json (one object per line, for log shippers).
    #[arg(long, global = true, env = "PORTFLOW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Command.
    #[command(subcommand)]
    pub command: Command,
}

fn parse_min_free(s: &str) -> Result<u64, String> {
    crate::engine::space::parse_size(s)
}

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check workflow and run files; print `file:line:col: message` per problem.
    Validate {
        /// Files to check (workflows or run files).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Validate a run file and preflight every subject read-only against the tenant:
    /// the branch each will take, its steps, every blocker. Changes nothing.
    Plan {
        /// Run file.
        file: PathBuf,
    },
    /// Start a run from a run file and drive it to the end.
    Run {
        /// Run file.
        file: PathBuf,
    },
    /// Continue a run after Ctrl-C, a crash or a reboot (default: every unfinished run).
    Resume {
        /// Run id.
        run: Option<String>,
        /// Close the run's circuit breaker (`stop_after_failures`): accept the
        /// failures so far and let new outage steps start again.
        #[arg(long = "continue")]
        continue_: bool,
        /// Name recorded as the operator who continued.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// List runs, or show one run's per-step counts.
    Status {
        /// Run id.
        run: Option<String>,
    },
    /// Who is out of service now in a run (longest first), then every outage
    /// that ended, at the run's clock.
    Outages {
        /// Run id.
        run: String,
        /// One CSV row per outage (open and ended), with a header.
        #[arg(long)]
        csv: bool,
    },
    /// Show one instance and its full event history.
    Show {
        /// Run id.
        run: String,
        /// Subject (e.g. the user's UPN).
        subject: String,
    },
    /// Approve a gate for a run's instances (then `resume`).
    Approve {
        /// Run id.
        run: String,
        /// Gate step id (default: whichever gate each instance waits at).
        #[arg(long)]
        step: Option<String>,
        /// Only this subject.
        #[arg(long)]
        subject: Option<String>,
        /// Name recorded as the approver.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Send a named signal to an instance (`done` completes a manual task).
    Signal {
        /// Run id.
        run: String,
        /// Subject (e.g. the user's UPN).
        subject: String,
        /// Signal name.
        name: String,
        /// JSON data sent with it (a wait it satisfies sees it as `obs`).
        #[arg(long)]
        data: Option<String>,
        /// Name recorded as the sender.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Stop a run's instances (all, or one subject); with --rollback undo what they did first.
    Cancel {
        /// Run id.
        run: String,
        /// Only this subject.
        #[arg(long)]
        subject: Option<String>,
        /// Run the compensations of the steps done (then `resume`).
        #[arg(long)]
        rollback: bool,
        /// Why (recorded in the history).
        #[arg(long, default_value = "cancelled by the operator")]
        reason: String,
    },
    /// Restart failed, rolled-back, cancelled or needs-attention instances (then `resume`).
    Retry {
        /// Run id.
        run: String,
        /// Only this subject.
        #[arg(long)]
        subject: Option<String>,
        /// Continue from this step (default: where each stopped). Done steps that
        /// are not idempotent are never repeated.
        #[arg(long)]
        from_step: Option<String>,
        /// Name recorded as the operator.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Run the daemon: resume every unfinished run and answer the local API.
    Serve {
        /// Address to listen on (loopback unless --allow-remote).
        #[arg(long, default_value_t = serve::default_listen())]
        listen: std::net::SocketAddr,
        /// Allow a non-loopback listen address.
        #[arg(long)]
        allow_remote: bool,
        /// Schedule file to add (or update) at start.
        #[arg(long)]
        schedules: Option<PathBuf>,
        /// Rehearsal: run the scheduler's clock from this instant (RFC 3339).
        #[arg(long, hide = true)]
        clock_start: Option<String>,
        /// Rehearsal: the scheduler's clock runs this many times faster than real time.
        #[arg(long, hide = true, default_value_t = 1.0)]
        clock_scale: f64,
    },
    /// Copy the state directory into a new directory, consistently, even while
    /// the daemon runs.
    Backup {
        /// Destination directory (must not exist).
        dest: PathBuf,
    },
    /// Check the state directory without changing it: every store opens, every
    /// record decodes and its checksum holds, runs, instances, events and timers
    /// agree. Exit 0 when sound, 3 when something is damaged.
    Verify,
    /// Schedules: when the daemon starts runs and waves.
    Schedule {
        /// What to do.
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// Measure the engine: transitions/s, scale, wave makespan, cost growth.
    Bench {
        /// Which benchmark.
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// The simulated tenant.
    Sim {
        /// What to do.
        #[command(subcommand)]
        command: SimCommand,
    },
}

/// `portflow schedule …`
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Add the schedules of a schedule file (YAML); checks each run file loads.
    Add {
        /// Schedule file.
        file: PathBuf,
        /// Replace schedules of the same name (keeping their history).
        #[arg(long)]
        replace: bool,
    },
    /// List schedules with their next fire time.
    List,
    /// Show a schedule: its next 5 fire times and what its fires did.
    Show {
        /// Schedule name.
        name: String,
    },
    /// Stop a schedule from firing.
    Pause {
        /// Schedule name.
        name: String,
    },
    /// Let a paused schedule fire again (fire times passed while paused are dropped).
    Resume {
        /// Schedule name.
        name: String,
    },
    /// Delete a schedule (its runs stay).
    Rm {
        /// Schedule name.
        name: String,
    },
}

/// `portflow sim …`
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Create a simulated tenant of N users from a seed; optionally export its subjects as CSV.
    Init {
        /// Tenant directory (default: <state>/sim/<name>).
        #[arg(long)]
        name: Option<String>,
        /// Seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Users (at most 100,000).
        #[arg(long, default_value_t = 200,
              value_parser = clap::value_parser!(u32).range(..=i64::from(crate::spec::limits::MAX_USERS)))]
        users: u32,
        /// Which migration the tenant is set up for: direct_routing, calling_plans,
        /// on_premises, operator_connect.
        #[arg(long, default_value = "direct_routing")]
        profile: String,
        /// Write `user,number,location_id` rows here.
        #[arg(long)]
        export: Option<PathBuf>,
    },
    /// Print the simulated tenant's audit log (every action it received).
    Log {
        /// Run id (its tenant) or tenant name.
        tenant: String,
        /// Only this user.
        #[arg(long)]
        user: Option<String>,
    },
    /// Print per-user outages (DR number gone → OC number active).
    Outages {
        /// Run id (its tenant) or tenant name.
        tenant: String,
    },
}

/// Everything commands share.
pub struct App {
    /// Parsed arguments.
    pub state: PathBuf,
    /// JSON output.
    pub json: bool,
    /// Workflow search path.
    pub workflow_dirs: Vec<PathBuf>,
    /// `--min-free`, in bytes (0: no free-space guard).
    pub min_free: u64,
}

impl App {
    fn engine_dir(&self) -> PathBuf {
        self.state.join("engine")
    }

    fn open_store(&self) -> Result<SledStore, CliError> {
        Ok(SledStore::open(&self.engine_dir())?)
    }

    /// Workflow search path: --workflows dirs, then ./workflows.
    fn search_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.workflow_dirs.clone();
        dirs.push(PathBuf::from("workflows"));
        dirs
    }

    /// Directory of the simulated tenant `tenant`; the name is checked first so
    /// that it can never point outside `<state>/sim/`.
    fn sim_dir(&self, tenant: &str) -> Result<PathBuf, CliError> {
        crate::backend::sim::check_tenant_name(tenant)?;
        Ok(self.state.join("sim").join(tenant))
    }
}

/// Print JSON to stdout.
fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into())
    );
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader goes away (`show | head`).
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    sled_panics_are_damage();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::INPUT
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // The daemon reports its runs at info level; other commands print their own output.
    let default_level = match cli.command {
        Command::Serve { .. } => "warn,portflow=info",
        // sled's own error lines repeat what the command's one error line says.
        _ => "warn,sled=off",
    };
    logging::init(cli.log_format, default_level);
    let app = App {
        state: cli.state.clone(),
        json: cli.json,
        workflow_dirs: cli.workflow_dirs.clone(),
        min_free: cli.min_free,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::RUNTIME);
        }
    };
    let result = runtime.block_on(dispatch(&app, cli.command));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", e.message);
            if let Some(h) = e.hint {
                eprintln!("hint: {h}");
            }
            ExitCode::from(e.code)
        }
    }
}

/// sled panics on some damaged pages instead of returning an error. The
/// engine store turns those into errors where it calls sled; any other call
/// (the simulated tenant's store) ends the process here with the damage exit
/// code and one line, not a panic message.
fn sled_panics_are_damage() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let Some(at) = info.location().filter(|l| l.file().contains("sled-")) else {
            return previous(info);
        };
        let file = at.file();
        let short = file.find("sled-").map_or(file, |i| &file[i..]);
        eprintln!(
            "error: a store in the state directory is damaged: sled failed at {short}:{}\nhint: {DAMAGED_HINT}",
            at.line()
        );
        std::process::exit(i32::from(exit::DAMAGED));
    }));
}

async fn dispatch(app: &App, cmd: Command) -> Result<u8, CliError> {
    match cmd {
        Command::Validate { files } => validate(app, &files),
        Command::Plan { file } => plan::plan(app, &file).await,
        Command::Run { file } => runs::run(app, &file).await,
        Command::Resume { run, continue_, by } => {
            runs::resume(app, run.as_deref(), continue_.then_some(by.as_str())).await
        }
        Command::Status { run } => inspect::status(app, run.as_deref()),
        Command::Show { run, subject } => inspect::show(app, &run, &subject),
        Command::Outages { run, csv } => outages::outages(app, &run, csv),
        Command::Approve {
            run,
            step,
            subject,
            by,
        } => {
            let target = operate::Target {
                run: &run,
                subject: subject.as_deref(),
            };
            operate::approve(app, target, step.as_deref(), &by).await
        }
        Command::Signal {
            run,
            subject,
            name,
            data,
            by,
        } => {
            let target = operate::Target {
                run: &run,
                subject: Some(&subject),
            };
            operate::signal(app, target, &name, data.as_deref(), &by).await
        }
        Command::Cancel {
            run,
            subject,
            rollback,
            reason,
        } => {
            let target = operate::Target {
                run: &run,
                subject: subject.as_deref(),
            };
            operate::cancel(app, target, rollback, &reason).await
        }
        Command::Retry {
            run,
            subject,
            from_step,
            by,
        } => {
            let target = operate::Target {
                run: &run,
                subject: subject.as_deref(),
            };
            operate::retry(app, target, from_step.as_deref(), &by).await
        }
        Command::Serve {
            listen,
            allow_remote,
            schedules,
            clock_start,
            clock_scale,
        } => {
            let clock = rehearsal_clock(clock_start.as_deref(), clock_scale)?;
            serve::serve(app, listen, allow_remote, clock, schedules.as_deref()).await
        }
        Command::Schedule { command } => schedule::command(app, command).await,
        Command::Backup { dest } => backup::backup(app, &dest).await,
        Command::Verify => verify::verify(app),
        Command::Sim { command } => simcmd::sim(app, command),
        Command::Bench { command } => bench::bench(app, command).await,
    }
}

/// The scheduler's clock: real time, or a rehearsal clock from `--clock-start`.
fn rehearsal_clock(start: Option<&str>, scale: f64) -> Result<crate::clock::SharedClock, CliError> {
    use crate::clock::{Clock, ScaledClock, SystemClock, Timestamp};
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(CliError::input(format!(
            "--clock-scale must be a positive number, got {scale}"
        )));
    }
    if start.is_none() && scale == 1.0 {
        return Ok(std::sync::Arc::new(SystemClock));
    }
    let now = SystemClock.now();
    let virtual_anchor = match start {
        Some(s) => Timestamp::parse_rfc3339(s).map_err(|e| {
            CliError::input(format!("--clock-start {s:?}: {e}"))
                .hint("write an RFC 3339 instant, e.g. 2026-11-23T21:59:50Z")
        })?,
        None => now,
    };
    Ok(std::sync::Arc::new(ScaledClock {
        real_anchor: now,
        virtual_anchor,
        scale,
    }))
}

fn validate(app: &App, files: &[PathBuf]) -> Result<u8, CliError> {
    let mut problems = Vec::new();
    let mut report = Vec::new();
    for f in files {
        match spec::validate_file(f, &app.search_dirs()) {
            Ok((kind, warnings)) => {
                print_warnings(&warnings);
                report.push(serde_json::json!({
                    "file": f,
                    "kind": format!("{kind:?}"),
                    "ok": true,
                    "warnings": warnings.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                }))
            }
            Err(e) => {
                report.push(serde_json::json!({"file": f, "ok": false, "problems": e.diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>()}));
                problems.push(e.to_string().trim_end().to_string());
            }
        }
    }
    if app.json {
        print_json(&serde_json::Value::Array(report));
    } else if problems.is_empty() {
        for f in files {
            println!("{}: ok", f.display());
        }
    }
    if problems.is_empty() {
        Ok(exit::OK)
    } else {
        Err(CliError::input(problems.join("\n")))
    }
}

/// Spec warnings on stderr, one line each; they never change the exit code.
pub(crate) fn print_warnings(warnings: &[spec::Diagnostic]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// Resolve a path given on the command line relative to the current directory.
fn display(p: &Path) -> String {
    p.display().to_string()
}
