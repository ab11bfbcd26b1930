//! `portcullis health`: asks a running gateway's `/readyz` and exits 0 or 1, so a
//! container's HEALTHCHECK needs no curl in the image.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use super::Failure;

/// Probes must not pile up behind a wedged gateway: connect, write and read each
/// give up after this long (Docker's default probe timeout is 30 s).
const TIMEOUT: Duration = Duration::from_secs(3);
/// The status line is all we read; an admin answer's head is far smaller.
const MAX_HEAD: usize = 1024;

/// Probes `url`, or the `/readyz` of the admin listener the config at `path` names.
pub fn run(path: &Path, url: Option<&str>) -> Result<(), Failure> {
    let url = match url {
        Some(url) => url.to_owned(),
        None => {
            let loaded = super::load(path).map_err(|f| not_ready(&f.message))?;
            format!("http://{}/readyz", reachable(loaded.config.admin_listen))
        }
    };
    match probe(&url) {
        Ok(200) => {
            println!("ready: {url} answered 200");
            Ok(())
        }
        Ok(status) => Err(not_ready(&format!("{url} answered {status}"))),
        Err(why) => Err(not_ready(&format!("{url}: {why}"))),
    }
}

fn not_ready(why: &str) -> Failure {
    // One line, whatever the cause: the orchestrator shows the last one.
    Failure {
        message: format!("not ready: {}", why.replace('\n', "; ")),
        code: 1,
    }
}

/// The address to dial for a listener: one bound to every address is reached on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// One HTTP/1.1 GET; the answer's status code.
fn probe(url: &str) -> Result<u16, String> {
    let (authority, target) = split_url(url)?;
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let io = |e: std::io::Error| format!("{addr}: {e}");
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: portcullis-health\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut head = Vec::with_capacity(MAX_HEAD);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < MAX_HEAD {
        match stream.read(&mut buf).map_err(io)? {
            0 => break,
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    status_of(&head).ok_or_else(|| format!("{addr} did not answer HTTP"))
}

/// `http://host:port/path` → (`host:port`, `/path`). The admin listener speaks plain HTTP only.
fn split_url(url: &str) -> Result<(String, &str), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("expected an http:// URL, got {url:?}"))?;
    let (authority, target) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("no host in {url:?}"));
    }
    // A bare host gets HTTP's port, as a browser would.
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.contains(']'));
    let authority = match has_port {
        true => authority.to_owned(),
        false => format!("{authority}:80"),
    };
    Ok((authority, target))
}

/// The code of an `HTTP/1.x NNN ...` status line.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let version = parts.next()?;
    let code = parts.next()?.trim();
    (version.starts_with("HTTP/1.") && code.len() == 3)
        .then(|| code.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_on_every_address_is_probed_on_loopback() {
        let cases = [
            ("0.0.0.0:9090", "127.0.0.1:9090"),
            ("[::]:9090", "[::1]:9090"),
            ("10.0.0.5:9191", "10.0.0.5:9191"),
        ];
        for (listen, dialed) in cases {
            let listen: SocketAddr = listen.parse().unwrap();
            assert_eq!(reachable(listen).to_string(), dialed);
        }
    }

    #[test]
    fn urls_split_into_authority_and_target() {
        let cases = [
            ("http://127.0.0.1:9090/readyz", "127.0.0.1:9090", "/readyz"),
            ("http://localhost/readyz", "localhost:80", "/readyz"),
            ("http://[::1]:9090", "[::1]:9090", "/"),
            ("http://[::1]/readyz", "[::1]:80", "/readyz"),
        ];
        for (url, authority, target) in cases {
            let (a, t) = split_url(url).unwrap();
            assert_eq!((a.as_str(), t), (authority, target), "{url}");
        }
        assert!(split_url("https://gw:9090/readyz").is_err());
        assert!(split_url("http:///readyz").is_err());
    }

    #[test]
    fn the_status_comes_from_the_status_line_only() {
        let cases: [(&[u8], Option<u16>); 5] = [
            (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n", Some(200)),
            (b"HTTP/1.0 503 Service Unavailable\r\n", Some(503)),
            (b"HTTP/1.1 200\r\n", Some(200)),
            (b"SSH-2.0-OpenSSH_9.2\r\n", None),
            (b"", None),
        ];
        for (head, status) in cases {
            assert_eq!(
                status_of(head),
                status,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
