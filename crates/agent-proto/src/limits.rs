//! Hard limits of the protocol. A decoder rejects anything past them before it
//! allocates; an encoder refuses to produce it. Both sides read the same numbers.

/// Bytes before the payload: `u32` little-endian length of the rest, `u8` kind.
pub const HEADER_LEN: usize = 5;

/// Most payload bytes of a data frame (stdin, stdout, stderr, file data).
pub const MAX_DATA_PAYLOAD: usize = 256 * 1024;

/// Most payload bytes of any other (control) frame.
pub const MAX_CONTROL_PAYLOAD: usize = 64 * 1024;

/// Most elements of an exec request's argv.
pub const MAX_ARGS: usize = 256;

/// Most entries of an exec request's environment.
pub const MAX_ENV: usize = 256;

/// Most bytes of one argv element, environment key or environment value.
pub const MAX_ARG_LEN: usize = 32 * 1024;

/// Most bytes of a path (a working directory or a file to read or write).
pub const MAX_PATH_LEN: usize = 4096;

/// Most bytes of an error message.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Most bytes of the agent's version string.
pub const MAX_VERSION_LEN: usize = 64;

/// Largest file a write-file or read-file request may move (1 GiB).
pub const MAX_FILE_SIZE: u64 = 1 << 30;

/// Highest signal number a signal frame or an exit status may carry (Linux's `_NSIG - 1`).
pub const MAX_SIGNAL: i32 = 64;

/// Highest permission bits a write-file request may set (`0o7777`).
pub const MAX_MODE: u32 = 0o7777;

/// Most supplementary groups of an exec request.
pub const MAX_GROUPS: usize = 64;

/// Most mounts of a set-up request.
pub const MAX_MOUNTS: usize = 64;

/// Most bytes of a host name (Linux's `HOST_NAME_MAX`).
pub const MAX_HOSTNAME_LEN: usize = 64;
