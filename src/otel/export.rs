//! The OTLP exporter's HTTP client: one blocking `POST` per batch over a std `TcpStream`,
//! plain HTTP/1.1 with `Connection: close`. It runs only on the batch processor's own
//! thread (which drives the exporter with a blocking executor), so blocking there holds
//! no proxy thread, and the gateway needs no second HTTP stack or TLS stack for it
//! (docs/tracing.md says what that saves).

use async_trait::async_trait;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The most of a collector's answer read; its body is a small protobuf message.
const MAX_ANSWER: u64 = 1024 * 1024;

/// Posts export requests; says once when exports start failing and once when they recover.
#[derive(Debug)]
pub(super) struct Poster {
    timeout: Duration,
    failing: AtomicBool,
}

impl Poster {
    pub(super) fn new(timeout: Duration) -> Poster {
        Poster {
            timeout,
            failing: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl HttpClient for Poster {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let sent = post(&request, self.timeout);
        let ok = matches!(&sent, Ok(r) if r.status().is_success());
        let was_failing = self.failing.swap(!ok, Ordering::Relaxed);
        match (&sent, ok, was_failing) {
            (Err(e), _, false) => log::warn!("tracing: export to {} failed: {e}", request.uri()),
            (Ok(r), false, false) => log::warn!(
                "tracing: export to {} refused with {}",
                request.uri(),
                r.status()
            ),
            (_, true, true) => log::info!("tracing: export to {} works again", request.uri()),
            _ => {}
        }
        sent
    }
}

fn post(request: &Request<Bytes>, timeout: Duration) -> Result<Response<Bytes>, HttpError> {
    let uri = request.uri();
    let host = uri.host().ok_or("no host in the endpoint")?;
    // `Uri::host` keeps an IPv6 address's brackets; the resolver wants it bare.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let mut stream = connect((host, port), timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;

    let body = request.body();
    let mut head = Vec::with_capacity(256);
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    write!(head, "{} {target} HTTP/1.1\r\n", request.method())?;
    if let Some(authority) = uri.authority() {
        write!(head, "Host: {authority}\r\n")?;
    }
    for (name, value) in request.headers() {
        let skip = [
            http::header::HOST,
            http::header::CONTENT_LENGTH,
            http::header::CONNECTION,
        ];
        if !skip.contains(name) {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
    }
    write!(
        head,
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&head)?;
    stream.write_all(body)?;

    let mut answer = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut answer)?;
    parse_answer(&answer)
}

/// The first address of `addr` that accepts within `timeout`.
fn connect(addr: impl ToSocketAddrs, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the host has no address");
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The collector's answer, read to the end of the connection: its status and, when it
/// is delimited by a length, its body (a chunked one is left out: only the status matters).
fn parse_answer(bytes: &[u8]) -> Result<Response<Bytes>, HttpError> {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut fields);
    let httparse::Status::Complete(head_len) = parsed.parse(bytes)? else {
        return Err("the collector's answer ended inside its head".into());
    };
    let status = parsed.code.ok_or("no status in the collector's answer")?;
    let field = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let rest = bytes.get(head_len..).unwrap_or_default();
    let body = if field("transfer-encoding").is_some() {
        &[][..]
    } else {
        match field("content-length")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            Some(len) => rest.get(..len).unwrap_or(rest),
            None => rest,
        }
    };
    Ok(Response::builder()
        .status(status)
        .body(Bytes::copy_from_slice(body))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_gives_its_status_and_its_body_up_to_its_length() {
        let r = parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabEXTRA").unwrap();
        assert_eq!((r.status().as_u16(), &r.body()[..]), (200, &b"ab"[..]));
        let r = parse_answer(b"HTTP/1.0 400 Bad\r\n\r\nwhy").unwrap();
        assert_eq!((r.status().as_u16(), &r.body()[..]), (400, &b"why"[..]));
        let r = parse_answer(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
        )
        .unwrap();
        assert!(r.body().is_empty());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-").is_err());
        assert!(parse_answer(b"garbage\r\n\r\n").is_err());
    }
}
