//! The agent's command line (hand-parsed: the binary stays small).

use agent_proto::DEFAULT_PORT;
use log::LevelFilter;
use std::path::PathBuf;

/// Usage text.
pub const USAGE: &str =
    "usage: minivmm-agent [--port N] [--unix PATH] [--init] [--no-power-off] [--log-level LEVEL]

  --port N           vsock port to listen on (any CID; default 52)
  --unix PATH        listen on a Unix socket instead of vsock (tests on the host)
  --init             act as PID 1 (mount /proc, /sys, /dev, /dev/pts, /tmp) even when
                     not PID 1; implied when the agent is PID 1
  --no-power-off     refuse power-off requests
  --log-level LEVEL  off, error, warn, info (default), debug or trace";

/// The parsed options.
#[derive(Debug)]
pub struct Options {
    /// The vsock port.
    pub port: u32,
    /// A Unix socket path to serve instead of vsock.
    pub unix: Option<PathBuf>,
    /// Act as PID 1.
    pub init: bool,
    /// Refuse power-off requests.
    pub no_power_off: bool,
    /// Log level.
    pub log_level: LevelFilter,
}

/// The command line was wrong.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An option this agent does not know.
    #[error("unknown option {0}")]
    Unknown(String),
    /// An option's value is missing.
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    /// An option's value does not parse.
    #[error("invalid value {value:?} for {option}")]
    Invalid {
        /// The option.
        option: &'static str,
        /// The value.
        value: String,
    },
    /// `--help` or `--version`: print this and exit 0.
    #[error("{0}")]
    Info(String),
}

/// Parses the arguments after the program name.
pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, CliError> {
    let mut o = Options {
        port: DEFAULT_PORT,
        unix: None,
        init: false,
        no_power_off: false,
        log_level: LevelFilter::Info,
    };
    while let Some(arg) = args.next() {
        let mut value = |option: &'static str| args.next().ok_or(CliError::MissingValue(option));
        match arg.as_str() {
            "--port" => {
                let v = value("--port")?;
                o.port = v.parse().map_err(|_| CliError::Invalid {
                    option: "--port",
                    value: v,
                })?;
            }
            "--unix" => o.unix = Some(PathBuf::from(value("--unix")?)),
            "--init" => o.init = true,
            "--no-power-off" => o.no_power_off = true,
            "--log-level" => {
                let v = value("--log-level")?;
                o.log_level = v.parse().map_err(|_| CliError::Invalid {
                    option: "--log-level",
                    value: v,
                })?;
            }
            "--help" | "-h" => return Err(CliError::Info(USAGE.into())),
            "--version" | "-V" => {
                return Err(CliError::Info(format!(
                    "minivmm-agent {} (protocol {})",
                    env!("CARGO_PKG_VERSION"),
                    agent_proto::PROTOCOL_VERSION
                )))
            }
            _ => return Err(CliError::Unknown(arg)),
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Options, CliError> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn defaults_and_options() {
        let o = p("").unwrap();
        assert_eq!(o.port, 52);
        assert!(o.unix.is_none() && !o.init && !o.no_power_off);
        let o = p("--port 1024 --unix /tmp/s --init --no-power-off --log-level debug").unwrap();
        assert_eq!(o.port, 1024);
        assert_eq!(o.unix.unwrap(), PathBuf::from("/tmp/s"));
        assert!(o.init && o.no_power_off);
        assert_eq!(o.log_level, LevelFilter::Debug);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(p("--port"), Err(CliError::MissingValue("--port"))));
        assert!(matches!(p("--port x"), Err(CliError::Invalid { .. })));
        assert!(matches!(p("--bogus"), Err(CliError::Unknown(_))));
        assert!(matches!(p("--help"), Err(CliError::Info(_))));
    }
}
