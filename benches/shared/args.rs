//! The benches' options: `--name VALUE` pairs after `cargo bench --bench NAME --`.
#![allow(dead_code)] // shared by several benches; each uses part

/// The value after `--name`, if given.
pub fn value(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The number after `--name`, or `default`.
pub fn number(name: &str, default: usize) -> usize {
    value(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// True if `--name` is given.
pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}
