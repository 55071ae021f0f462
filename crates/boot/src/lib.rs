//! Loading what a guest boots from: the kernel image (format detected from the file),
//! the initrd, and the kernel command line with its defaults and presets.

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod cmdline;
pub mod initrd;
#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "aarch64")]
pub use crate::aarch64::{check_kernel, load_kernel, KernelFormat, LoadedKernel};
#[cfg(target_arch = "x86_64")]
pub use crate::x86_64::{check_kernel, load_kernel, load_kernel_from, KernelFormat, LoadedKernel};

use std::fs::File;
use std::path::{Path, PathBuf};

/// Opens a file the guest boots from; returns it with its length. Empty is an error.
pub(crate) fn open_nonempty(path: &Path) -> Result<(File, u64), BootError> {
    let file = File::open(path).map_err(|e| BootError::Open(path.into(), e))?;
    let len = file
        .metadata()
        .map_err(|e| BootError::Open(path.into(), e))?
        .len();
    if len == 0 {
        return Err(BootError::Empty(path.into()));
    }
    Ok((file, len))
}

/// Errors loading a kernel, an initrd or building the command line.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The file could not be opened or read.
    #[error("cannot read {p}", p = .0.display())]
    Open(PathBuf, #[source] std::io::Error),
    /// The file is empty.
    #[error("{p} is empty", p = .0.display())]
    Empty(PathBuf),
    /// The kernel is in no format this architecture boots.
    #[error("{p} is not a kernel minivmm can boot: {1}", p = .0.display())]
    UnknownFormat(PathBuf, String),
    /// The kernel file is shorter than its own header says.
    #[error("{p} is truncated: its header needs {1} bytes, the file has {2}", p = .0.display())]
    Truncated(PathBuf, u64, u64),
    /// An ELF kernel for another machine or class.
    #[error("{p} is an ELF file for {1}, not for this host", p = .0.display())]
    WrongMachine(PathBuf, String),
    /// linux-loader rejected the image.
    #[error("cannot load kernel {p}: {1}", p = .0.display())]
    Loader(PathBuf, linux_loader::loader::Error),
    /// The kernel needs more memory than the guest has.
    #[error("kernel {p} needs guest memory up to {1:#x}, but the guest has RAM up to {2:#x}", p = .0.display())]
    KernelTooBig(PathBuf, u64, u64),
    /// The kernel's entry point is not inside the image it loaded.
    #[error("kernel {p} has its entry point {1:#x} outside its loaded image ({2:#x}..{3:#x})", p = .0.display())]
    EntryOutside(PathBuf, u64, u64, u64),
    /// The initrd does not fit between the kernel and the top of low memory.
    #[error("initrd {p} ({1} bytes) does not fit in guest memory ({2} bytes free above the kernel)", p = .0.display())]
    InitrdTooBig(PathBuf, u64, u64),
    /// Copying the initrd into guest memory failed.
    #[error("cannot copy initrd {p} into guest memory", p = .0.display())]
    InitrdCopy(PathBuf),
    /// The command line is not acceptable.
    #[error("kernel command line: {0}")]
    Cmdline(String),
    /// The command line could not be written to guest memory.
    #[error("cannot write the kernel command line to guest memory")]
    CmdlineWrite,
}
