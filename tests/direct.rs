//! The direct exchange (bodiless requests to a plain HTTP/1.1 upstream),
//! through the real binary against scripted upstreams: every way an answer
//! can be framed, and the kept-alive upstream connections it reuses.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CONFIG: &str = r#"
listen: "{LISTEN}"
admin_listen: "{ADMIN}"
store: sqlite://data/portcullis.db
upstreams:
  app: { addrs: ["{UPSTREAM}"], connect_timeout: 1s, read_timeout: 2s }
auth:
  issuer: https://gw.test
  audience: api
roles: [viewer]
routes:
  - { path: /**, upstream: app, auth: none }
"#;

/// What a scripted upstream does after writing an answer.
#[derive(Clone, Copy)]
enum After {
    /// Reads the next request on the same connection.
    KeepOpen,
    /// Closes the connection.
    Close,
    /// Keeps the connection for one more request only if it comes within this long.
    CloseWhenIdle(Duration),
}

/// An upstream on 127.0.0.1 whose answers come from a script: given each
/// request head and its number on its connection (from 0), the bytes to write
/// (none: close without answering) and what to do next.
struct Scripted {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    fn start(script: impl Fn(&str, usize) -> (Vec<u8>, After) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
        let addr = listener.local_addr().expect("upstream address");
        let connections = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let (count, seen) = (connections.clone(), heads.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let (script, seen) = (script.clone(), seen.clone());
                std::thread::spawn(move || serve(conn, &*script, &seen));
            }
        });
        Scripted {
            addr,
            connections,
            heads,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn serve(
    mut conn: TcpStream,
    script: &(impl Fn(&str, usize) -> (Vec<u8>, After) + ?Sized),
    seen: &Mutex<Vec<String>>,
) {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    for n in 0.. {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match conn.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        seen.lock().unwrap().push(head.clone());
        let (answer, after) = script(&head, n);
        if answer.is_empty() || conn.write_all(&answer).is_err() {
            return;
        }
        match after {
            After::KeepOpen => {}
            After::Close => return,
            After::CloseWhenIdle(idle) => {
                conn.set_read_timeout(Some(idle)).ok();
            }
        }
    }
}

fn answer(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

fn start(upstream: &Scripted) -> Gateway {
    Gateway::start(CONFIG, upstream.addr, &[])
}

/// RFC 6455 §1.3's example key and the accept value it calls for.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A valid WebSocket opening handshake for `path`.
fn handshake(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// The 101 that completes `handshake`.
fn switched() -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {WS_ACCEPT}\r\n\r\n"
    )
}

#[test]
fn a_chunked_answer_arrives_whole_and_its_connection_is_reused() {
    let upstream = Scripted::start(|_, _| {
        let wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\nhello\r\n2;ext=1\r\n, \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n";
        (answer(wire), After::KeepOpen)
    });
    let gw = start(&upstream);
    for i in 0..3 {
        let r = get(gw.addr, "/chunked", &[]);
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "hello, world"),
            "request {i}"
        );
    }
    assert_eq!(
        upstream.connections(),
        1,
        "one kept-alive upstream connection"
    );
}

#[test]
fn an_answer_ended_by_close_arrives_whole_and_the_client_keeps_its_connection() {
    let upstream = Scripted::start(|_, _| {
        (
            answer("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"),
            After::Close,
        )
    });
    let gw = start(&upstream);
    let mut client = Conn::open(gw.addr);
    for i in 0..2 {
        client.send(b"GET /close HTTP/1.1\r\nHost: gw.test\r\n\r\n");
        let r = client.read_response();
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "until the end"),
            "request {i}"
        );
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    }
    assert_eq!(
        upstream.connections(),
        2,
        "a close-delimited answer ends its connection"
    );
}

#[test]
fn head_and_no_content_answers_carry_no_body_and_keep_both_connections() {
    let upstream = Scripted::start(|head, _| {
        let wire = if head.starts_with("HEAD") {
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"
        } else {
            "HTTP/1.1 204 No Content\r\n\r\n"
        };
        (answer(wire), After::KeepOpen)
    });
    let gw = start(&upstream);
    let mut client = Conn::open(gw.addr);
    client.send(b"HEAD /h HTTP/1.1\r\nHost: gw.test\r\n\r\n");
    let r = client
        .try_read_response(true, Duration::from_secs(5))
        .expect("an answer to HEAD");
    assert_eq!((r.status, r.header("content-length")), (200, Some("9")));
    client.send(b"GET /none HTTP/1.1\r\nHost: gw.test\r\n\r\n");
    let r = client.read_response();
    assert_eq!((r.status, r.body.len()), (204, 0));
    // Had the gateway waited for 9 body bytes after HEAD, the 204 would never have come.
    assert_eq!(upstream.connections(), 1);
}

#[test]
fn a_large_answer_streams_through_intact() {
    const SIZE: usize = 3 * 1024 * 1024 + 17;
    let body: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let wire = {
        let mut wire = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").into_bytes();
        wire.extend_from_slice(&body);
        wire
    };
    let upstream = Scripted::start(move |_, _| (wire.clone(), After::KeepOpen));
    let gw = start(&upstream);
    for _ in 0..2 {
        let r = get(gw.addr, "/big", &[]);
        assert_eq!(r.status, 200);
        assert!(
            r.body == body,
            "body differs ({} bytes received)",
            r.body.len()
        );
    }
    assert_eq!(upstream.connections(), 1);
}

#[test]
fn a_connection_the_upstream_closed_while_idle_is_not_used() {
    let upstream = Scripted::start(|_, _| {
        (
            answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            After::CloseWhenIdle(Duration::from_millis(100)),
        )
    });
    let gw = start(&upstream);
    for i in 0..3 {
        let r = get(gw.addr, "/idle", &[]);
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "request {i}");
        std::thread::sleep(Duration::from_millis(400));
    }
    assert_eq!(upstream.connections(), 3);
}

#[test]
fn only_a_repeatable_request_is_sent_again_when_a_kept_alive_connection_drops_it() {
    // Every second request on a connection is dropped unanswered: the race of a
    // kept-alive connection that the upstream closes just as a request arrives.
    let upstream = Scripted::start(|_, n| {
        if n == 0 {
            (
                answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
                After::KeepOpen,
            )
        } else {
            (Vec::new(), After::Close)
        }
    });
    let gw = start(&upstream);
    assert_eq!(get(gw.addr, "/warm", &[]).status, 200);
    let r = get(gw.addr, "/again", &[]);
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "ok"),
        "a GET is repeated on a new connection"
    );
    let r = request(gw.addr, "POST", "/once", &[], None);
    assert_eq!(
        r.status, 502,
        "a POST may have been acted on: never sent twice"
    );
    let posts = upstream
        .heads()
        .iter()
        .filter(|h| h.starts_with("POST /once"))
        .count();
    assert_eq!(posts, 1);
}

#[test]
fn answer_headers_pass_and_connection_headers_stay_on_their_side() {
    let upstream = Scripted::start(|_, _| {
        let wire = "HTTP/1.1 200 OK\r\nX-Two: a\r\nKeep-Alive: timeout=5\r\nX-Two: b\r\n\
                    Server: upstream/1.2.3\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\n\
                    Connection: keep-alive\r\nContent-Length: 2\r\n\r\nok";
        (answer(wire), After::KeepOpen)
    });
    let gw = start(&upstream);
    let r = get(
        gw.addr,
        "/headers",
        &[
            ("Keep-Alive", "300"),
            ("Proxy-Connection", "keep-alive"),
            ("X-Client-Case", "1"),
        ],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.headers_named("x-two"), ["a", "b"]);
    assert!(r.header("keep-alive").is_none());
    assert!(r.header("x-request-id").is_some());
    assert!(r.header("server").is_none(), "no server version leaks");
    let date = r.header("date").expect("a Date of the gateway's clock");
    assert!(!date.contains("2001"), "{date}");
    let head = upstream
        .heads()
        .pop()
        .expect("the upstream saw the request");
    assert!(
        head.contains("\r\nX-Client-Case: 1\r\n"),
        "client case kept: {head}"
    );
    for hop in ["keep-alive:", "proxy-connection:", "connection:"] {
        assert!(
            !head.to_ascii_lowercase().contains(&format!("\r\n{hop}")),
            "{hop} forwarded: {head}"
        );
    }
}

#[test]
fn a_broken_answer_is_a_bad_gateway_and_its_connection_is_not_reused() {
    let upstream = Scripted::start(|head, _| {
        let wire = if head.starts_with("GET /broken") {
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
        } else {
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        };
        (answer(wire), After::KeepOpen)
    });
    let gw = start(&upstream);
    let r = get(gw.addr, "/broken", &[]);
    assert_eq!(r.status, 502);
    assert_eq!(r.json(), serde_json::json!({"error": "Bad gateway"}));
    let r = get(gw.addr, "/fine", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(upstream.connections(), 2);
}

#[test]
fn an_http10_client_gets_a_chunked_answer_whole_without_chunks() {
    let upstream = Scripted::start(|_, _| {
        let wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        (answer(wire), After::KeepOpen)
    });
    let gw = start(&upstream);
    let reply = raw(
        gw.addr,
        b"GET /old HTTP/1.0\r\nHost: gw.test\r\n\r\n",
        Duration::from_secs(5),
    );
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = reply.split_once("\r\n\r\n").expect("a whole answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert_eq!(body, "hello");
}

#[test]
fn a_request_pipelined_behind_a_slow_one_is_answered_after_it() {
    let upstream = Scripted::start(|_, _| {
        std::thread::sleep(Duration::from_millis(150));
        (
            answer("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow"),
            After::KeepOpen,
        )
    });
    let gw = start(&upstream);
    let mut client = Conn::open(gw.addr);
    client.send(b"GET /one HTTP/1.1\r\nHost: gw.test\r\n\r\n");
    // Sent while the upstream still works on the first, so it waits on the socket.
    std::thread::sleep(Duration::from_millis(60));
    client.send(b"GET /two HTTP/1.1\r\nHost: gw.test\r\n\r\n");
    let r = client.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "slow"));
    // Read while the gateway watched for the client leaving, and kept for later.
    let second = client
        .try_read_response(false, Duration::from_secs(3))
        .expect("the pipelined request is answered too");
    assert_eq!((second.status, second.text().as_str()), (200, "slow"));
    let heads = upstream.heads();
    assert!(
        heads.last().is_some_and(|h| h.starts_with("GET /two ")),
        "{heads:?}"
    );
}

#[test]
fn an_upgrade_is_tunnelled_until_the_upstream_ends_it_and_a_refusal_is_an_answer() {
    let upstream = Scripted::start(|head, _| {
        if head.contains("/refuse") {
            let wire = "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 2\r\n\r\nno";
            return (answer(wire), After::KeepOpen);
        }
        (answer(&format!("{}hello", switched())), After::Close)
    });
    let gw = start(&upstream);
    let mut client = Conn::open(gw.addr);
    client.send(handshake("/tunnel").as_bytes());
    let r = client
        .try_read_response(false, Duration::from_secs(5))
        .expect("101");
    assert_eq!(r.status, 101);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert_eq!(
        r.header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("upgrade")
    );
    assert_eq!(client.read_bytes(5, Duration::from_secs(5)), b"hello");
    assert!(
        client.closed_within(Duration::from_secs(5)),
        "the upstream's end ends the tunnel"
    );
    let head = upstream
        .heads()
        .pop()
        .expect("the upstream saw the upgrade");
    assert!(head.contains("\r\nConnection: Upgrade\r\n"), "{head}");
    assert!(head.contains("\r\nUpgrade: websocket\r\n"), "{head}");

    let mut client = Conn::open(gw.addr);
    client.send(handshake("/refuse").as_bytes());
    let r = client.read_response();
    assert_eq!((r.status, r.text().as_str()), (426, "no"));
}

#[test]
fn length_and_chunked_bodies_reach_the_upstream_whole() {
    let echo = Echo::start();
    let gw = Gateway::start(CONFIG, echo.addr, &[]);
    let big: String = (0..200_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    for round in 0..2 {
        let r = request(gw.addr, "POST", "/len", &[], Some(big.as_bytes()));
        assert_eq!(r.status, 200, "round {round}");
        assert!(
            r.json()["body"] == big.as_str(),
            "round {round}: length body differs"
        );

        let chunked = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
        let r = request(
            gw.addr,
            "PUT",
            "/chunks",
            &[("Transfer-Encoding", "chunked")],
            Some(chunked),
        );
        assert_eq!(r.status, 200, "round {round}");
        assert_eq!(r.json()["body"], "hello, world", "round {round}");
    }
}

#[test]
fn an_upstream_that_answers_before_reading_the_body_is_relayed() {
    let upstream = Scripted::start(|_, _| {
        let wire = "HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\n\r\ntoo much";
        (answer(wire), After::KeepOpen)
    });
    let gw = start(&upstream);
    let r = request(gw.addr, "POST", "/upload", &[], Some(&[b'x'; 2048]));
    assert_eq!((r.status, r.text().as_str()), (413, "too much"));
}

#[test]
fn a_tunnel_without_a_byte_either_way_for_read_timeout_is_closed() {
    let upstream = Scripted::start(|_, _| (answer(&switched()), After::KeepOpen));
    let gw = start(&upstream);
    let mut client = Conn::open(gw.addr);
    client.send(handshake("/quiet").as_bytes());
    let r = client
        .try_read_response(false, Duration::from_secs(5))
        .expect("101");
    assert_eq!(r.status, 101);
    let opened = std::time::Instant::now();
    // CONFIG's read_timeout is 2 s.
    assert!(
        client.closed_within(Duration::from_secs(6)),
        "an idle tunnel stays open"
    );
    assert!(
        opened.elapsed() >= Duration::from_millis(1500),
        "closed too early: {:?}",
        opened.elapsed()
    );
}

#[test]
fn expect_100_continue_is_answered_by_the_gateway_before_the_body_is_sent() {
    let echo = Echo::start();
    let gw = Gateway::start(CONFIG, echo.addr, &[]);
    let mut client = Conn::open(gw.addr);
    client.send(b"POST /expect HTTP/1.1\r\nHost: gw.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    // Nothing of the body has left the client yet.
    assert_eq!(
        client.read_bytes(25, Duration::from_secs(5)),
        b"HTTP/1.1 100 Continue\r\n\r\n"
    );
    client.send(b"hello");
    let r = client.read_response();
    assert_eq!(r.status, 200);
    let seen = r.json();
    assert_eq!(seen["body"], "hello");
    let sent = seen.to_string().to_ascii_lowercase();
    assert!(
        !sent.contains("100-continue"),
        "the upstream was asked again: {sent}"
    );
}

#[test]
fn a_failure_after_100_continue_still_gets_its_502() {
    // Reads the head, then leaves without a word.
    let upstream = Scripted::start(|_, _| (Vec::new(), After::Close));
    let gw = start(&upstream);
    let mut client = Conn::open(gw.addr);
    client.send(b"POST /gone HTTP/1.1\r\nHost: gw.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(
        client.read_bytes(25, Duration::from_secs(5)),
        b"HTTP/1.1 100 Continue\r\n\r\n"
    );
    client.send(b"hello");
    let r = client.read_response();
    assert_eq!(r.status, 502);
    assert_eq!(r.json(), serde_json::json!({"error": "Bad gateway"}));
}

#[test]
fn an_h2c_upgrade_is_never_forwarded_so_no_tunnel_can_bypass_the_routes() {
    // An upstream that would switch to anything it is asked for.
    let upstream = Scripted::start(|head, _| {
        if head.to_ascii_lowercase().contains("\r\nupgrade:") {
            let wire =
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
            return (answer(wire), After::KeepOpen);
        }
        (
            answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            After::KeepOpen,
        )
    });
    let gw = start(&upstream);
    let r = get(
        gw.addr,
        "/h2c",
        &[
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
        ],
    );
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let head = upstream
        .heads()
        .pop()
        .expect("the upstream saw the request");
    let lower = head.to_ascii_lowercase();
    for gone in ["\r\nupgrade:", "\r\nhttp2-settings:", "\r\nconnection:"] {
        assert!(!lower.contains(gone), "{gone} forwarded: {head}");
    }
}

/// The "websocket-smuggle" attack: an upstream made to answer 101 without
/// switching would otherwise get every later request on the connection raw.
#[test]
fn only_a_valid_handshake_answered_with_its_accept_becomes_a_tunnel() {
    // An upstream that answers 101 to anything that says Upgrade, or to /switch.
    let upstream = Scripted::start(|head, _| {
        let lower = head.to_ascii_lowercase();
        if lower.contains("\r\nupgrade:") || head.starts_with("GET /switch") {
            let wrong = switched().replace(WS_ACCEPT, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
            let wire = if head.starts_with("GET /wrong") {
                wrong
            } else {
                switched()
            };
            return (answer(&wire), After::KeepOpen);
        }
        (
            answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            After::KeepOpen,
        )
    });
    let gw = start(&upstream);
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n";
    let not_handshakes = [
        // A POST with a body and a lone Upgrade header.
        "POST /post HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nhi"
            .to_string(),
        // No key, no version.
        "GET /nokey HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            .to_string(),
        handshake("/badversion").replace("Version: 13", "Version: 12"),
        handshake("/shortkey").replace(WS_KEY, "c2hvcnQ="),
        handshake("/noconnection").replace("Connection: Upgrade", "Connection: keep-alive"),
    ];
    for request in &not_handshakes {
        let mut client = Conn::open(gw.addr);
        client.send(request.as_bytes());
        let r = client.read_response();
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{request}");
        let head = upstream.heads().pop().expect("the upstream saw it");
        assert!(
            !head.to_ascii_lowercase().contains("\r\nupgrade:"),
            "Upgrade forwarded: {head}"
        );
    }
    // A 101 to a plain request, or with the wrong accept: 502, the connection
    // closed, and what the client sends next never reaches the upstream.
    for first in [
        "GET /switch HTTP/1.1\r\nHost: gw.test\r\n\r\n".to_string(),
        handshake("/wrong"),
    ] {
        let before = upstream.heads().len();
        let mut client = Conn::open(gw.addr);
        client.send(format!("{first}{smuggled}").as_bytes());
        let r = client.read_response();
        assert_eq!(r.status, 502, "{first}");
        assert_eq!(r.header("connection"), Some("close"), "{first}");
        assert!(client.closed_within(Duration::from_secs(5)), "{first}");
        std::thread::sleep(Duration::from_millis(200));
        let heads = upstream.heads();
        assert_eq!(heads.len(), before + 1, "{first}: {heads:?}");
        assert!(heads.iter().all(|h| !h.contains("/smuggled")), "{heads:?}");
    }
}
