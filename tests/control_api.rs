//! The control API (`minivmm --api-socket`) with the test guest on this host's KVM:
//! every endpoint, each answer checked against docs/api/openapi.json; bad JSON,
//! unknown fields, wrong paths and methods; requests during a snapshot; the socket's
//! mode; bad socket paths.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test, as clippy.toml allows in unit tests

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One answer.
struct Answer {
    status: u16,
    head: String,
    body: Option<Value>,
}

/// Reads one response (head, then Content-Length bytes) from `s`.
fn read_answer(s: &mut UnixStream) -> Answer {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "connection closed mid-head");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status = head[9..12].parse().unwrap();
    let len: usize = match head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
    {
        Some(n) => n.trim().parse().unwrap(),
        None => {
            // Only a 204 goes without: it has no body.
            assert_eq!(status, 204, "no Content-Length in {head}");
            0
        }
    };
    if status == 204 {
        assert!(!head.contains("Content-Length"), "{head}");
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    let body = (len > 0).then(|| serde_json::from_slice(&body).expect("JSON body"));
    Answer { status, head, body }
}

fn send(s: &mut UnixStream, method: &str, path: &str, body: &str, extra: &str) {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
}

/// The API as documented: every answer is checked against the OpenAPI document.
struct Api {
    socket: PathBuf,
    doc: Value,
}

impl Api {
    fn new(socket: &Path) -> Self {
        let text = std::fs::read_to_string(repo().join("docs/api/openapi.json")).unwrap();
        Self {
            socket: socket.into(),
            doc: serde_json::from_str(&text).unwrap(),
        }
    }

    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s
    }

    /// One request on a connection of its own; the answer checked against the doc.
    fn call(&self, method: &str, path: &str, body: &str) -> Answer {
        let mut s = self.connect();
        send(&mut s, method, path, body, "Connection: close\r\n");
        let a = read_answer(&mut s);
        self.check(method, path, &a);
        a
    }

    /// The status must be documented for this operation (or be a generic error of
    /// the server's), and the body must match its schema.
    fn check(&self, method: &str, path: &str, a: &Answer) {
        let op = &self.doc["paths"][path][method.to_lowercase()];
        let schema = if op.is_null() {
            // Not an operation: only the generic errors (404 path, 405 method).
            assert!(matches!(a.status, 404 | 405), "{method} {path}: {}", a.head);
            self.resolve(&serde_json::json!({"$ref": "#/components/schemas/Error"}))
        } else {
            let mut resp = &op["responses"][a.status.to_string()];
            assert!(
                !resp.is_null(),
                "{method} {path}: status {} not in the document ({:?})",
                a.status,
                a.body
            );
            if let Some(r) = resp.get("$ref") {
                resp = self.pointer(r.as_str().unwrap());
            }
            match resp["content"]["application/json"].get("schema") {
                Some(s) => self.resolve(s),
                None => {
                    assert!(
                        a.body.is_none(),
                        "{method} {path}: unexpected body {:?}",
                        a.body
                    );
                    return;
                }
            }
        };
        let body = a
            .body
            .as_ref()
            .unwrap_or_else(|| panic!("{method} {path}: no body"));
        if let Err(e) = self.validate(&schema, body, "$") {
            panic!("{method} {path} ({}): {e}\n{body}", a.status);
        }
    }

    fn pointer(&self, r: &str) -> &Value {
        let p = r.strip_prefix('#').unwrap();
        self.doc
            .pointer(p)
            .unwrap_or_else(|| panic!("dangling $ref {r}"))
    }

    fn resolve(&self, schema: &Value) -> Value {
        match schema.get("$ref") {
            Some(r) => self.resolve(&self.pointer(r.as_str().unwrap()).clone()),
            None => schema.clone(),
        }
    }

    /// The subset of JSON Schema the document uses: type, enum, required,
    /// properties, additionalProperties (false or a schema), items, nullable.
    fn validate(&self, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema);
        if v.is_null() && schema["nullable"] == true {
            return Ok(());
        }
        let ty = schema["type"].as_str().unwrap_or("");
        let ok = match ty {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_u64() || v.is_i64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "" => true,
            other => return Err(format!("{at}: schema type {other} unknown to the checker")),
        };
        if !ok {
            return Err(format!("{at}: {v} is not {ty}"));
        }
        if let Some(values) = schema["enum"].as_array() {
            if !values.contains(v) {
                return Err(format!("{at}: {v} not one of {values:?}"));
            }
        }
        if let Some(items) = schema.get("items") {
            for (i, item) in v.as_array().unwrap().iter().enumerate() {
                self.validate(items, item, &format!("{at}[{i}]"))?;
            }
        }
        if let Some(obj) = v.as_object().filter(|_| ty == "object") {
            for r in schema["required"].as_array().into_iter().flatten() {
                if !obj.contains_key(r.as_str().unwrap()) {
                    return Err(format!("{at}: required field {r} missing"));
                }
            }
            let props = &schema["properties"];
            for (k, value) in obj {
                let here = format!("{at}.{k}");
                match (props.get(k), schema.get("additionalProperties")) {
                    (Some(p), _) => self.validate(p, value, &here)?,
                    (None, Some(Value::Bool(false))) => {
                        return Err(format!("{here}: not in the document"))
                    }
                    (None, Some(extra)) if extra.is_object() => {
                        self.validate(extra, value, &here)?
                    }
                    (None, _) => {}
                }
            }
        }
        Ok(())
    }
}

/// minivmm with the test guest in `mode` and the API at `dir/api.sock`.
fn start(dir: &Path, mem: &str, cmdline: &str, extra: &[&str]) -> (Child, PathBuf) {
    let socket = dir.join("api.sock");
    let guest = test_guest();
    let mut args = vec![
        "--kernel",
        guest.to_str().unwrap(),
        "--mem",
        mem,
        "--cmdline",
        cmdline,
        "--api-socket",
        socket.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let child = Command::new(MINIVMM)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the API socket", Duration::from_secs(10), || {
        UnixStream::connect(&socket).is_ok()
    });
    (child, socket)
}

fn counter(m: &Value, pointer: &str) -> u64 {
    m.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} in {m}"))
}

fn error_text(a: &Answer) -> String {
    a.body.as_ref().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn every_endpoint_answers_as_documented() {
    if !kvm_available("control API endpoints") {
        return;
    }
    let dir = scratch("control-api");
    let image = dir.join("disk.img");
    std::fs::write(&image, vec![0u8; 64 * 512]).unwrap();
    let disk = format!("path={}", image.display());
    let (mut child, socket) = start(&dir, "64M", "guest.test=blk-stream", &["--disk", &disk]);
    let api = Api::new(&socket);

    // The document and the server name the same operations.
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in api.doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    let mut served: Vec<(String, String)> = vmm::api::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);

    // The socket: ours, 0600.
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // SAFETY: geteuid has no preconditions.
    assert_eq!(meta.uid(), unsafe { libc::geteuid() });

    let status = api.call("GET", "/v1/vm", "");
    assert_eq!(status.status, 200);
    let body = status.body.unwrap();
    assert_eq!(body["state"], "running");
    assert_eq!(body["spec"]["mem"], 64);
    assert_eq!(body["spec"]["disks"][0]["path"], image.to_str().unwrap());
    assert!(
        body["boot_timeline_ms"]["threads_started"]
            .as_f64()
            .unwrap()
            > 0.0
    );

    // Metrics move while the guest runs.
    wait_until("block reads", Duration::from_secs(20), || {
        let m = api.call("GET", "/v1/metrics", "").body.unwrap();
        counter(&m, "/devices/block0/reads") > 10 && counter(&m, "/devices/block0/writes") > 10
    });
    let m = api.call("GET", "/v1/metrics", "").body.unwrap();
    assert!(counter(&m, "/vcpus/0/exits/io_out") > 0, "{m}");
    assert!(counter(&m, "/vcpus/0/exits/mmio_write") > 0, "{m}");
    assert_eq!(counter(&m, "/memory/guest_bytes"), 64 << 20);
    assert!(counter(&m, "/memory/guest_resident_bytes") > 0);
    assert!(counter(&m, "/memory/process_rss_bytes") > 0);
    assert!(m["devices"]["rng"].is_object(), "{m}");

    // Paused: nothing moves.
    assert_eq!(api.call("PUT", "/v1/vm/pause", "").status, 204);
    assert_eq!(
        api.call("GET", "/v1/vm", "").body.unwrap()["state"],
        "paused"
    );
    let before = api.call("GET", "/v1/metrics", "").body.unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let after = api.call("GET", "/v1/metrics", "").body.unwrap();
    for p in ["/vcpus/0/exits/io_out", "/devices/block0/writes"] {
        assert_eq!(
            counter(&before, p),
            counter(&after, p),
            "{p} moved while paused"
        );
    }

    // Snapshots: bad bodies first, then one that works.
    let snap = dir.join("snap");
    for (body, needle) in [
        ("{", "bad JSON body"),
        ("{}", "missing field `dir`"),
        (r#"{"dir": 5}"#, "invalid type"),
        (
            &format!(r#"{{"dir": "{}", "compress": true}}"#, snap.display()),
            "unknown field `compress`",
        ),
    ] {
        let a = api.call("PUT", "/v1/vm/snapshot", body);
        assert_eq!(a.status, 400, "{body}");
        assert!(
            error_text(&a).contains(needle),
            "{body}: {}",
            error_text(&a)
        );
    }
    assert!(!snap.exists(), "a refused request wrote something");
    let body = format!(r#"{{"dir": "{}"}}"#, snap.display());
    assert_eq!(api.call("PUT", "/v1/vm/snapshot", &body).status, 204);
    for f in ["state", "memory"] {
        let mode = std::fs::metadata(snap.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    assert_eq!(
        vmm::snapshot::read_state(&snap).unwrap().spec.mem_size,
        64 << 20
    );

    let a = api.call("PUT", "/v1/vm/resume", r#"{"now": true}"#);
    assert_eq!(a.status, 400);
    assert!(error_text(&a).contains("unknown field `now`"));
    assert_eq!(api.call("PUT", "/v1/vm/resume", "{}").status, 204);
    assert_eq!(
        api.call("GET", "/v1/vm", "").body.unwrap()["state"],
        "running"
    );
    wait_until("block writes after resume", Duration::from_secs(10), || {
        let m = api.call("GET", "/v1/metrics", "").body.unwrap();
        counter(&m, "/devices/block0/writes") > counter(&after, "/devices/block0/writes")
    });
    // A running VM is not snapshotted.
    let a = api.call("PUT", "/v1/vm/snapshot", &body);
    assert_eq!(a.status, 409);
    assert!(error_text(&a).contains("pause"), "{}", error_text(&a));

    // Paths and methods it does not serve.
    assert_eq!(api.call("GET", "/v1/nothing", "").status, 404);
    assert_eq!(api.call("GET", "/v1/vm/", "").status, 404);
    let a = api.call("PUT", "/v1/vm", "");
    assert_eq!(a.status, 405);
    assert!(a.head.contains("Allow: GET\r\n"), "{}", a.head);
    assert_eq!(api.call("GET", "/v1/vm/pause", "").status, 405);

    // Framing: a body too large, a chunked one, garbage; each answered and closed.
    let mut s = api.connect();
    send(&mut s, "PUT", "/v1/vm/pause", &" ".repeat(65 * 1024), "");
    assert_eq!(read_answer(&mut s).status, 413);
    let mut s = api.connect();
    s.write_all(b"PUT /v1/vm/pause HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut s).status, 411);
    let mut s = api.connect();
    s.write_all(b"\x00\x01 nonsense\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut s).status, 400);
    // Keep-alive: several requests on one connection.
    let mut s = api.connect();
    for _ in 0..3 {
        send(&mut s, "GET", "/v1/vm", "", "");
        let a = read_answer(&mut s);
        api.check("GET", "/v1/vm", &a);
        assert_eq!(a.status, 200);
    }
    drop(s);

    // Shutdown: this guest never enabled the ACPI power button, so the VM is stopped
    // at once; minivmm exits 0 and removes the socket.
    let a = api.call("PUT", "/v1/vm/shutdown", r#"{"grace_ms": 9999999}"#);
    assert_eq!(a.status, 400);
    assert_eq!(
        api.call("PUT", "/v1/vm/shutdown", r#"{"grace_ms": 300}"#)
            .status,
        202
    );
    let (code, _) = wait_exit(&mut child, Duration::from_secs(10));
    assert!(code.success(), "{code:?}");
    assert!(!socket.exists(), "the socket outlived minivmm");
}

/// Waits for `child` to exit; its status, and how long that took.
fn wait_exit(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, t.elapsed());
        }
        assert!(t.elapsed() < limit, "minivmm still runs after {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn shutdown_waits_for_a_listening_guest_and_stops_one_that_ignores_it() {
    if !kvm_available("control API shutdown") {
        return;
    }
    for (cmdline, grace_ms) in [
        ("guest.test=pwrbtn", 20_000),
        ("guest.test=pwrbtn pwrbtn.ignore=1", 500),
    ] {
        let dir = scratch("control-api-shutdown");
        let console = dir.join("console");
        let log = ["--console-log", console.to_str().unwrap()];
        let (mut child, socket) = start(&dir, "64M", cmdline, &log);
        wait_until("pwrbtn: armed", Duration::from_secs(10), || {
            std::fs::read_to_string(&console).is_ok_and(|t| t.contains("pwrbtn: armed"))
        });
        let api = Api::new(&socket);
        let body = format!(r#"{{"grace_ms": {grace_ms}}}"#);
        assert_eq!(api.call("PUT", "/v1/vm/shutdown", &body).status, 202);
        let (code, took) = wait_exit(&mut child, Duration::from_secs(30));
        let text = std::fs::read_to_string(&console).unwrap();
        assert!(code.success(), "{cmdline}: {code:?}");
        let powered_off = text.contains("pwrbtn: pressed, powering off");
        if cmdline.contains("ignore") {
            // Stopped once the grace period ran out.
            assert!(!powered_off, "{text}");
            assert!(took >= Duration::from_millis(grace_ms), "{took:?}");
        } else {
            // It powered off by itself, long before the grace period ended.
            assert!(powered_off, "{text}");
            assert!(took < Duration::from_millis(grace_ms), "{took:?}");
        }
        assert!(!socket.exists());
    }
}

#[test]
fn a_vm_with_a_share_reports_it_and_refuses_snapshots() {
    if !kvm_available("control API with a share") {
        return;
    }
    let dir = scratch("control-api-share");
    let share = dir.join("share");
    std::fs::create_dir_all(&share).unwrap();
    let fs = format!("tag=work,path={},readonly=on", share.display());
    let (mut child, socket) = start(&dir, "64M", "guest.test=count", &["--fs", &fs]);
    let api = Api::new(&socket);
    let status = api.call("GET", "/v1/vm", "");
    api.check("GET", "/v1/vm", &status);
    let spec = &status.body.unwrap()["spec"];
    assert_eq!(spec["fs"][0]["tag"], "work", "{spec}");
    assert_eq!(spec["fs"][0]["readonly"], true, "{spec}");
    let metrics = api.call("GET", "/v1/metrics", "");
    api.check("GET", "/v1/metrics", &metrics);
    let m = metrics.body.unwrap();
    assert_eq!(counter(&m, "/devices/fs0/requests"), 0, "{m}");
    assert_eq!(api.call("PUT", "/v1/vm/pause", "").status, 204);
    let snap = dir.join("snap");
    let body = format!(r#"{{"dir": "{}"}}"#, snap.display());
    let a = api.call("PUT", "/v1/vm/snapshot", &body);
    api.check("PUT", "/v1/vm/snapshot", &a);
    assert_eq!(a.status, 409);
    assert!(
        error_text(&a).contains("cannot be snapshotted"),
        "{}",
        error_text(&a)
    );
    assert!(!snap.exists());
    assert_eq!(api.call("PUT", "/v1/vm/resume", "").status, 204);
    assert_eq!(
        api.call("PUT", "/v1/vm/shutdown", r#"{"grace_ms": 0}"#)
            .status,
        202
    );
    let (code, _) = wait_exit(&mut child, Duration::from_secs(30));
    assert!(code.success(), "{code:?}");
}

#[test]
fn requests_during_a_snapshot_are_refused_or_answered() {
    if !kvm_available("control API during a snapshot") {
        return;
    }
    let dir = scratch("control-api-busy");
    // 4 GiB: the snapshot reads it all (writing only what is not zero), which takes
    // long enough (about a second here) to ask meanwhile.
    let (mut child, socket) = start(&dir, "4G", "guest.test=count count.ms=5", &[]);
    let api = Api::new(&socket);
    // The guest's memory is touched, so the snapshot has data to write.
    assert_eq!(api.call("PUT", "/v1/vm/pause", "").status, 204);
    let snap = dir.join("snap");
    let body = format!(r#"{{"dir": "{}"}}"#, snap.display());
    let taking = {
        let (socket, body) = (socket.clone(), body.clone());
        std::thread::spawn(move || {
            Api::new(&socket)
                .call("PUT", "/v1/vm/snapshot", &body)
                .status
        })
    };
    let mut seen = false;
    while !taking.is_finished() {
        let a = api.call("GET", "/v1/vm", "");
        if a.body.unwrap()["state"] == "snapshotting" {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(seen, "the snapshot ended before a status request saw it");
    let other = format!(r#"{{"dir": "{}"}}"#, dir.join("other").display());
    for (path, body) in [
        ("/v1/vm/resume", "".to_string()),
        ("/v1/vm/pause", "".to_string()),
        ("/v1/vm/snapshot", other),
        ("/v1/vm/shutdown", "".to_string()),
    ] {
        let a = api.call("PUT", path, &body);
        assert_eq!(a.status, 409, "{path}");
        assert!(
            error_text(&a).contains("a snapshot is being taken"),
            "{path}: {}",
            error_text(&a)
        );
    }
    assert!(
        !taking.is_finished(),
        "the snapshot ended while requests were refused"
    );
    assert_eq!(api.call("GET", "/v1/metrics", "").status, 200);
    assert_eq!(taking.join().unwrap(), 204);
    assert!(!dir.join("other").exists());
    assert_eq!(
        api.call("GET", "/v1/vm", "").body.unwrap()["state"],
        "paused"
    );
    assert_eq!(api.call("PUT", "/v1/vm/resume", "").status, 204);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    assert!(!socket.exists());
}

#[test]
fn bad_socket_paths_are_one_line_errors() {
    let dir = scratch("control-api-paths");
    let guest = test_guest();
    let taken = dir.join("taken");
    std::fs::write(&taken, b"").unwrap();
    for (path, needle) in [
        (dir.join("no/such/dir/api.sock"), "No such file"),
        (taken.clone(), "the path exists"),
        (dir.join("s".repeat(110)), "longer than the 107 bytes"),
    ] {
        let run = run_minivmm(
            &[
                "--kernel",
                guest.to_str().unwrap(),
                "--api-socket",
                path.to_str().unwrap(),
            ],
            b"",
            Duration::from_secs(10),
        );
        assert_one_line_error(&run, needle);
    }
    assert_eq!(
        std::fs::read(&taken).unwrap(),
        b"",
        "an existing file was touched"
    );
    // Nothing is left beside a refused socket.
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(left.len(), 1, "{left:?}");
}
