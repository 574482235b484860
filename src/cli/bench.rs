//! `portflow bench …`: run a benchmark and print its table (or JSON).

use std::path::PathBuf;

use clap::Subcommand;

use super::error::CliError;
use super::print::print_json;
use crate::app::App;
use crate::bench::{self, Report};
use crate::report::exit;

/// `portflow bench …`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Durable transitions per second: group commit vs one flush per transition.
    Transitions {
        /// Instances (group-commit wave).
        #[arg(long, default_value_t = 10_000)]
        instances: u32,
        /// Steps per instance (each one durable transition).
        #[arg(long, default_value_t = 10)]
        steps: u32,
        /// Executor workers.
        #[arg(long, default_value_t = 512)]
        concurrency: usize,
        /// Instances in the naive wave (0 = skip it).
        #[arg(long, default_value_t = 200)]
        naive_instances: u32,
        /// Scratch directory (default: the system temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep the scratch stores.
        #[arg(long)]
        keep: bool,
        /// Tiny sizes, for a smoke test.
        #[arg(long)]
        quick: bool,
    },
    /// Instances in flight waiting on polls: memory, state size, resume after SIGKILL.
    Scale {
        /// Instances in flight.
        #[arg(long, default_value_t = 100_000)]
        instances: u32,
        /// Virtual time between processes (every poll is overdue from 10m on).
        #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
        outage: std::time::Duration,
        /// Executor workers of the resumed process.
        #[arg(long, default_value_t = 20)]
        concurrency: usize,
        /// Scratch directory on the disk to measure (default: the system temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep the state directory.
        #[arg(long)]
        keep: bool,
        /// Tiny sizes, for a smoke test.
        #[arg(long)]
        quick: bool,
    },
    /// Makespan of a DR → OC wave on the simulator's latency model, in virtual time.
    Makespan {
        /// Subjects in the wave.
        #[arg(long, default_value_t = 10_000)]
        subjects: u32,
        /// Throttle limit of the tenant and rate limit of the engine (calls/s).
        #[arg(long, default_value_t = 20)]
        rate: u32,
        /// Executor workers.
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// Simulator seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Scratch directory (default: /dev/shm when present).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep the scratch stores.
        #[arg(long)]
        keep: bool,
        /// Tiny sizes, for a smoke test.
        #[arg(long)]
        quick: bool,
    },
    /// The three benchmarks at several sizes: how cost grows.
    Growth {
        /// Sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        sizes: Vec<u32>,
        /// Benchmarks to leave out (transitions, scale, makespan), comma-separated.
        #[arg(long, value_delimiter = ',')]
        skip: Vec<String>,
        /// Throttle limit of the makespan benchmark (calls/s).
        #[arg(long, default_value_t = 20)]
        rate: u32,
        /// Scratch directory.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Tiny sizes, for a smoke test.
        #[arg(long)]
        quick: bool,
    },
    /// The anchors-bench workload (action, then polls with durable sleeps) in one process.
    Anchor(bench::anchor::AnchorOpts),
    /// The child process of the scale benchmark (not for direct use).
    #[command(hide = true)]
    ScaleChild {
        /// State directory.
        #[arg(long)]
        dir: PathBuf,
        /// Instances.
        #[arg(long)]
        instances: u32,
        /// Executor workers.
        #[arg(long, default_value_t = 20)]
        concurrency: usize,
        /// Create the state instead of resuming it.
        #[arg(long)]
        create: bool,
        /// Virtual time at start (ms since the epoch), when resuming.
        #[arg(long)]
        virtual_now: Option<i64>,
    },
}

/// Run a benchmark command.
pub async fn bench(app: &App, cmd: BenchCommand) -> Result<u8, CliError> {
    let json = app.json;
    if let BenchCommand::ScaleChild {
        dir,
        instances,
        concurrency,
        create,
        virtual_now,
    } = cmd
    {
        let mode = match (create, virtual_now) {
            (true, _) => bench::scale::ChildMode::Create,
            (false, Some(ms)) => bench::scale::ChildMode::Resume {
                virtual_now: crate::clock::Timestamp(ms),
            },
            (false, None) => {
                return Err(CliError::input(
                    "scale-child needs --create or --virtual-now",
                ))
            }
        };
        // The child reports on stdout itself and builds its own runtime.
        let done = tokio::task::spawn_blocking(move || {
            bench::scale::child(&dir, instances, concurrency, mode)
        })
        .await;
        return match done {
            Ok(Ok(())) => Ok(exit::OK),
            Ok(Err(e)) => Err(CliError::runtime(e.to_string())),
            Err(e) => Err(CliError::runtime(e.to_string())),
        };
    }
    // Benchmarks build their own runtimes (a virtual-time one among them), so
    // they run on a thread of their own.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("portflow-bench".into())
        .spawn(move || {
            let _ = tx.send(run(cmd));
        })
        .map_err(|e| CliError::runtime(format!("cannot start the benchmark thread: {e}")))?;
    let report = rx
        .await
        .map_err(|_| CliError::runtime("the benchmark thread stopped"))?
        .map_err(|e| CliError::runtime(e.to_string()))?;
    if json {
        print_json(&report.json);
    } else {
        print!("{}", report.render());
    }
    Ok(exit::OK)
}

fn run(cmd: BenchCommand) -> Result<Report, bench::BenchError> {
    match cmd {
        BenchCommand::Transitions {
            instances,
            steps,
            concurrency,
            naive_instances,
            dir,
            keep,
            quick,
        } => {
            let mut o = bench::transitions::TransitionsOpts {
                instances,
                steps,
                concurrency,
                naive_instances,
                dir,
                keep,
            };
            if quick {
                o.instances = o.instances.min(200);
                o.steps = o.steps.min(3);
                o.naive_instances = o.naive_instances.min(20);
                o.concurrency = o.concurrency.min(64);
            }
            bench::transitions::run(&o)
        }
        BenchCommand::Scale {
            instances,
            outage,
            concurrency,
            dir,
            keep,
            quick,
        } => {
            let o = bench::scale::ScaleOpts {
                instances: if quick { instances.min(300) } else { instances },
                outage,
                concurrency,
                dir,
                keep,
                ..bench::scale::ScaleOpts::default()
            };
            bench::scale::run(&o)
        }
        BenchCommand::Makespan {
            subjects,
            rate,
            concurrency,
            seed,
            dir,
            keep,
            quick,
        } => {
            let o = bench::makespan::MakespanOpts {
                subjects: if quick { subjects.min(100) } else { subjects },
                rate,
                concurrency,
                seed,
                dir,
                keep,
            };
            bench::makespan::run(&o)
        }
        BenchCommand::Growth {
            sizes,
            skip,
            rate,
            dir,
            quick,
        } => {
            let o = bench::growth::GrowthOpts {
                sizes: if quick { vec![50, 200] } else { sizes },
                steps: if quick { 3 } else { 10 },
                rate,
                skip,
                dir,
            };
            bench::growth::run(&o)
        }
        BenchCommand::Anchor(o) => bench::anchor::run(&o),
        BenchCommand::ScaleChild { .. } => {
            Err(bench::BenchError::new("scale-child runs on its own"))
        }
    }
}
