//! The HTTP/1.1 subset the control API speaks: requests parsed with httparse, bodies
//! by Content-Length (no chunked transfer coding), keep-alive, JSON responses.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// How long a connection may take to deliver a whole request, counted from when the
/// server starts waiting for it (an idle keep-alive connection is closed after this).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A stream whose reads can be bounded in time.
pub(crate) trait TimedRead: Read {
    /// Bounds the next reads to `limit`.
    fn set_limit(&self, limit: Duration) -> std::io::Result<()>;
}

impl TimedRead for std::os::unix::net::UnixStream {
    fn set_limit(&self, limit: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(limit.max(Duration::from_millis(1))))
    }
}

impl TimedRead for &[u8] {
    fn set_limit(&self, _limit: Duration) -> std::io::Result<()> {
        Ok(())
    }
}

/// Largest request head (request line and headers).
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// Largest request body.
pub(crate) const MAX_BODY: usize = 64 * 1024;
const MAX_HEADERS: usize = 32;

/// One request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) body: Vec<u8>,
    /// The client asked to close the connection after this request (or speaks
    /// HTTP/1.0).
    pub(crate) close: bool,
}

/// Why no request could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// The client closed the connection between requests.
    #[error("connection closed")]
    Closed,
    /// The connection failed or timed out.
    #[error("reading the request: {0}")]
    Io(#[from] std::io::Error),
    /// Not HTTP/1.x.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Head or body over the limits.
    #[error("request too large: {0}")]
    TooLarge(&'static str),
    /// A transfer coding this server does not take.
    #[error("Transfer-Encoding is not supported; send a Content-Length")]
    Chunked,
}

impl HttpError {
    /// The status to answer with, if the connection can still take an answer.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            Self::Closed | Self::Io(_) => None,
            Self::Malformed(_) => Some(400),
            Self::TooLarge(_) => Some(413),
            Self::Chunked => Some(411),
        }
    }
}

/// Reads requests from one connection; bytes past one request (pipelining) are kept
/// for the next.
pub(crate) struct Reader<S> {
    stream: S,
    buf: Vec<u8>,
    timeout: Duration,
}

impl<S: TimedRead> Reader<S> {
    pub(crate) fn new(stream: S) -> Self {
        Self {
            stream,
            buf: Vec::new(),
            timeout: REQUEST_TIMEOUT,
        }
    }

    #[cfg(test)]
    fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reads more bytes before `deadline`; `false` at the end of the stream.
    fn fill(&mut self, deadline: Instant) -> Result<bool, std::io::Error> {
        let mut chunk = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            self.stream.set_limit(left)?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The next request, within [`REQUEST_TIMEOUT`].
    pub(crate) fn next_request(&mut self) -> Result<Request, HttpError> {
        let deadline = Instant::now() + self.timeout;
        let (head_len, method, path, length, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    if n > MAX_HEAD {
                        return Err(HttpError::TooLarge("request head over 8 KiB"));
                    }
                    let (length, close) = framing(&req)?;
                    let method = req.method.unwrap_or_default().to_string();
                    let path = req.path.unwrap_or_default().to_string();
                    break (n, method, path, length, close);
                }
                Ok(httparse::Status::Partial) => {
                    if self.buf.len() > MAX_HEAD {
                        return Err(HttpError::TooLarge("request head over 8 KiB"));
                    }
                    let empty = self.buf.is_empty();
                    if !self.fill(deadline)? {
                        return Err(if empty {
                            HttpError::Closed
                        } else {
                            HttpError::Malformed("connection closed mid-request".into())
                        });
                    }
                }
                Err(e) => return Err(HttpError::Malformed(e.to_string())),
            }
        };
        if length > MAX_BODY {
            return Err(HttpError::TooLarge("request body over 64 KiB"));
        }
        while self.buf.len() < head_len + length {
            if !self.fill(deadline)? {
                return Err(HttpError::Malformed("connection closed mid-body".into()));
            }
        }
        let body = self.buf[head_len..head_len + length].to_vec();
        self.buf.drain(..head_len + length);
        Ok(Request {
            method,
            path,
            body,
            close,
        })
    }
}

/// The body length and whether the connection closes after this request.
fn framing(req: &httparse::Request) -> Result<(usize, bool), HttpError> {
    let mut length: Option<usize> = None;
    let mut close = req.version == Some(0);
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HttpError::Malformed(format!("header {} is not text", h.name)))?
            .trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let bad = || HttpError::Malformed(format!("bad Content-Length {value:?}"));
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let n: usize = value.parse().map_err(|_| bad())?;
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::Malformed(
                    "conflicting Content-Length headers".into(),
                ));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::Chunked);
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok((length.unwrap_or(0), close))
}

/// One response.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Option<String>,
    pub(crate) allow: Option<&'static str>,
}

impl Response {
    pub(crate) fn empty(status: u16) -> Self {
        Self {
            status,
            body: None,
            allow: None,
        }
    }

    pub(crate) fn json(status: u16, body: String) -> Self {
        Self {
            status,
            body: Some(body),
            allow: None,
        }
    }

    /// `{"error": message}`.
    pub(crate) fn error(status: u16, message: &str) -> Self {
        Self::json(status, serde_json::json!({ "error": message }).to_string())
    }

    /// Writes the response; `close` adds `Connection: close`.
    pub(crate) fn write_to(&self, out: &mut impl Write, close: bool) -> std::io::Result<()> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        if let Some(allow) = self.allow {
            head.push_str(&format!("Allow: {allow}\r\n"));
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        let body = self.body.as_deref().unwrap_or("");
        if self.body.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        // A 204 has no body and no Content-Length (RFC 9110, 8.6).
        if self.status != 204 {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        head.push_str(body);
        out.write_all(head.as_bytes())?;
        out.flush()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8]) -> Vec<Result<Request, HttpError>> {
        let mut r = Reader::new(input);
        let mut out = Vec::new();
        loop {
            let next = r.next_request();
            let end = next.is_err();
            out.push(next);
            if end {
                return out;
            }
        }
    }

    #[test]
    fn pipelined_requests_with_bodies_are_split() {
        let input = b"PUT /v1/vm/snapshot HTTP/1.1\r\nContent-Length: 11\r\n\r\n{\"dir\":\"x\"}\
GET /v1/vm HTTP/1.1\r\nConnection: close\r\n\r\n";
        let got = read_all(input);
        let first = got[0].as_ref().unwrap();
        assert_eq!(first.method, "PUT");
        assert_eq!(first.body, b"{\"dir\":\"x\"}");
        assert!(!first.close);
        let second = got[1].as_ref().unwrap();
        assert_eq!((second.path.as_str(), second.close), ("/v1/vm", true));
        assert!(matches!(got[2], Err(HttpError::Closed)));
    }

    #[test]
    fn bad_requests_get_their_status() {
        let status = |input: &[u8]| read_all(input)[0].as_ref().unwrap_err().status();
        assert_eq!(status(b"GARBAGE\x01 / HTTP/1.1\r\n\r\n"), Some(400));
        assert_eq!(
            status(b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(411)
        );
        assert_eq!(
            status(b"PUT / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n"),
            Some(413)
        );
        assert_eq!(
            status(b"PUT / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Some(400)
        );
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(status(long.as_bytes()), Some(413));
        assert_eq!(
            status(b"PUT / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"),
            Some(400)
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\n"), Some(400));
        assert_eq!(
            status(b"PUT / HTTP/1.1\r\nContent-Length: +5\r\n\r\nabcde"),
            Some(400)
        );
        assert_eq!(
            status(b"PUT / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"),
            Some(400)
        );
        assert_eq!(status(b""), None);
    }

    #[test]
    fn a_slow_client_is_cut_off_at_the_deadline() {
        let (mut client, server) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut r = Reader::new(server).with_timeout(Duration::from_millis(200));
        // Idle: nothing at all.
        assert!(matches!(r.next_request(), Err(HttpError::Io(_))));
        // A byte now and then never completes a request.
        let t = std::thread::spawn(move || {
            for b in b"GET /v1/vm HTTP/1.1\r\n" {
                if client.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let err = r.next_request().unwrap_err();
        assert!(matches!(err, HttpError::Io(_)), "{err}");
        drop(r);
        t.join().unwrap();
    }

    #[test]
    fn no_content_has_no_length() {
        let mut out = Vec::new();
        Response::empty(204).write_to(&mut out, false).unwrap();
        assert_eq!(out, b"HTTP/1.1 204 No Content\r\n\r\n");
    }

    #[test]
    fn http10_closes_and_responses_are_framed() {
        let got = read_all(b"GET /v1/vm HTTP/1.0\r\n\r\n");
        assert!(got[0].as_ref().unwrap().close);
        let mut out = Vec::new();
        Response::error(404, "no such path")
            .write_to(&mut out, true)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"));
        assert!(
            text.ends_with("\r\n\r\n{\"error\":\"no such path\"}"),
            "{text}"
        );
    }
}
