//! `minivmm-agent`: the guest agent's entry point. Parses the command line, sets up
//! PID 1 duties when it is PID 1 (or `--init`), starts the reaper and serves vsock
//! (or a Unix socket with `--unix`).

mod cli;

use minivmm_agent::reaper::Reaper;
use minivmm_agent::{init, logger, serve, ServerConfig, VsockListener};
use std::os::unix::net::UnixListener;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let opts = match cli::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(cli::CliError::Info(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("minivmm-agent: {e}\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    logger::init(opts.log_level);
    // SAFETY: getpid has no memory effects.
    let pid1 = unsafe { libc::getpid() } == 1 || opts.init;
    if pid1 {
        init::mount_api_filesystems();
    }
    init::ensure_stdio();
    // SIGCHLD must not be ignored, or children are reaped by the kernel before the
    // reaper sees their status.
    // SAFETY: resetting a disposition to the default has no memory effects.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    if let Err(e) = Reaper::global() {
        log::error!("{e}");
        return ExitCode::FAILURE;
    }
    let mut config = ServerConfig::default();
    if opts.no_power_off {
        config.power_off = None;
    }
    loop {
        let failure = match &opts.unix {
            Some(path) => {
                let _ = std::fs::remove_file(path);
                match UnixListener::bind(path) {
                    Ok(l) => {
                        log::info!("serving {}", path.display());
                        serve(l, config.clone()).err().map(|e| chain(&e))
                    }
                    Err(e) => Some(format!("binding {}: {e}", path.display())),
                }
            }
            None => match VsockListener::bind(opts.port) {
                Ok(l) => {
                    log::info!("serving vsock port {}", opts.port);
                    serve(l, config.clone()).err().map(|e| chain(&e))
                }
                Err(e) => Some(chain(&e)),
            },
        };
        log::error!("{}", failure.unwrap_or_default());
        if !pid1 {
            return ExitCode::FAILURE;
        }
        // PID 1 must not exit (the kernel would panic): try again.
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// An error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}
