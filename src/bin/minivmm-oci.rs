//! `minivmm-oci`: an OCI runtime whose containers each run in a microVM. It speaks
//! runc's command line, as containerd's runc v2 shim (`ctr run --runc-binary`, a
//! Kubernetes RuntimeClass) and Docker (`--add-runtime`) call it; docs/oci.md.
//! The work is in crates/oci; this is the thin command line.

use clap::{Parser, Subcommand, ValueEnum};
use oci::commands::{self, CreateArgs, Globals};
use oci::keeper::{self, KeeperArgs};
use oci::log::{Log, LogFormat};
use oci::state::DEFAULT_ROOT;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "minivmm-oci",
    version,
    about = "An OCI runtime: each container in a minivmm microVM"
)]
struct Cli {
    /// The state directory.
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    root: PathBuf,
    /// Append errors to this file (containerd shows its last error line).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// The log's format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    log_format: Format,
    /// Accepted for runc compatibility; a microVM has no host cgroup to manage.
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility.
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create a container: boot its VM and prepare its process (not started).
    Create {
        /// The bundle directory (config.json and the root file system).
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        /// Write the PID of the container's VMM process here.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// A Unix socket that receives the terminal's master (process.terminal).
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// Accepted for runc compatibility (the guest has no pivot to skip).
        #[arg(long)]
        no_pivot: bool,
        /// Accepted for runc compatibility.
        #[arg(long)]
        no_new_keyring: bool,
        /// The container's ID.
        id: String,
    },
    /// Run a created container's process.
    Start {
        /// The container's ID.
        id: String,
    },
    /// Print a container's state (runtime-spec JSON).
    State {
        /// The container's ID.
        id: String,
    },
    /// Send a signal to a container's process.
    Kill {
        /// Signal every process of the container (the guest has only its own).
        #[arg(long, short)]
        all: bool,
        /// The container's ID.
        id: String,
        /// The signal: a number or a name (TERM, SIGTERM).
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Remove a container's state (a running one only with --force).
    Delete {
        /// Kill a running container first.
        #[arg(long, short)]
        force: bool,
        /// The container's ID.
        id: String,
    },
    /// Print the features this runtime supports (JSON).
    Features,
    /// Install the guest kernel and agent initramfs the runtime boots, next to this
    /// binary (minivmm-oci.d/), with the config file naming them.
    Install {
        /// The guest kernel (ELF vmlinux or bzImage).
        #[arg(long)]
        kernel: PathBuf,
        /// The initramfs whose init starts the guest agent (resources/guest).
        #[arg(long)]
        initrd: PathBuf,
        /// Added to the default guest command line [default: minivmm.action=agent].
        #[arg(long)]
        cmdline: Option<String>,
        /// Install here instead of beside the binary.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The container's VMM process (started by create).
    #[command(hide = true)]
    Keeper {
        #[arg(long)]
        bundle: PathBuf,
        #[arg(long)]
        ready_fd: i32,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        id: String,
    },
}

/// Prints a line on stdout; a closed stdout is not this command's failure.
fn print_out(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = Log {
        file: cli.log.clone(),
        format: match cli.log_format {
            Format::Text => LogFormat::Text,
            Format::Json => LogFormat::Json,
        },
        stderr: true,
    };
    let mut log_args = Vec::new();
    if let Some(l) = &cli.log {
        log_args.extend(["--log".to_string(), l.display().to_string()]);
    }
    if matches!(cli.log_format, Format::Json) {
        log_args.extend(["--log-format".to_string(), "json".to_string()]);
    }
    let result = match cli.command {
        Cmd::Create {
            bundle,
            pid_file,
            console_socket,
            id,
            ..
        } => commands::create(
            &Globals {
                root: &cli.root,
                log_args,
            },
            &CreateArgs {
                id,
                bundle,
                pid_file,
                console_socket,
            },
        ),
        Cmd::Start { id } => commands::start(&cli.root, &id),
        Cmd::State { id } => commands::state(&cli.root, &id).map(|s| print_out(&s)),
        Cmd::Kill { id, signal, .. } => commands::kill(&cli.root, &id, &signal),
        Cmd::Delete { id, force } => commands::delete(&cli.root, &id, force),
        Cmd::Features => {
            print_out(&commands::features());
            Ok(())
        }
        Cmd::Install {
            kernel,
            initrd,
            cmdline,
            dir,
        } => {
            let dir = oci::runtime_config::install_dir(dir.as_deref());
            oci::runtime_config::install(&kernel, &initrd, cmdline.as_deref(), &dir)
                .map(|p| print_out(&format!("installed: {}", p.display())))
        }
        Cmd::Keeper {
            bundle,
            ready_fd,
            console_socket,
            id,
        } => {
            let code = keeper::run(KeeperArgs {
                root: cli.root,
                id,
                bundle,
                ready_fd,
                console_socket,
                log,
            });
            return ExitCode::from(code.clamp(0, 255) as u8);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log.error(&e.to_string());
            ExitCode::FAILURE
        }
    }
}
