//! `portflow bench …`: run a benchmark and print its table (or JSON).

use std::path::PathBuf;

use clap::Subcommand;

use super::{exit, print_json, App, CliError};
use crate::bench::{self, Report};

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
}

/// Run a benchmark command.
pub async fn bench(app: &App, cmd: BenchCommand) -> Result<u8, CliError> {
    let json = app.json;
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
    }
}
