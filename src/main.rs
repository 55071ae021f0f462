//! `minivmm`: a thin command-line front end to the `vmm` library.

mod agent_cli;
mod cli;
mod config_file;
mod terminal;

use clap::error::ErrorKind;
use clap::Parser;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;
use vmm::{error_chain, ExitReason, VmBuilder};

/// Descriptor that stops the VM (the handle's stop eventfd), for the signal handler.
static STOP_FD: AtomicI32 = AtomicI32::new(-1);
/// The signal that stopped us, if any.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(num: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    STOP_SIGNAL.store(num, Ordering::SeqCst);
    let fd = STOP_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; the buffer is a live local.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

/// Exit status for a run stopped by signal `sig` (128 + N, as shells report it).
fn stopped_by(sig: i32) -> ExitCode {
    eprintln!("minivmm: stopped by signal {sig}");
    ExitCode::from(128u8.saturating_add(sig as u8))
}

fn main() -> ExitCode {
    let origin = Instant::now();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match args.get(1).and_then(|a| a.to_str()) {
        Some("exec") => return agent_cli::exec(&args[1..]),
        Some("cp") => return agent_cli::cp(&args[1..]),
        _ => {}
    }
    // Handlers first: a signal that arrives while the VM is being built is kept and
    // acted on as soon as the VM's stop descriptor exists (or before it is started).
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        if let Err(e) = vmm_sys_util::signal::register_signal_handler(sig, on_signal) {
            eprintln!("minivmm: warning: cannot handle signal {sig}: {e}");
        }
    }
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line: clap's message without its usage and help hints.
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!(
                "minivmm: {} (see --help)",
                message.join(" ").trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    let effective = match cli.effective() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("minivmm: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.print_config {
        println!("{}", effective.file.to_json());
        return ExitCode::SUCCESS;
    }
    let builder = match &cli.restore {
        Some(dir) => effective.restore_builder(dir, origin),
        None => effective.to_config(origin).map(VmBuilder::from_config),
    };
    let builder = match builder {
        Ok(b) => b,
        Err(e) => {
            eprintln!("minivmm: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    env_logger::Builder::new()
        .filter_level(effective.log_level)
        .format_timestamp_micros()
        .init();

    // The main thread's own filter, compiled now (it reads the filter file) and
    // installed once the VM runs.
    let main_filter = match vmm::SeccompFilters::new(&builder.config().seccomp) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("minivmm: error: {}", error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    // The API socket before the VM: a bad path is reported before anything runs.
    let api_socket = match cli.api_socket.as_deref().map(vmm::api::ApiSocket::bind) {
        None => None,
        Some(Ok(socket)) => Some(socket),
        Some(Err(e)) => {
            eprintln!("minivmm: error: {}", error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    if STOP_SIGNAL.load(Ordering::SeqCst) != 0 {
        return stopped_by(STOP_SIGNAL.load(Ordering::SeqCst));
    }
    let handle = match builder.start() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("minivmm: error: {}", error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let api = match api_socket.map(|s| s.serve(handle.controller())) {
        None => None,
        Some(Ok(server)) => Some(server),
        Some(Err(e)) => {
            eprintln!("minivmm: error: {}", error_chain(&e));
            handle.stop();
            let _ = handle.wait();
            return ExitCode::FAILURE;
        }
    };
    STOP_FD.store(handle.stop_fd(), Ordering::SeqCst);
    if STOP_SIGNAL.load(Ordering::SeqCst) != 0 {
        handle.stop();
    }
    if let Err(e) = main_filter.install(vmm::SeccompThread::Main, "minivmm-main") {
        eprintln!("minivmm: error: {}", error_chain(&e));
        handle.stop();
        let _ = handle.wait();
        return ExitCode::FAILURE;
    }
    let exit = handle.wait();
    STOP_FD.store(-1, Ordering::SeqCst);
    drop(api);
    if effective.boot_timeline || log::log_enabled!(log::Level::Debug) {
        eprint!("{}", exit.timeline);
        eprintln!(
            "guest-memory-touched {:>10} KiB",
            exit.guest_memory_touched >> 10
        );
    }
    match exit.reason {
        r if r.is_guest_request() => {
            log::info!("{r}");
            ExitCode::SUCCESS
        }
        ExitReason::StopRequested => match STOP_SIGNAL.load(Ordering::SeqCst) {
            // No signal: the control API stopped it (a shutdown the guest ignored).
            0 => {
                log::info!("stopped through the control API");
                ExitCode::SUCCESS
            }
            sig => stopped_by(sig),
        },
        r => {
            eprintln!("minivmm: error: {r}");
            ExitCode::FAILURE
        }
    }
}
