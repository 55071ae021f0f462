//! Where the runtime reports: containerd's shim passes `--log FILE --log-format json`
//! and, when a command fails, shows the `msg` of the last `"level":"error"` line of
//! that file. Every message also goes to stderr (text), unless stderr is the
//! container's own (the VMM process after `create`).

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

/// The log's format (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `time="..." level=error msg="..."`, as runc writes it.
    Text,
    /// One JSON object per line: `{"level","msg","time"}`.
    Json,
}

/// The runtime's log target.
#[derive(Clone, Debug)]
pub struct Log {
    /// The file appended to, if any.
    pub file: Option<PathBuf>,
    /// Its format.
    pub format: LogFormat,
    /// Whether messages also go to stderr.
    pub stderr: bool,
}

impl Log {
    /// Logs `msg` at `level` (`error`, `warning`, `info`).
    pub fn write(&self, level: &str, msg: &str) {
        if self.stderr {
            eprintln!("minivmm-oci: {level}: {msg}");
        }
        let Some(path) = &self.file else { return };
        let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let line = match self.format {
            LogFormat::Json => {
                serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
            }
            LogFormat::Text => format!("time={time:?} level={level} msg={msg:?}"),
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut f) = file {
            // One write per line: the shim reads the file while others append.
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }

    /// Logs an error.
    pub fn error(&self, msg: &str) {
        self.write("error", msg);
    }

    /// Logs a warning.
    pub fn warn(&self, msg: &str) {
        self.write("warning", msg);
    }

    /// The same target without stderr (for the VMM process, whose stderr is the
    /// container's).
    pub fn file_only(&self) -> Self {
        Self {
            stderr: false,
            ..self.clone()
        }
    }
}
