use super::*;
use vmm::Preset;

fn parse(args: &[&str]) -> Cli {
    let mut all = vec!["minivmm"];
    all.extend_from_slice(args);
    Cli::try_parse_from(all).unwrap()
}

fn config(args: &[&str]) -> VmConfig {
    parse(args)
        .effective()
        .unwrap()
        .to_config(Instant::now())
        .unwrap()
}

#[test]
fn defaults() {
    let c = config(&["--kernel", "k"]);
    assert_eq!(c.spec.mem_size, 128 << 20);
    assert_eq!(c.spec.vcpus, 1);
    assert!(c.spec.default_cmdline);
    assert_eq!(c.spec.kvm_path, PathBuf::from("/dev/kvm"));
    let e = parse(&["--kernel", "k"]).effective().unwrap();
    assert_eq!(e.log_level, log::LevelFilter::Warn);
    assert!(!e.boot_timeline);
}

#[test]
fn options_map_to_config() {
    let c = config(&[
        "--kernel",
        "k",
        "--initrd",
        "i",
        "--mem",
        "1G",
        "--cpus",
        "2",
        "--cmdline",
        "quiet",
        "--no-default-cmdline",
        "--cmdline-preset",
        "emulated-kvm",
        "--console-log",
        "out.txt",
        "--disk",
        "path=d.img,readonly=on",
        "--net",
        "tap=t0,mac=02:00:00:00:00:07",
    ]);
    assert_eq!(c.spec.mem_size, 1 << 30);
    assert_eq!(c.spec.vcpus, 2);
    assert_eq!(c.spec.cmdline.as_deref(), Some("quiet"));
    assert!(!c.spec.default_cmdline);
    assert_eq!(
        c.spec.cmdline_preset,
        PresetChoice::Use(Preset::EmulatedKvm)
    );
    assert!(
        matches!(c.console_output, ConsoleOutput::File(ref p) if p == &PathBuf::from("out.txt"))
    );
    assert!(c.spec.disks[0].read_only);
    assert_eq!(c.spec.nets[0].mac, Some([2, 0, 0, 0, 0, 7]));
}

#[test]
fn bad_values_are_rejected() {
    for args in [
        &["--kernel", "k", "--mem", "lots"][..],
        &["--kernel", "k", "--cmdline-preset", "x"],
        &["--kernel", "k", "--cpus", "-1"],
        &["--kernel", "k", "--log-level", "loud"],
    ] {
        let mut all = vec!["minivmm"];
        all.extend_from_slice(args);
        assert!(Cli::try_parse_from(all).is_err(), "{args:?}");
    }
    let err = parse(&[])
        .effective()
        .unwrap()
        .to_config(Instant::now())
        .err();
    assert!(err.unwrap().contains("no kernel"));
}

#[test]
fn every_option_round_trips_through_a_config_file() {
    let args = [
        "--kernel",
        "k",
        "--initrd",
        "i",
        "--mem",
        "65536K",
        "--cpus",
        "3",
        "--cmdline",
        "a=1 b",
        "--no-default-cmdline",
        "--cmdline-preset",
        "emulated-kvm",
        "--console-log",
        "c.log",
        "--disk",
        "path=d.img,readonly=on,id=serial-1",
        "--disk",
        "path=e.img",
        "--net",
        "tap=t0,mac=02:00:00:00:00:07,create=on",
        "--boot-timeline",
        "--log-level",
        "debug",
        "--kvm-device",
        "/dev/kvm2",
    ];
    let file = parse(&args).merged().unwrap();
    let json = file.to_json();
    let back = FileConfig::parse(&json).unwrap();
    assert_eq!(back, file, "{json}");
    let dir = std::env::temp_dir().join(format!("minivmm-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vm.json");
    std::fs::write(&path, &json).unwrap();
    let from_file = parse(&["--config", path.to_str().unwrap()])
        .effective()
        .unwrap();
    let from_flags = parse(&args).effective().unwrap();
    assert_eq!(from_file.file, from_flags.file);
    assert_eq!(from_file.log_level, log::LevelFilter::Debug);
    assert!(from_file.boot_timeline);
    let a = from_file.to_config(Instant::now()).unwrap();
    let b = from_flags.to_config(Instant::now()).unwrap();
    assert_eq!(
        (a.spec.mem_size, a.spec.vcpus, &a.spec.disks, &a.spec.nets),
        (b.spec.mem_size, b.spec.vcpus, &b.spec.disks, &b.spec.nets)
    );
    assert_eq!(
        (
            &a.spec.kernel,
            &a.spec.initrd,
            &a.spec.cmdline,
            &a.spec.kvm_path
        ),
        (
            &b.spec.kernel,
            &b.spec.initrd,
            &b.spec.cmdline,
            &b.spec.kvm_path
        )
    );
    assert_eq!(a.spec.mem_size, 64 << 20);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn flags_override_the_file() {
    let dir = std::env::temp_dir().join(format!("minivmm-cli-o-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vm.json");
    std::fs::write(
        &path,
        r#"{"kernel": "file-k", "mem": 256, "cpus": 2, "disks": [{"path": "f.img"}]}"#,
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let c = config(&["--config", p, "--cpus", "4", "--disk", "path=cli.img"]);
    assert_eq!(c.spec.kernel, PathBuf::from("file-k"));
    assert_eq!(c.spec.mem_size, 256 << 20);
    assert_eq!(c.spec.vcpus, 4);
    assert_eq!(c.spec.disks.len(), 1);
    assert_eq!(c.spec.disks[0].path, PathBuf::from("cli.img"));
    let c = config(&["--config", p, "--kernel", "cli-k"]);
    assert_eq!(c.spec.kernel, PathBuf::from("cli-k"));
    assert_eq!(c.spec.disks[0].path, PathBuf::from("f.img"));

    std::fs::write(&path, r#"{"kernel": "k", "vcpus": 2}"#).unwrap();
    let err = parse(&["--config", p]).merged().unwrap_err();
    assert!(err.contains("unknown field `vcpus`"), "{err}");
    assert!(err.contains("vm.json"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn preset_defaults_to_auto_and_none_turns_it_off() {
    assert_eq!(
        config(&["--kernel", "k"]).spec.cmdline_preset,
        PresetChoice::Auto
    );
    let off = config(&["--kernel", "k", "--cmdline-preset", "none"]);
    assert_eq!(off.spec.cmdline_preset, PresetChoice::Off);
    let auto = config(&["--kernel", "k", "--cmdline-preset", "auto"]);
    assert_eq!(auto.spec.cmdline_preset, PresetChoice::Auto);
}

#[test]
fn vsock_and_rng() {
    let c = config(&["--kernel", "k"]);
    assert!(c.spec.rng);
    assert!(c.spec.vsock.is_none());
    let c = config(&[
        "--kernel",
        "k",
        "--vsock",
        "cid=9,socket=/tmp/v.sock",
        "--rng",
        "off",
    ]);
    assert!(!c.spec.rng);
    assert_eq!(
        c.spec.vsock,
        Some(VsockConfig {
            cid: 9,
            socket: "/tmp/v.sock".into()
        })
    );
    assert!(
        Cli::try_parse_from(["minivmm", "--kernel", "k", "--vsock", "cid=2,socket=a"]).is_err()
    );
    // The config file says the same.
    let e = parse(&["--kernel", "k", "--vsock", "socket=/tmp/v.sock"])
        .effective()
        .unwrap();
    let json = e.file.to_json();
    assert!(json.contains("\"vsock\""), "{json}");
    let back = FileConfig::parse(&json).unwrap();
    assert_eq!(back.spec.vsock, Some(VsockConfig::new("/tmp/v.sock")));
    let err = FileConfig::parse(r#"{"vsock": {"socket": "s", "cid": 1}}"#).unwrap_err();
    assert!(err.contains("cid '1' is not valid"), "{err}");
}
