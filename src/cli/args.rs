//! The command line's grammar: global options, commands and their arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::report::zone::Zone;

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
    /// Show times in this IANA time zone (`Europe/Berlin`); default: `TZ`,
    /// else the system's zone. JSON and CSV stay in UTC.
    #[arg(long, global = true, env = "PORTFLOW_TZ", value_parser = parse_zone)]
    pub tz: Option<Zone>,
    /// Show times in UTC (wins over `--tz` and `PORTFLOW_TZ`).
    #[arg(long, global = true)]
    pub utc: bool,
    /// Command.
    #[command(subcommand)]
    pub command: Command,
}

fn parse_zone(s: &str) -> Result<Zone, String> {
    s.parse()
        .map_err(|e: crate::report::zone::UnknownZone| e.to_string())
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(format!(
            "expected INPUT=VALUE (e.g. number=+14255550123), got {s:?}"
        )),
    }
}

fn parse_min_free(s: &str) -> Result<u64, String> {
    crate::engine::space::parse_size(s)
}

/// `--format` of `report` and `plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormatArg {
    /// One JSON document.
    Json,
    /// One row per subject, with a header.
    Csv,
    /// One self-contained HTML page.
    Html,
}

impl From<ReportFormatArg> for crate::report::run_report::Format {
    fn from(f: ReportFormatArg) -> Self {
        use crate::report::run_report::Format;
        match f {
            ReportFormatArg::Json => Format::Json,
            ReportFormatArg::Csv => Format::Csv,
            ReportFormatArg::Html => Format::Html,
        }
    }
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
    /// Check workflow, run and schedule files (a schedule file's run files too);
    /// print `file:line:col: message` per problem.
    Validate {
        /// Files to check (workflows, run files or schedule files, told apart by content).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Validate a run file and preflight every subject read-only against the tenant:
    /// the branch each will take, its steps, every blocker. Changes nothing.
    Plan {
        /// Run file.
        file: PathBuf,
        /// A report instead of the text: csv (one row per subject, ready or
        /// blocked and why) or html (one page; blockers grouped by cause); json
        /// is `--json`'s document. Default: from --out's extension.
        #[arg(long, value_enum)]
        format: Option<ReportFormatArg>,
        /// Write it to FILE (whole or not at all) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Check a run file's backend read-only: sign in, read each read endpoint once,
    /// and say per operation of its workflow whether it can run (exit 0 only then).
    Doctor {
        /// Run file.
        file: PathBuf,
    },
    /// Start a run from a run file and drive it to the end.
    Run {
        /// Run file.
        file: PathBuf,
        /// Address of the local API this run serves while it holds the state
        /// directory (loopback only; default: a free port, named in daemon.json).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
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
        /// Address of the local API served while resuming (as for `run`).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
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
    /// A run's report for the change board (finished or live): per subject its
    /// inputs, state, step, error, times, outage, calls and who acted; a summary
    /// per state, per step and by error cause.
    Report {
        /// Run id (or a unique prefix of it).
        run: String,
        /// json, csv (one row per subject) or html (one self-contained page).
        /// Default: from --out's extension, else json.
        #[arg(long, value_enum)]
        format: Option<ReportFormatArg>,
        /// Write it to FILE (whole or not at all) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
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
        /// Run id (or a unique prefix of it).
        run: String,
        /// Gate step id (default: whichever gate each instance waits at).
        #[arg(long, conflicts_with = "all_waiting")]
        step: Option<String>,
        /// Only this subject.
        #[arg(long, conflicts_with_all = ["subjects", "all_waiting"])]
        subject: Option<String>,
        /// The subjects listed in FILE (one per line, or a CSV's `user` or first
        /// column), each reported.
        #[arg(long, value_name = "FILE", conflicts_with = "all_waiting")]
        subjects: Option<PathBuf>,
        /// Every instance waiting at this approval gate, each reported.
        #[arg(long, value_name = "STEP")]
        all_waiting: Option<String>,
        /// Name recorded as the approver.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Send a named signal to an instance (`done` completes a manual task), or
    /// to many with --subjects or --all-waiting.
    #[command(
        override_usage = "portflow signal [OPTIONS] <RUN> <SUBJECT> <NAME>\n       \
        portflow signal [OPTIONS] <RUN> <NAME> (--subjects <FILE> | --all-waiting <STEP>)"
    )]
    Signal {
        /// Run id (or a unique prefix of it).
        run: String,
        /// The subject (e.g. the user's UPN), left out with --subjects or
        /// --all-waiting; then the signal name.
        #[arg(value_names = ["SUBJECT", "NAME"], num_args = 1..=2, required = true)]
        args: Vec<String>,
        /// JSON data sent with it (a wait it satisfies sees it as `obs`).
        #[arg(long)]
        data: Option<String>,
        /// The subjects listed in FILE (one per line, or a CSV's `user` or first
        /// column), each reported.
        #[arg(long, value_name = "FILE", conflicts_with = "all_waiting")]
        subjects: Option<PathBuf>,
        /// Every instance waiting at this step for the signal, each reported.
        #[arg(long, value_name = "STEP")]
        all_waiting: Option<String>,
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
        /// Name recorded as who cancelled.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
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
        /// Give the subject's input a new value first (repeatable; needs
        /// --subject): checked like the run file's values, recorded in its
        /// history with the old one. An empty value clears an optional input.
        #[arg(long = "set", value_name = "INPUT=VALUE", value_parser = parse_set, requires = "subject")]
        set: Vec<(String, String)>,
        /// Why the inputs are amended (recorded in the history).
        #[arg(long, requires = "set")]
        reason: Option<String>,
        /// Name recorded as the operator.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Run the daemon: resume every unfinished run and answer the local API.
    Serve {
        /// Address to listen on (loopback unless --allow-remote).
        #[arg(long, default_value_t = crate::daemon::default_listen())]
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
        command: super::bench::BenchCommand,
    },
    /// The simulated tenant.
    Sim {
        /// What to do.
        #[command(subcommand)]
        command: SimCommand,
    },
    /// The PowerShell backend's host script.
    Powershell {
        /// What to do.
        #[command(subcommand)]
        command: PowershellCommand,
    },
    // Editor support and shell conventions.
    /// Print the JSON Schema (draft 2020-12) of workflow, run or schedule files,
    /// for editors and CI (the same as docs/schema/<kind>.schema.json).
    Schema {
        /// Which file it describes.
        kind: crate::spec::schema::SchemaKind,
        /// Write it to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the completion script of a shell to stdout (see docs/shell.md).
    Completions {
        /// The shell.
        shell: crate::shell::Shell,
    },
    /// Print portflow's man page, or write portflow.1 and one page per command
    /// (portflow-run.1, portflow-schedule-add.1, …) into a directory.
    Man {
        /// Directory to write the pages into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// `portflow powershell …`
#[derive(Debug, Subcommand)]
pub enum PowershellCommand {
    /// Print the host script this portflow runs (to install on a Windows admin
    /// box for `runner: ssh`), with its SHA-256 on stderr.
    Script {
        /// Write it to this file instead of stdout (exact bytes).
        #[arg(long)]
        out: Option<PathBuf>,
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
    /// Serve a simulated tenant over HTTP as Microsoft Graph and its Entra
    /// token endpoint (loopback only), until SIGTERM or Ctrl-C.
    Serve {
        /// Tenant name (<state>/sim/<name>); seeded from the serve file when new.
        #[arg(long)]
        name: String,
        /// Loopback address to listen on; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Serve file: the app registration, faults, timing (docs/backends.md).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}
