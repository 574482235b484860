//! The `portflow` binary: everything lives in the library's `cli` module.

// glibc's malloc took about a quarter of the CPU of a durable transition
// (perf, `bench transitions`); mimalloc spends much less on the same work.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    portflow::cli::main()
}
