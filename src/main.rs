//! The `portflow` binary: everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    portflow::cli::main()
}
