//! The control API's endpoints (docs/api/openapi.json describes them; the tests check
//! the server against it): each maps to one [`VmController`] call.

use super::http::{Request, Response};
use crate::controller::VmController;
use crate::error::VmmError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Every method and path the API serves.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/vm"),
    ("PUT", "/v1/vm/pause"),
    ("PUT", "/v1/vm/resume"),
    ("PUT", "/v1/vm/snapshot"),
    ("PUT", "/v1/vm/shutdown"),
    ("GET", "/v1/metrics"),
];

/// How long a guest gets to power off after `PUT /v1/vm/shutdown` by default.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;
/// The longest grace a request may ask for.
const MAX_SHUTDOWN_GRACE_MS: u64 = 600_000;

/// A body with no fields (`{}`), or none at all.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotBody {
    dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShutdownBody {
    grace_ms: Option<u64>,
}

/// What the connection's thread does once the response is written.
pub(crate) enum After {
    Nothing,
    /// Wait up to this long for the guest to power off, then stop the VM.
    StopAfter(Duration),
}

/// Parses `body` as `T`; an empty body is `{}`.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| Response::error(400, &format!("bad JSON body: {e}")))
}

/// The status for a controller error.
fn failure(e: &VmmError) -> Response {
    let status = match e {
        VmmError::NotRunning => 503,
        // The snapshot's files could not be written.
        VmmError::SnapshotIo(..) | VmmError::SnapshotFormat(..) => 500,
        _ => 409,
    };
    Response::error(status, &crate::error::error_chain(e))
}

fn done(result: Result<(), VmmError>) -> Response {
    match result {
        Ok(()) => Response::empty(204),
        Err(e) => failure(&e),
    }
}

/// Serves one request.
pub(crate) fn handle(vm: &VmController, req: &Request) -> (Response, After) {
    let allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|(_, p)| *p == req.path)
        .map(|(m, _)| *m)
        .collect();
    if allowed.is_empty() {
        let msg = format!("no such path: {}", req.path);
        return (Response::error(404, &msg), After::Nothing);
    }
    if !allowed.contains(&req.method.as_str()) {
        let mut r = Response::error(405, &format!("{} takes {}", req.path, allowed[0]));
        r.allow = Some(allowed[0]);
        return (r, After::Nothing);
    }
    let reply = || -> Result<(Response, After), Response> {
        Ok(match req.path.as_str() {
            "/v1/vm" => (json(&vm.status()), After::Nothing),
            "/v1/metrics" => (json(&vm.metrics()), After::Nothing),
            "/v1/vm/pause" => {
                parse::<NoFields>(&req.body)?;
                (done(vm.pause()), After::Nothing)
            }
            "/v1/vm/resume" => {
                parse::<NoFields>(&req.body)?;
                (done(vm.resume()), After::Nothing)
            }
            "/v1/vm/snapshot" => {
                let body: SnapshotBody = parse(&req.body)?;
                if body.dir.as_os_str().is_empty() {
                    return Err(Response::error(400, "dir is empty"));
                }
                (done(vm.snapshot(&body.dir)), After::Nothing)
            }
            "/v1/vm/shutdown" => {
                let body: ShutdownBody = parse(&req.body)?;
                let grace = body.grace_ms.unwrap_or(DEFAULT_SHUTDOWN_GRACE_MS);
                if grace > MAX_SHUTDOWN_GRACE_MS {
                    let msg = format!("grace_ms is at most {MAX_SHUTDOWN_GRACE_MS}");
                    return Err(Response::error(400, &msg));
                }
                shutdown(vm, Duration::from_millis(grace))
            }
            other => {
                let msg = format!("no handler for {other}");
                (Response::error(500, &msg), After::Nothing)
            }
        })
    };
    reply().unwrap_or_else(|r| (r, After::Nothing))
}

/// `PUT /v1/vm/shutdown`: a grace of zero stops the VM now; otherwise the power
/// button is pressed (a paused guest, or one mid-snapshot, could not react: refused),
/// and the VM stopped after `grace` unless the guest powered off.
fn shutdown(vm: &VmController, grace: Duration) -> (Response, After) {
    if grace.is_zero() {
        vm.stop();
        return (Response::empty(202), After::Nothing);
    }
    let refuse = |why: &str| (Response::error(409, why), After::Nothing);
    if vm.snapshotting() {
        return refuse("the VM cannot shut down now: a snapshot is being taken");
    }
    if vm.is_paused() {
        return refuse(
            "the VM is paused, so its guest cannot act on the power button: resume it \
             first, or ask for grace_ms 0 to stop it now",
        );
    }
    match vm.power_button() {
        Ok(()) => (Response::empty(202), After::StopAfter(grace)),
        Err(e) => {
            log::info!("api: shutdown without the power button ({e}); stopping the VM");
            vm.stop();
            (Response::empty(202), After::Nothing)
        }
    }
}

fn json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(text) => Response::json(200, text),
        Err(e) => Response::error(500, &format!("cannot encode the answer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked() {
        assert!(parse::<NoFields>(b"").is_ok());
        assert!(parse::<NoFields>(b" {} ").is_ok());
        let err = parse::<NoFields>(b"{\"x\":1}").unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.body.unwrap().contains("unknown field `x`"));
        let err = parse::<SnapshotBody>(b"{").unwrap_err();
        assert!(err.body.unwrap().contains("bad JSON body"));
        let err = parse::<SnapshotBody>(b"{}").unwrap_err();
        assert!(err.body.unwrap().contains("missing field `dir`"));
        let ok: ShutdownBody = parse(b"{\"grace_ms\": 5}").unwrap();
        assert_eq!(ok.grace_ms, Some(5));
    }

    #[test]
    fn each_route_is_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ROUTES {
            assert!(seen.insert(r), "{r:?} twice");
        }
    }
}
