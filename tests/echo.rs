//! Tests of the `echo` upstream and of the harness itself (raw HTTP client, JWT minting),
//! run against the real echo binary so later gateway tests can trust both.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn echo_returns_the_method_path_headers_and_body_it_received() {
    let echo = Echo::start();
    let response = request(
        echo.addr,
        "POST",
        "/some/path?q=1&r=two",
        &[("X-Custom", "Value 1")],
        Some(b"hello"),
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json();
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/some/path?q=1&r=two");
    assert_eq!(body["body"], "hello");
    assert_eq!(echoed_header_values(&body, "x-custom"), ["Value 1"]);
    assert_eq!(echoed_header_values(&body, "content-length"), ["5"]);
    // Names keep the case they were sent with.
    assert_eq!(
        body["headers"][1],
        serde_json::json!(["X-Custom", "Value 1"])
    );
}

#[test]
fn duplicate_headers_are_kept_in_order() {
    let echo = Echo::start();
    let response = get(
        echo.addr,
        "/",
        &[("X-Dup", "one"), ("Other", "x"), ("x-dup", "two")],
    );
    assert_eq!(
        echoed_header_values(&response.json(), "X-DUP"),
        ["one", "two"]
    );
}

#[test]
fn a_chunked_body_is_read() {
    let echo = Echo::start();
    let chunked = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
    let response = request(
        echo.addr,
        "PUT",
        "/c",
        &[("Transfer-Encoding", "chunked")],
        Some(chunked),
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["body"], "hello, world");
}

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let echo = Echo::start();
    let mut conn = Conn::open(echo.addr);
    conn.send(b"GET /first HTTP/1.1\r\nHost: e\r\n\r\n");
    assert_eq!(conn.read_response().json()["path"], "/first");
    conn.send(b"POST /second HTTP/1.1\r\nHost: e\r\nContent-Length: 2\r\n\r\nhi");
    let second = conn.read_response().json();
    assert_eq!(
        (second["path"].as_str(), second["body"].as_str()),
        (Some("/second"), Some("hi"))
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let echo = Echo::start();
    let bytes = b"GET /a HTTP/1.1\r\nHost: e\r\n\r\nGET /b HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n";
    let responses = parse_responses(&raw(echo.addr, bytes, Duration::from_secs(5)));
    let paths: Vec<_> = responses
        .iter()
        .map(|r| r.json()["path"].as_str().map(str::to_string))
        .collect();
    assert_eq!(paths, [Some("/a".to_string()), Some("/b".to_string())]);
    assert_eq!(responses[1].header("connection"), Some("close"));
}

#[test]
fn connection_close_is_honoured() {
    let echo = Echo::start();
    let mut conn = Conn::open(echo.addr);
    conn.send(b"GET / HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n");
    assert_eq!(conn.read_response().status, 200);
    assert!(conn.closed_within(Duration::from_secs(5)));
}

#[test]
fn status_path_answers_with_that_status() {
    let echo = Echo::start();
    let response = get(echo.addr, "/__status/503", &[]);
    assert_eq!(response.status, 503);
    assert_eq!(response.json()["path"], "/__status/503");
}

#[test]
fn sleep_path_answers_after_the_delay() {
    let echo = Echo::start();
    let started = Instant::now();
    assert_eq!(get(echo.addr, "/__sleep/300", &[]).status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "answered after {:?}",
        started.elapsed()
    );
}

#[test]
fn close_path_closes_without_an_answer() {
    let echo = Echo::start();
    let bytes = raw(
        echo.addr,
        b"GET /__close HTTP/1.1\r\nHost: e\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(
        bytes.is_empty(),
        "got {:?}",
        String::from_utf8_lossy(&bytes)
    );
}

#[test]
fn malformed_requests_get_400_and_a_close() {
    let echo = Echo::start();
    let cases: [&[u8]; 5] = [
        b"NOT HTTP\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: e\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : e\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: e\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\nHost: e\n\n",
    ];
    for case in cases {
        let responses = parse_responses(&raw(echo.addr, case, Duration::from_secs(5)));
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [400], "for {:?}", String::from_utf8_lossy(case));
    }
}

#[test]
fn websocket_upgrade_answers_101_with_the_rfc_6455_accept_and_then_echoes_bytes() {
    let echo = Echo::start();
    let mut conn = Conn::open(echo.addr);
    conn.send(
        b"GET /chat HTTP/1.1\r\nHost: e\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let response = conn.read_response();
    assert_eq!(response.status, 101);
    assert_eq!(
        response.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(response.header("upgrade"), Some("websocket"));
    conn.send(b"\x81\x05hello");
    assert_eq!(conn.read_bytes(7, Duration::from_secs(5)), b"\x81\x05hello");
}

#[test]
fn seen_count_counts_requests_the_echo_received() {
    let echo = Echo::start();
    assert_eq!(echo.seen_count(), 0);
    get(echo.addr, "/one", &[]);
    get(echo.addr, "/two", &[("X-N", "2")]);
    let seen = echo.wait_seen(2);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1]["path"], "/two");
    assert_eq!(echoed_header_values(&seen[1], "x-n"), ["2"]);
}

#[test]
fn sigterm_makes_the_echo_exit_zero_promptly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_echo"))
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn echo");
    let mut first = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first)
        .expect("read first line");
    assert!(first.starts_with("listening on 127.0.0.1:"), "{first:?}");
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-s", "TERM", &pid])
        .status()
        .expect("run kill")
        .success());
    let exited = eventually(Duration::from_secs(3), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().expect("wait for echo");
    assert!(
        exited && status.success(),
        "echo did not exit 0 after SIGTERM: {status}"
    );
}

#[test]
fn sha256_matches_fips_180_vectors() {
    assert_eq!(
        hex(&sha256(b"")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex(&sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex(&sha256(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
}

#[test]
fn hmac_sha256_matches_rfc_4231() {
    // Test case 2: a short key.
    assert_eq!(
        hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // Test case 6: a key longer than the block size is hashed first.
    assert_eq!(
        hex(&hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

#[test]
fn minted_hs256_token_matches_the_well_known_example() {
    let token = mint_hs256(
        b"your-256-bit-secret",
        r#"{"alg":"HS256","typ":"JWT"}"#,
        r#"{"sub":"1234567890","name":"John Doe","iat":1516239022}"#,
    );
    assert_eq!(
        token,
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    );
}

#[test]
fn b64url_round_trips_every_length_without_padding() {
    for len in 0..10u8 {
        let bytes: Vec<u8> = (0..len)
            .map(|i| i.wrapping_mul(97).wrapping_add(250))
            .collect();
        let text = b64url(&bytes);
        assert!(!text.contains(['=', '+', '/']), "{text}");
        assert_eq!(b64url_decode(&text).as_deref(), Some(&bytes[..]));
    }
    assert_eq!(b64url(b"\xfb\xff"), "-_8");
}
