//! `drctl`: the operator's CLI. A thin layer over the Lifeboat libraries — parse, call, print —
//! so it works with no controller running, as it must when the controller's cluster is gone.

/// Writes a line to standard error like `eprintln!`, but never panics: a closed or broken
/// stderr (`2>&-`, a terminal that went away mid-restore) must not turn finished work into a
/// panic and exit code 101. Defined before the modules so that all of them see it.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod cli;
mod commands;
mod hint;
mod kube;
mod open;
mod output;
mod progress;

use std::process::ExitCode;

use clap::Parser;

/// One malloc arena for the whole process. glibc gives each busy thread its own arena, and
/// freed pack-sized buffers stay cached in all of them: a restore's RSS reached twice its live
/// memory (260–390 MiB). Forcing such buffers to mmap instead (threshold 1 MiB) bounded RSS
/// but made every chunk and pack buffer a fresh mmap, page faults and zeroing: a fifth of a
/// backup's CPU. One arena keeps both low (1 GiB backup ~120 MiB RSS, restore ~140 MiB); the
/// engine's large allocations are few enough that threads do not queue on its lock.
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: mallopt only sets a glibc tunable; it is called once, before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Exit codes scripts can rely on.
pub mod exit {
    /// The command line is wrong (clap's own errors, a missing key, an option that asks for
    /// nothing, an invalid pattern): nothing was done.
    pub const USAGE: u8 = 2;
    /// The command ran but found problems or could not do everything (check errors, partial
    /// restore); details are printed.
    pub const PARTIAL: u8 = 3;
}

/// Diagnostics on stderr: warnings (a stray object skipped, …) by default, but none of the
/// Kubernetes client's own (drctl reports what failed); more when
/// `RUST_LOG` asks (`RUST_LOG=debug`, `RUST_LOG=lifeboat_backup=trace`, …). Coloured only
/// when stderr is a terminal and `NO_COLOR` is unset or empty (no-color.org), so logs and
/// pipes get plain text.
fn init_logging() {
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let _ = match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(filter) => builder.with_env_filter(filter).try_init(),
        Err(_) => builder
            // kube's client logs every failed request at ERROR; drctl's own error names the
            // failure once (thousands of such lines once buried it).
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn,kube_client=off"))
            .without_time()
            .try_init(),
    };
}

fn main() -> ExitCode {
    tune_allocator();
    lifeboat_rbd::report_aborts("drctl");
    init_logging();
    // kube links rustls with ring and object_store with aws-lc-rs: pick one for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return parse_failed(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            note!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            done = commands::run(cli) => Ok(done),
            signal = interrupted() => Err(signal),
        }
    });
    let done = match outcome {
        Ok(done) => done,
        Err((signal, code)) => {
            // The operation was dropped where it stood (as a kill would stop it; a crash
            // leaves repositories consistent), so its locks' guards started deleting them:
            // let that finish, then exit without waiting for blocking work.
            runtime.block_on(lifeboat_backup::repository::finish_dropped_releases(
                std::time::Duration::from_secs(5),
            ));
            note!("interrupted by {signal}: stopped; locks this command held are released");
            std::process::exit(i32::from(code));
        }
    };
    match done {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            note!("error: {e:#}");
            if let Some(hint) = hint::for_error(&e) {
                note!("hint: {hint}");
            }
            ExitCode::from(error_code(&e))
        }
    }
}

/// Set by a command that stops gracefully on SIGINT/SIGTERM itself (`etcd snapshot --watch`
/// stores its last delta first): [`interrupted`] then leaves those signals to it.
pub static COMMAND_HANDLES_SIGNALS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Resolves when SIGINT (Ctrl-C) or SIGTERM (what Kubernetes sends a pod) arrives, unless the
/// running command handles them itself: the signal's name and the exit code shells use for it
/// (128 + its number).
async fn interrupted() -> (&'static str, u8) {
    use std::sync::atomic::Ordering;
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return std::future::pending().await;
    };
    loop {
        let got = tokio::select! {
            _ = int.recv() => ("SIGINT", 130),
            _ = term.recv() => ("SIGTERM", 143),
        };
        if !COMMAND_HANDLES_SIGNALS.load(Ordering::SeqCst) {
            return got;
        }
    }
}

/// What clap could not turn into a command: `--help` and `--version` (printed through the one
/// stdout writer, so a full disk is exit 1 with a message, not a silent 0), or a usage error
/// (exit 2, clap's message on stderr).
fn parse_failed(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        return match output::write(e.render().to_string().as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                note!("error: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    let _ = e.print();
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(exit::USAGE))
}

/// A usage error found after parsing: exit 2, like clap's own.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// 2 for errors in what the user asked (README: exit codes), 1 for everything else.
fn error_code(e: &anyhow::Error) -> u8 {
    use lifeboat_backup::RepoError;
    let usage = e.chain().any(|cause| {
        cause.is::<UsageError>()
            || matches!(
                cause.downcast_ref::<RepoError>(),
                Some(RepoError::NoKeyGiven { .. } | RepoError::NoRecipients | RepoError::InvalidInclude(_))
            )
            || matches!(
                cause.downcast_ref::<lifeboat_controller::kube_objects::ObjectsError>(),
                Some(lifeboat_controller::kube_objects::ObjectsError::UnknownResource { .. })
            )
    });
    if usage { exit::USAGE } else { 1 }
}
