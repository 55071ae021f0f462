#![allow(clippy::unwrap_used)] // test code: a failed unwrap fails the test

use super::*;

#[test]
fn a_missing_field_takes_its_default() {
    let spec = VmSpec::from_json(r#"{"kernel": "vmlinux"}"#).unwrap();
    assert_eq!(spec, VmSpec::new("vmlinux"));
    assert!(spec.default_cmdline && spec.rng);
    assert_eq!(spec.mem_size, DEFAULT_MEM_SIZE);
    assert_eq!(spec.vcpus, 1);
}

#[test]
fn everything_round_trips_through_json() {
    let mut spec = VmSpec::new("bzImage");
    spec.initrd = Some("initrd.cpio".into());
    spec.cmdline = Some("quiet".into());
    spec.default_cmdline = false;
    spec.cmdline_preset = "emulated-kvm".parse().unwrap();
    spec.mem_size = (512 << 20) + (4 << 10);
    spec.vcpus = 2;
    spec.disks = vec!["path=a.img,readonly=on,id=x".parse().unwrap()];
    spec.nets = vec!["tap=tap0,mac=02:00:00:00:00:09,create=on".parse().unwrap()];
    spec.vsock = Some("socket=/run/v.sock,cid=7".parse().unwrap());
    spec.rng = false;
    spec.async_teardown = true;
    let json = spec.to_json();
    assert!(json.contains("\"no_default_cmdline\": true"), "{json}");
    assert!(json.contains("\"mem\": \"524292K\""), "{json}");
    assert!(json.contains("\"mac\": \"02:00:00:00:00:09\""), "{json}");
    assert!(
        json.contains("\"cmdline_preset\": \"emulated-kvm\""),
        "{json}"
    );
    assert_eq!(VmSpec::from_json(&json).unwrap(), spec);
}

#[test]
fn memory_is_mib_or_text() {
    let m = |j: &str| VmSpec::from_json(j).map(|s| s.mem_size);
    assert_eq!(m(r#"{"mem": 256}"#), Ok(256 << 20));
    assert_eq!(m(r#"{"mem": "1G"}"#), Ok(1 << 30));
    assert!(m(r#"{"mem": "lots"}"#).is_err());
    assert!(m(r#"{"mem": 99999999999999999}"#)
        .unwrap_err()
        .contains("too large"));
}

#[test]
fn unknown_fields_are_named() {
    let err = VmSpec::from_json(r#"{"kernel": "k", "memory": "1G"}"#).unwrap_err();
    assert!(err.contains("unknown field `memory`"), "{err}");
    let err = VmSpec::from_json(r#"{"disks": [{"path": "a", "cache": 1}]}"#).unwrap_err();
    assert!(err.contains("unknown field `cache`"), "{err}");
}

#[test]
fn devices_are_checked_as_on_the_command_line() {
    for (json, says) in [
        (r#"{"disks": [{"path": ""}]}"#, "a disk needs path"),
        (
            r#"{"disks": [{"path": "a", "id": "123456789012345678901"}]}"#,
            "longer than 20 bytes",
        ),
        (r#"{"nets": [{"tap": ""}]}"#, "needs tap=NAME"),
        (
            r#"{"nets": [{"tap": "a/b"}]}"#,
            "not a valid interface name",
        ),
        (
            r#"{"nets": [{"tap": "t", "mac": "01:00:5e:00:00:01"}]}"#,
            "multicast",
        ),
        (
            r#"{"vsock": {"socket": "s", "cid": 2}}"#,
            "cid '2' is not valid",
        ),
        (r#"{"vsock": {"socket": ""}}"#, "needs socket=PATH"),
        (
            r#"{"cmdline_preset": "fast"}"#,
            "unknown command-line preset",
        ),
    ] {
        let err = VmSpec::from_json(json).unwrap_err();
        assert!(err.contains(says), "{json}: {err}");
    }
    // The same rules through the command-line parsers.
    assert!("path=a,id=123456789012345678901"
        .parse::<DiskConfig>()
        .unwrap_err()
        .contains("longer than 20 bytes"));
    assert!("tap=a/b".parse::<NetConfig>().is_err());
    assert!("socket=s,cid=2".parse::<VsockConfig>().is_err());
}
