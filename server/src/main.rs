//! `nextmark`: parse the command line, set up logging, run.

use clap::Parser;

fn main() -> std::process::ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    cap_malloc_arenas();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NEXTMARK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = nextmark_server::cli::Cli::parse();
    match nextmark_server::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc's malloc gives threads that allocate at once arenas of their own, up to eight per
/// core, and keeps freed memory in each: with the async runtime's threads and the whisper
/// workers that held 30–40 MiB of the live server's resident memory (bench/README.md). glibc
/// reads its cap, `MALLOC_ARENA_MAX`, only when a process starts, so without one in the
/// environment the program runs itself again (same process, `exec`) with one arena per core.
/// A cap set by the operator is kept as it is.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn cap_malloc_arenas() {
    use std::os::unix::process::CommandExt;

    const CAP: &str = "MALLOC_ARENA_MAX";
    if std::env::var_os(CAP).is_some() {
        return;
    }
    let Ok(program) = std::env::current_exe() else {
        return;
    };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let error = std::process::Command::new(program)
        .args(std::env::args_os().skip(1))
        .env(CAP, cores.to_string())
        .exec();
    // `exec` returns only when it failed; the program then runs with glibc's default.
    eprintln!("warning: could not restart with {CAP}={cores}: {error}");
}
