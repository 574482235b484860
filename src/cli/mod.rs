//! The command line: argument parsing, dispatch, exit codes, progress and
//! rendering. What a command does lives in `crate::app`; who does it (this
//! process or the daemon) is chosen by `crate::client`.

mod args;
mod backup;
mod bench;
mod error;
mod inspect;
mod logging;
mod operate;
mod plan;
mod print;
mod progress;
mod runs;
mod schedule;
mod shell;
mod simcmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

pub use self::args::{Cli, Command, LogFormat, ScheduleCommand, SimCommand};
pub use self::error::CliError;
use self::print::{print_json, print_warnings};
use crate::app::App;
pub use crate::report::exit;
use crate::report::zone::Zone;
use crate::spec;

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
        zone: match (cli.utc, cli.tz) {
            (true, _) => Zone::Utc,
            (false, Some(z)) => z,
            (false, None) => Zone::local(),
        },
        zone_chosen: cli.utc || cli.tz.is_some(),
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
            "error: a store in the state directory is damaged: sled failed at {short}:{}\nhint: {}",
            at.line(),
            crate::app::error::DAMAGED_HINT
        );
        std::process::exit(i32::from(exit::DAMAGED));
    }));
}

async fn dispatch(app: &App, cmd: Command) -> Result<u8, CliError> {
    match cmd {
        Command::Validate { files } => validate(app, &files),
        Command::Plan { file, format, out } => {
            plan::plan(app, &file, format.map(Into::into), out.as_deref()).await
        }
        Command::Doctor { file } => plan::doctor(app, &file).await,
        Command::Run { file, listen } => runs::run(app, &file, listen).await,
        Command::Resume {
            run,
            continue_,
            by,
            listen,
        } => {
            runs::resume(
                app,
                run.as_deref(),
                continue_.then_some(by.as_str()),
                listen,
            )
            .await
        }
        Command::Status { run } => inspect::status(app, run.as_deref()).await,
        Command::Show { run, subject } => inspect::show(app, &run, &subject).await,
        Command::Report { run, format, out } => {
            inspect::report(app, &run, format.map(Into::into), out.as_deref()).await
        }
        Command::Outages { run, csv } => inspect::outages(app, &run, csv).await,
        Command::Approve {
            run,
            step,
            subject,
            subjects,
            all_waiting,
            by,
        } => {
            let who = operate::Who::of(subject, subjects, all_waiting);
            operate::approve(app, &run, who, step.as_deref(), &by).await
        }
        Command::Signal {
            run,
            args,
            data,
            subjects,
            all_waiting,
            by,
        } => {
            let (subject, name) =
                operate::signal_args(args, subjects.is_some() || all_waiting.is_some())?;
            let who = operate::Who::of(subject, subjects, all_waiting);
            operate::signal(app, &run, who, &name, data.as_deref(), &by).await
        }
        Command::Cancel {
            run,
            subject,
            rollback,
            reason,
            by,
        } => operate::cancel(app, &run, subject.as_deref(), rollback, &reason, &by).await,
        Command::Retry {
            run,
            subject,
            from_step,
            set,
            reason,
            by,
        } => {
            let amend = operate::Amend { set, reason };
            operate::retry(
                app,
                &run,
                subject.as_deref(),
                from_step.as_deref(),
                amend,
                &by,
            )
            .await
        }
        Command::Serve {
            listen,
            allow_remote,
            schedules,
            clock_start,
            clock_scale,
        } => {
            let clock = rehearsal_clock(clock_start.as_deref(), clock_scale)?;
            crate::daemon::serve(app, listen, allow_remote, clock, schedules.as_deref()).await?;
            Ok(exit::OK)
        }
        Command::Schedule { command } => schedule::command(app, command).await,
        Command::Backup { dest } => backup::backup(app, &dest).await,
        Command::Verify => {
            let (text, code) = crate::app::verify::verify(app)?;
            print!("{text}");
            Ok(code)
        }
        Command::Sim { command } => simcmd::sim(app, command).await,
        Command::Powershell { command } => powershell(command),
        Command::Bench { command } => bench::bench(app, command).await,
        Command::Schema { kind, out } => shell::schema(kind, out.as_deref()),
        Command::Completions { shell } => shell::completions(shell),
        Command::Man { out } => shell::man(out.as_deref()),
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

/// `portflow powershell script`: the exact bytes the hosts must run.
#[cfg(feature = "graph")]
fn powershell(cmd: args::PowershellCommand) -> Result<u8, CliError> {
    use crate::backend::powershell::{script_sha256, HOST_SCRIPT};
    let args::PowershellCommand::Script { out } = cmd;
    match out {
        Some(path) => {
            print::write_out(&path, HOST_SCRIPT.as_bytes())?;
            eprintln!(
                "wrote {} (sha256 {}); copy it byte for byte (no line-ending conversion) to the \
                 path named by the run file's `script:`",
                path.display(),
                script_sha256()
            );
        }
        None => {
            print!("{HOST_SCRIPT}");
            eprintln!("sha256 {}", script_sha256());
        }
    }
    Ok(exit::OK)
}

#[cfg(not(feature = "graph"))]
fn powershell(_cmd: args::PowershellCommand) -> Result<u8, CliError> {
    Err(CliError::from(crate::app::Error::input(
        "this portflow was built without the `graph` feature (the Microsoft backends)",
    )))
}
