//! Real Linux guests (the resources/ kernel) on this host's /dev/kvm: boots from ELF
//! vmlinux and bzImage to `Run /init`, an ext4 root on virtio-blk, a virtio-fs root,
//! DHCP over virtio-net. One test binary, so that its boots run side by side (libtest
//! runs a binary's tests on as many threads as the host has CPUs, and cargo runs
//! binaries one after the other): where KVM emulates guest kernel code each boot keeps
//! one host CPU busy for one to three minutes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

#[path = "../common/mod.rs"]
mod common;

mod boot;
mod disk;
mod fs;
mod net;
