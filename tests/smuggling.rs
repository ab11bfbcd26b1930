//! Request smuggling and desync vectors from the public suites, sent as raw
//! bytes through the real binary to a recording upstream. Each case
//! is refused (its status, the connection closed, not a byte upstream) or
//! reaches the upstream as exactly the requests listed, with the answers the
//! client gets.
//!
//! Sources of the vector families (the bytes below are written for this file):
//! - defparam/smuggler, Transfer-Encoding mutations:
//!   <https://github.com/defparam/smuggler/blob/master/configs/exhaustive.py>
//! - PortSwigger http-request-smuggler, DesyncBox permutations:
//!   <https://github.com/PortSwigger/http-request-smuggler/blob/master/src/burp/DesyncBox.java>
//! - narfindustries/http-garden, trophy list (server and transducer bugs):
//!   <https://github.com/narfindustries/http-garden/blob/main/TROPHIES.md>
//! - RFC 9112 (message framing, §3.2 Host, §5 field lines, §6.3 body length,
//!   §7.1 chunked) <https://www.rfc-editor.org/rfc/rfc9112> and RFC 9110 (§5.1
//!   tokens, §9 methods) <https://www.rfc-editor.org/rfc/rfc9110>
//! - RFC 6455 §4 (the WebSocket handshake) <https://www.rfc-editor.org/rfc/rfc6455>
//!   and the "websocket-smuggle" attack <https://github.com/0ang3el/websocket-smuggle>

mod common;

use common::recorder::{Recorded, Recorder, Reply, Seen};
use common::*;
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
roles: [viewer, admin]
routes:
  - { path: "/api/content/{id}", methods: [DELETE], upstream: app, roles: [admin] }
  - { path: /api/**, upstream: app }
  - { path: /, upstream: app, auth: none }
  - { path: /p/**, upstream: app, auth: none }
"#;

/// How long an answer may take: a refusal is immediate, never a body timeout.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);
/// A request hidden where a parser that reads the framing the other way finds it.
const SMUGGLED: &[u8] = b"GET /p/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n";
/// Sent after a forwarded case: its answer must be the next one on the connection.
const PROBE: &[u8] = b"GET /p/probe HTTP/1.1\r\nHost: gw.test\r\n\r\n";
/// Pipelined behind a refused request: it must never be answered or forwarded.
const NEXT: &[u8] = b"GET /p/next HTTP/1.1\r\nHost: gw.test\r\n\r\n";

/// A request as the upstream must receive it: method, target, body.
type Expect = (&'static str, &'static str, Vec<u8>);

/// What a case must come to.
enum Verdict {
    /// This status within 3 s and no other answer; the connection closes and
    /// not one byte reaches the upstream.
    Refused(u16),
    /// 400 within 3 s and no other answer, and the connection closes; the
    /// upstream may have had the head of a streamed body, never a whole request.
    CutOff,
    /// One of these statuses and not one byte at the upstream; whether the
    /// connection stays open is not this case's concern.
    Answered(&'static [u16]),
    /// The upstream receives exactly these requests, in order; the client gets
    /// each one's 200 and its connection carries the next request.
    Forwarded(Vec<Expect>),
    /// Either `Refused(400)`, or `Forwarded` this request with a Host: never a
    /// changed one.
    IntactOrRefused(Expect),
}

struct Case {
    name: &'static str,
    wire: Vec<u8>,
    verdict: Verdict,
}

fn refused(name: &'static str, wire: Vec<u8>) -> Case {
    Case {
        name,
        wire,
        verdict: Verdict::Refused(400),
    }
}

fn case(name: &'static str, wire: Vec<u8>, verdict: Verdict) -> Case {
    Case {
        name,
        wire,
        verdict,
    }
}

/// `request_line`, `Host: gw.test`, the `fields` (raw, CRLF added), a blank
/// line and `body`.
fn wire(request_line: &str, fields: &[&[u8]], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{request_line}\r\nHost: gw.test\r\n").into_bytes();
    for field in fields {
        out.extend_from_slice(field);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn post(fields: &[&[u8]], body: &[u8]) -> Vec<u8> {
    wire("POST / HTTP/1.1", fields, body)
}

fn chunked(body: &[u8]) -> Vec<u8> {
    post(&[b"Transfer-Encoding: chunked"], body)
}

/// The classic desync: `te_line` beside a `Content-Length` that covers the
/// last chunk and a smuggled request, so a CL reader and a TE reader disagree.
fn cl_te_to(request_line: &str, te_line: &[u8]) -> Vec<u8> {
    let body = [b"0\r\n\r\n", SMUGGLED].concat();
    let length = format!("Content-Length: {}", body.len());
    wire(request_line, &[te_line, length.as_bytes()], &body)
}

fn cl_te(te_line: &[u8]) -> Vec<u8> {
    cl_te_to("POST / HTTP/1.1", te_line)
}

/// `te_line` alone, with the last chunk and a smuggled request behind it.
fn te_only(te_line: &[u8]) -> Vec<u8> {
    post(&[te_line], &[b"0\r\n\r\n", SMUGGLED].concat())
}

/// A `Content-Length: value` with a smuggled request as the body.
fn cl(value: &str) -> Vec<u8> {
    post(&[format!("Content-Length: {value}").as_bytes()], SMUGGLED)
}

fn expect(method: &'static str, target: &'static str, body: &[u8]) -> Expect {
    (method, target, body.to_vec())
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Runs every case on a connection of its own and asserts them all at once,
/// so one run lists every case that fails.
fn assert_cases(gw: &Gateway, upstream: &Recorder, cases: Vec<Case>) {
    let failures: Vec<String> = cases
        .into_iter()
        .filter_map(|c| {
            upstream.take(); // whatever an earlier case left behind
            let mut conn = Conn::open(gw.addr);
            conn.send(&c.wire);
            let outcome = check(&mut conn, upstream, &c.verdict);
            if outcome.is_err() {
                // What a failed case still sets off lands before the next one starts.
                conn.closed_within(Duration::from_millis(500));
            }
            outcome
                .err()
                .map(|e| format!("{}: {e}\n    sent {}", c.name, show(&c.wire)))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Whether what `conn` (its case sent) and `upstream` get bears `verdict` out.
fn check(conn: &mut Conn, upstream: &Recorder, verdict: &Verdict) -> Result<(), String> {
    match verdict {
        Verdict::Refused(status) => {
            refusal(conn, *status)?;
            nothing_reached(upstream)
        }
        Verdict::CutOff => {
            refusal(conn, 400)?;
            let seen = upstream.take();
            if seen.requests.is_empty() {
                Ok(())
            } else {
                Err(format!("the upstream got {:?}", summary(&seen.requests)))
            }
        }
        Verdict::Answered(statuses) => {
            let r = answer(conn)?;
            if !statuses.contains(&r.status) {
                return Err(format!(
                    "answered {} {:?}, not {statuses:?}",
                    r.status,
                    r.text()
                ));
            }
            nothing_reached(upstream)
        }
        Verdict::Forwarded(expected) => {
            for (_, target, _) in expected {
                answered_by_upstream(&answer(conn)?, target)?;
            }
            forwarded_then_probe(conn, upstream, expected).map(drop)
        }
        Verdict::IntactOrRefused(expected) => {
            let r = answer(conn)?;
            if r.status == 400 {
                after_refusal(conn)?;
                return nothing_reached(upstream);
            }
            answered_by_upstream(&r, expected.1)?;
            let seen = forwarded_then_probe(conn, upstream, std::slice::from_ref(expected))?;
            match seen[0].headers_named("host")[..] {
                [_] => Ok(()),
                _ => Err(format!("forwarded without one Host: {:?}", seen[0].headers)),
            }
        }
    }
}

/// The next answer, within `ANSWER_WITHIN`.
fn answer(conn: &mut Conn) -> Result<Response, String> {
    conn.try_read_response(false, ANSWER_WITHIN)
        .ok_or_else(|| format!("no answer within {ANSWER_WITHIN:?}"))
}

/// `status`, then nothing more: no second answer, and the connection closed.
fn refusal(conn: &mut Conn, status: u16) -> Result<(), String> {
    let r = answer(conn)?;
    if r.status != status {
        return Err(format!(
            "answered {} {:?}, expected {status}",
            r.status,
            r.text()
        ));
    }
    after_refusal(conn)
}

fn after_refusal(conn: &mut Conn) -> Result<(), String> {
    if let Some(next) = conn.try_read_response(false, Duration::from_secs(2)) {
        return Err(format!(
            "a second answer followed: {} {:?}",
            next.status,
            next.text()
        ));
    }
    if conn.closed_within(Duration::ZERO) {
        Ok(())
    } else {
        Err("the connection was left open".into())
    }
}

/// The recording upstream answers 200 with the request's target as its body.
fn answered_by_upstream(r: &Response, target: &str) -> Result<(), String> {
    match (r.status, r.text()) {
        (200, body) if body == target => Ok(()),
        (status, body) => Err(format!(
            "answered {status} {body:?}, expected 200 {target:?}"
        )),
    }
}

fn nothing_reached(upstream: &Recorder) -> Result<(), String> {
    let seen = upstream.take();
    if seen.nothing() {
        Ok(())
    } else {
        Err(format!("the upstream received {:?}", raw_of(&seen)))
    }
}

/// Sends the probe, whose answer must come next, then compares what the
/// upstream framed with `expected` and the probe; returns what it framed.
fn forwarded_then_probe(
    conn: &mut Conn,
    upstream: &Recorder,
    expected: &[Expect],
) -> Result<Vec<Seen>, String> {
    conn.send(PROBE);
    answered_by_upstream(&answer(conn)?, "/p/probe").map_err(|e| format!("probe: {e}"))?;
    let seen = upstream.take().requests;
    let want: Vec<String> = expected
        .iter()
        .chain([&expect("GET", "/p/probe", b"")])
        .map(|(m, t, b)| format!("{m} {t} {}", show(b)))
        .collect();
    if summary(&seen) == want {
        Ok(seen)
    } else {
        Err(format!(
            "the upstream got {:?}, expected {want:?}",
            summary(&seen)
        ))
    }
}

fn raw_of(seen: &Recorded) -> Vec<String> {
    seen.bytes.iter().map(|b| show(b)).collect()
}

fn summary(requests: &[Seen]) -> Vec<String> {
    requests
        .iter()
        .map(|r| format!("{} {} {}", r.method, r.target, show(&r.body)))
        .collect()
}

fn start() -> (Recorder, Gateway) {
    let upstream = Recorder::start();
    let gw = Gateway::start(CONFIG, upstream.addr, &[]);
    (upstream, gw)
}

#[test]
fn ambiguous_or_disguised_body_framing_is_refused_and_closed_before_reaching_the_upstream() {
    let (upstream, gw) = start();
    // Transfer-Encoding disguises beside a Content-Length: defparam/smuggler
    // (exhaustive.py) and DesyncBox mutation names, http-garden where noted.
    let beside_a_length: &[(&str, &[u8])] = &[
        ("vanilla CL.TE", b"Transfer-Encoding: chunked"),
        ("yelling", b"TRANSFER-ENCODING: CHUNKED"),
        ("valueprefix1", b"Transfer-Encoding:  chunked"),
        ("tabprefix1", b"Transfer-Encoding:\tchunked"),
        ("tabsuffix", b"Transfer-Encoding: chunked\t"),
        ("quoted", b"Transfer-Encoding: \"chunked\""),
        ("aposed", b"Transfer-Encoding: 'chunked'"),
        (
            "leading comma (http-garden transducer 9)",
            b"Transfer-Encoding: ,chunked",
        ),
        ("vertprefix1", b"Transfer-Encoding:\x0bchunked"),
        ("0dsuffix", b"Transfer-Encoding: chunked\r"),
        ("unispace", b"Transfer-Encoding:\xa0chunked"),
        ("spaceFF", b"Transfer-Encoding:\xffchunked"),
        ("accentCH", b"Transfer-Encoding: ch\x96nked"),
        (
            "connection",
            b"Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked",
        ),
    ];
    // Transfer-Encoding alone, anything but exactly `chunked` (RFC 9112 6.1).
    let alone: &[(&str, &[u8])] = &[
        ("commaCow", b"Transfer-Encoding: chunked, identity"),
        ("cowComma", b"Transfer-Encoding: identity, chunked"),
        ("gzip, chunked", b"Transfer-Encoding: gzip, chunked"),
        ("nested", b"Transfer-Encoding: identity, chunked, identity"),
        ("xchunked", b"Transfer-Encoding: xchunked"),
        ("lazygrep", b"Transfer-Encoding: chunk"),
        (
            "revdualchunk",
            b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked",
        ),
        (
            "twice (http-garden server 11)",
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        ),
        ("midspace-0c", b"Transfer-Encoding:\x0cchunked"),
        ("endspace-0b", b"Transfer-Encoding: chunked\x0b"),
        ("suffix1:12", b"Transfer-Encoding: chunked\x0c"),
        ("suffix1:0", b"Transfer-Encoding: chunked\x00"),
        ("suffix1:127", b"Transfer-Encoding: chunked\x7f"),
        (
            "\\xa0 around (http-garden server 12)",
            b"Transfer-Encoding: \xa0chunked\xa0",
        ),
    ];
    // Content-Length that is not one decimal number (RFC 9110 8.6; http-garden
    // server 10, 16, 26, 29, 38, transducer 1).
    let lengths: &[(&str, &str)] = &[
        ("empty", ""),
        ("plus sign", "+43"),
        ("minus sign", "-43"),
        ("underscore", "+4_3"),
        ("hex", "0x2b"),
        ("space inside", "4 3"),
        ("list of equal values", "43, 43"),
        ("list of different values", "43, 0"),
        ("trailing junk", "43Z"),
        ("twenty digits", "99999999999999999999"),
    ];
    let last_chunk_and_request = [b"0\r\n\r\n", SMUGGLED].concat();
    let mut cases: Vec<Case> = beside_a_length
        .iter()
        .map(|&(name, te)| refused(name, cl_te(te)))
        .chain(alone.iter().map(|&(name, te)| refused(name, te_only(te))))
        .chain(
            lengths
                .iter()
                .map(|&(name, value)| refused(name, cl(value))),
        )
        .collect();
    cases.extend([
        refused(
            "Content-Length before Transfer-Encoding",
            post(
                &[b"Content-Length: 48", b"Transfer-Encoding: chunked"],
                &last_chunk_and_request,
            ),
        ),
        refused(
            "Transfer-Encoding in HTTP/1.0",
            wire(
                "POST / HTTP/1.0",
                &[b"Transfer-Encoding: chunked"],
                &last_chunk_and_request,
            ),
        ),
        // http-garden server 23, 33, 42, transducer 11.
        refused(
            "two different lengths",
            post(&[b"Content-Length: 43", b"Content-Length: 0"], SMUGGLED),
        ),
        refused(
            "two different lengths, shorter first",
            post(&[b"Content-Length: 0", b"Content-Length: 43"], SMUGGLED),
        ),
        refused(
            "an empty length, then a length",
            post(&[b"Content-Length: ", b"Content-Length: 43"], SMUGGLED),
        ),
    ]);
    assert_cases(&gw, &upstream, cases);
}

#[test]
fn field_lines_that_are_not_tokens_or_bend_the_head_are_refused_and_closed() {
    let (upstream, gw) = start();
    // Each line sits in a POST without a length, a request pipelined behind it.
    let lines: &[(&str, &[u8])] = &[
        // Names that are not RFC 9110 tokens: DesyncBox names, http-garden
        // server 3, 8, 14, 18, 20, 28, 37.
        ("space1", b"Transfer-Encoding : chunked"),
        ("space before the colon", b"Content-Length : 43"),
        ("tab before the colon", b"Content-Length\t: 43"),
        ("spacejoin1", b"Transfer Encoding: chunked"),
        ("spjunk", b"Transfer-Encoding x: chunked"),
        ("backslash", b"Transfer\\Encoding: chunked"),
        ("0dspam", b"Transfer\r-Encoding: chunked"),
        ("accentTE", b"Transf\x82r-Encoding: chunked"),
        ("\\x85 after the name", b"Content-Length\x85: 43"),
        ("non-ASCII name", b"\xefoo: bar"),
        ("quote in a name", b"X\"Name: v"),
        ("parenthesis in a name", b"X(Name: v"),
        ("slash in a name", b"X/Name: v"),
        ("at sign in a name", b"X@Name: v"),
        ("empty name", b": ignored"),
        ("no colon", b"Content-Length 43"),
        ("a name over two lines", b"Transfer-\r\nEncoding: chunked"),
        // obs-fold (RFC 9112 5.2): DesyncBox nameprefix, linewrapped, tabwrap, gareth1.
        ("nameprefix1", b"Foo: bar\r\n Transfer-Encoding: chunked"),
        ("nameprefix2", b"Foo: bar\r\n\tTransfer-Encoding: chunked"),
        ("linewrapped1", b"Transfer-Encoding:\n chunked"),
        ("tabwrap", b"Transfer-Encoding: \r\n\tchunked"),
        ("gareth1", b"Transfer-Encoding\n : chunked"),
        ("folded plain value", b"X-Foo: a\r\n b"),
        // Bytes that end or bend a line: DesyncBox badsetup, http-garden
        // server 13, 35, transducer 14.
        ("badsetupCR", b"Foo: bar\rTransfer-Encoding: chunked"),
        ("CR inside a value", b"Visible: :/\rSmuggled: :)"),
        (
            "NUL inside a value",
            b"Test: test\x00THESE BYTES GET DROPPED",
        ),
        ("bare LF inside a name", b"Te\nst: test"),
    ];
    let mut cases: Vec<Case> = lines
        .iter()
        .map(|&(name, line)| refused(name, post(&[line], SMUGGLED)))
        .collect();
    let heads: &[(&str, &[u8])] = &[
        // http-garden server 4 and 30.
        (
            "whitespace before the first field",
            b"POST / HTTP/1.1\r\n\tContent-Length: 43\r\nHost: gw.test\r\n\r\n",
        ),
        (
            "CR and a byte where the head ends",
            b"GET / HTTP/1.1\r\nHost: gw.test\r\n\rZGET /p/evil: HTTP/1.1\r\n\r\n",
        ),
        // RFC 9112 3.2.
        (
            "two Host fields",
            b"GET / HTTP/1.1\r\nHost: gw.test\r\nHost: other.test\r\n\r\n",
        ),
        ("no Host in HTTP/1.1", b"GET / HTTP/1.1\r\n\r\n"),
    ];
    cases.extend(
        heads
            .iter()
            .map(|&(name, head)| refused(name, [head, SMUGGLED].concat())),
    );
    // A bare LF may end a field line (RFC 9112 2.2): this one is refused for
    // the Content-Length it then has beside a Transfer-Encoding.
    cases.push(refused(
        "badsetupLF",
        cl_te(b"Foo: bar\nTransfer-Encoding: chunked"),
    ));
    assert_cases(&gw, &upstream, cases);
}

#[test]
fn chunked_bodies_that_cannot_be_valid_get_400_at_once_and_never_arrive_whole() {
    let (upstream, gw) = start();
    // RFC 9112 7.1; http-garden server 1, 17, 22, 25, 31, 47, transducer 2, 3, 4, 7, 13.
    let bodies: &[(&str, &[u8])] = &[
        ("bare LF after the size", b"5\nhello\r\n0\r\n\r\n"),
        ("bare LF only, then the sender waits", b"0\n\n"),
        ("bare LF in an extension", b"5;a=b\nhello\r\n0\r\n\r\n"),
        ("bare CR, then the sender waits", b"1\r0\n"),
        ("17 hex digits", b"00000000000000005\r\nhello\r\n0\r\n\r\n"),
        ("0x prefix", b"0x5\r\nhello\r\n0\r\n\r\n"),
        ("plus sign", b"+5\r\nhello\r\n0\r\n\r\n"),
        ("minus sign", b"-1\r\nh\r\n0\r\n\r\n"),
        ("two numbers", b"5 5\r\nhello\r\n0\r\n\r\n"),
        ("not hex", b"zz\r\nhello\r\n0\r\n\r\n"),
        ("empty size line", b"\r\n\r\n"),
        (
            "underscore",
            b"0_2e\r\n\r\nGET /p/smuggled HTTP/1.1\r\n\r\n0\r\n\r\n",
        ),
        (
            "junk after the size",
            b"1these-bytes-never-get-validated\r\nZ\r\n0\r\n\r\n",
        ),
        (
            "CR before the extension",
            b"5\r\r;ABCD\r\n34\r\nE\r\n0\r\n\r\n",
        ),
        (
            "control byte in an extension",
            b"5;a\x01b\r\nhello\r\n0\r\n\r\n",
        ),
        ("CR inside an extension", b"5;a\rb\r\nhello\r\n0\r\n\r\n"),
        (
            "not a chunk at all",
            b"INVALID!!!\r\nGET /p/smuggled HTTP/1.1\r\n\r\n",
        ),
        ("data longer than its size", b"5\r\nhelloXX\r\n0\r\n\r\n"),
    ];
    let cases = bodies
        .iter()
        .map(|&(name, body)| case(name, chunked(body), Verdict::CutOff))
        .collect();
    assert_cases(&gw, &upstream, cases);
}

#[test]
fn well_framed_requests_reach_the_upstream_exactly_and_in_order() {
    let (upstream, gw) = start();
    let pass = |name, wire, expected| case(name, wire, Verdict::Forwarded(expected));
    let length = format!("Content-Length: {}", SMUGGLED.len());
    let cases = vec![
        pass(
            "chunk extension with a token value",
            chunked(b"5;name=value\r\nhello\r\n0\r\n\r\n"),
            vec![expect("POST", "/", b"hello")],
        ),
        pass(
            "chunk extension with a quoted value",
            chunked(b"5;name=\"quoted\"\r\nhello\r\n0\r\n\r\n"),
            vec![expect("POST", "/", b"hello")],
        ),
        pass(
            "upper-case hex and leading zeros",
            chunked(b"0A\r\n0123456789\r\n0005\r\nhello\r\n0\r\n\r\n"),
            vec![expect("POST", "/", b"0123456789hello")],
        ),
        pass(
            "a trailer that reads like a request line (http-garden server bug 39)",
            chunked(b"5\r\nhello\r\n0\r\nX:POST /p/evil HTTP/1.1\r\n\r\n"),
            vec![expect("POST", "/", b"hello")],
        ),
        pass(
            "chunk data holding a last chunk and a request (http-garden transducer bug 17)",
            chunked(b"17\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n\r\n0\r\n\r\n"),
            vec![expect("POST", "/", b"0\r\n\r\nGET / HTTP/1.1\r\n\r\n")],
        ),
        pass(
            "sarcasm: transfer coding names are case-insensitive",
            post(&[b"TrAnSFer-EnCODinG: cHuNkeD"], b"5\r\nhello\r\n0\r\n\r\n"),
            vec![expect("POST", "/", b"hello")],
        ),
        pass(
            "a request inside a Content-Length body stays body",
            post(&[length.as_bytes()], SMUGGLED),
            vec![expect("POST", "/", SMUGGLED)],
        ),
        pass(
            "leading zeros in Content-Length are decimal (http-garden server bug 32)",
            post(&[b"Content-Length: 010"], b"0123456789"),
            vec![expect("POST", "/", b"0123456789")],
        ),
        pass(
            "pipelined: by length, chunked, without a body",
            [
                wire("POST /p/one HTTP/1.1", &[b"Content-Length: 5"], b"hello"),
                wire(
                    "POST /p/two HTTP/1.1",
                    &[b"Transfer-Encoding: chunked"],
                    b"3\r\nabc\r\n0\r\n\r\n",
                ),
                wire("GET /p/three HTTP/1.1", &[], b""),
            ]
            .concat(),
            vec![
                expect("POST", "/p/one", b"hello"),
                expect("POST", "/p/two", b"abc"),
                expect("GET", "/p/three", b""),
            ],
        ),
        pass(
            "pipelined after Content-Length: 0 (http-garden server bug 48)",
            [
                wire("POST / HTTP/1.1", &[b"Content-Length: 0"], b""),
                wire("POST /p/two HTTP/1.1", &[length.as_bytes()], SMUGGLED),
            ]
            .concat(),
            vec![expect("POST", "/", b""), expect("POST", "/p/two", SMUGGLED)],
        ),
        pass(
            "HTTP/1.0 without Host",
            b"GET /p/old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec(),
            vec![expect("GET", "/p/old", b"")],
        ),
    ];
    assert_cases(&gw, &upstream, cases);
}

#[test]
fn a_connection_header_naming_framing_or_host_never_changes_the_forwarded_request() {
    let (upstream, gw) = start();
    let intact = |name, wire| {
        case(
            name,
            wire,
            Verdict::IntactOrRefused(expect("POST", "/", b"hello")),
        )
    };
    // DesyncBox "connection".
    let cases = vec![
        intact(
            "Connection: Content-Length",
            post(
                &[b"Connection: Content-Length", b"Content-Length: 5"],
                b"hello",
            ),
        ),
        intact(
            "Connection: Transfer-Encoding",
            post(
                &[
                    b"Connection: Transfer-Encoding",
                    b"Transfer-Encoding: chunked",
                ],
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        intact(
            "Connection: Host",
            post(&[b"Connection: Host", b"Content-Length: 5"], b"hello"),
        ),
        intact(
            "Connection: keep-alive, Content-Length, Host",
            post(
                &[
                    b"Connection: keep-alive, Content-Length, Host",
                    b"Content-Length: 5",
                ],
                b"hello",
            ),
        ),
    ];
    assert_cases(&gw, &upstream, cases);
}

#[test]
fn a_method_passes_only_in_its_exact_standard_spelling_and_others_are_never_forwarded() {
    let (upstream, gw) = start();
    let viewer = format!("Authorization: Bearer {}", token("alice", "viewer", ""));
    let admin = format!("Authorization: Bearer {}", token("root", "admin", ""));
    let (viewer, admin) = (viewer.as_bytes(), admin.as_bytes());
    let status =
        |name, wire, statuses: &'static [u16]| case(name, wire, Verdict::Answered(statuses));
    // RFC 9110 9.1: methods are case-sensitive.
    let cases = vec![
        status(
            "delete skips the DELETE rule",
            wire("delete /api/content/7 HTTP/1.1", &[viewer], b""),
            &[400],
        ),
        status(
            "Delete",
            wire("Delete /api/content/7 HTTP/1.1", &[viewer], b""),
            &[400],
        ),
        status("Get", wire("Get /p/x HTTP/1.1", &[], b""), &[400]),
        status(
            "post",
            wire("post /p/x HTTP/1.1", &[b"Content-Length: 0"], b""),
            &[400],
        ),
        status("patch", wire("patch /p/x HTTP/1.1", &[], b""), &[400]),
        status("trace", wire("trace /p/x HTTP/1.1", &[], b""), &[400]),
        status(
            "the DELETE rule itself",
            wire("DELETE /api/content/7 HTTP/1.1", &[viewer], b""),
            &[403],
        ),
        status("TRACE", wire("TRACE /p/x HTTP/1.1", &[], b""), &[405]),
        status(
            "CONNECT",
            b"CONNECT gw.test:443 HTTP/1.1\r\nHost: gw.test:443\r\n\r\n".to_vec(),
            &[405],
        ),
        status(
            "PROPFIND on a public route without methods",
            wire("PROPFIND /p/x HTTP/1.1", &[], b""),
            &[404, 405],
        ),
        status(
            "PROPFIND on a signed-in route without methods",
            wire("PROPFIND /api/things HTTP/1.1", &[viewer], b""),
            &[404, 405],
        ),
        status(
            "PURGE on a public route without methods",
            wire("PURGE /p/x HTTP/1.1", &[], b""),
            &[404, 405],
        ),
        case(
            "DELETE by an admin",
            wire("DELETE /api/content/7 HTTP/1.1", &[admin], b""),
            Verdict::Forwarded(vec![expect("DELETE", "/api/content/7", b"")]),
        ),
        case(
            "GET by a viewer",
            wire("GET /api/content/7 HTTP/1.1", &[viewer], b""),
            Verdict::Forwarded(vec![expect("GET", "/api/content/7", b"")]),
        ),
    ];
    assert_cases(&gw, &upstream, cases);
}

#[test]
fn an_extension_method_is_forwarded_only_by_a_route_that_lists_it() {
    let upstream = Recorder::start();
    let config = CONFIG.replace(
        "routes:\n",
        "routes:\n  - { path: /dav/**, methods: [PROPFIND], upstream: app, auth: none }\n",
    );
    let gw = Gateway::start(&config, upstream.addr, &[]);
    let cases = vec![
        case(
            "PROPFIND where it is listed",
            wire("PROPFIND /dav/x HTTP/1.1", &[b"Content-Length: 4"], b"<x/>"),
            Verdict::Forwarded(vec![expect("PROPFIND", "/dav/x", b"<x/>")]),
        ),
        case(
            "PROPFIND elsewhere",
            wire("PROPFIND /p/x HTTP/1.1", &[], b""),
            Verdict::Answered(&[404, 405]),
        ),
        case(
            "propfind, which no route lists",
            wire("propfind /dav/x HTTP/1.1", &[], b""),
            Verdict::Answered(&[400, 404, 405]),
        ),
    ];
    assert_cases(&gw, &upstream, cases);
}

#[test]
fn framing_is_checked_before_any_answer_the_gateway_gives_itself() {
    // JWKS is served by the gateway itself only with an asymmetric algorithm.
    let upstream = Recorder::start();
    let config = CONFIG.replace("  audience: api\n", "  audience: api\n  algorithm: EdDSA\n");
    let gw = Gateway::start(&config, upstream.addr, &[("JWT_SECRET", UNSET)]);
    let jwks = "GET /.well-known/jwks.json HTTP/1.1";
    let two_lengths = |line| {
        wire(
            line,
            &[b"Content-Length: 5", b"Content-Length: 0"],
            &[b"0\r\n\r\n", SMUGGLED].concat(),
        )
    };
    // Issue 19 finding 3: each answer would otherwise come before a body read
    // its own way, and the smuggled request would be served next.
    let cases = vec![
        case(
            "plain JWKS, for contrast",
            wire(jwks, &[], b""),
            Verdict::Answered(&[200]),
        ),
        refused(
            "JWKS with CL and TE",
            cl_te_to(jwks, b"Transfer-Encoding: chunked"),
        ),
        refused("JWKS with two lengths", two_lengths(jwks)),
        refused(
            "JWKS with chunked, identity",
            wire(
                jwks,
                &[b"Transfer-Encoding: chunked, identity"],
                &[b"0\r\n\r\n", SMUGGLED].concat(),
            ),
        ),
        refused(
            "TRACE with CL and TE",
            cl_te_to("TRACE / HTTP/1.1", b"Transfer-Encoding: chunked"),
        ),
        refused("TRACE with two lengths", two_lengths("TRACE / HTTP/1.1")),
        refused(
            "CONNECT with CL and TE",
            cl_te_to(
                "CONNECT gw.test:443 HTTP/1.1",
                b"Transfer-Encoding: chunked",
            ),
        ),
        refused(
            "an unrouted path with CL and TE",
            cl_te_to("POST /nowhere HTTP/1.1", b"Transfer-Encoding: chunked"),
        ),
        refused(
            "no token with CL and TE",
            cl_te_to("POST /api/things HTTP/1.1", b"Transfer-Encoding: chunked"),
        ),
        refused(
            "a lower-case method with CL and TE",
            cl_te_to(
                "delete /api/content/7 HTTP/1.1",
                b"Transfer-Encoding: chunked",
            ),
        ),
    ];
    assert_cases(&gw, &upstream, cases);
}

#[test]
fn a_refusal_that_left_the_body_unread_closes_the_connection() {
    let (upstream, gw) = start();
    let viewer = format!("Authorization: Bearer {}", token("alice", "viewer", ""));
    let closes = |name, status, wire: Vec<u8>| {
        case(
            name,
            [wire, NEXT.to_vec()].concat(),
            Verdict::Refused(status),
        )
    };
    let cases = vec![
        closes(
            "401 with a length body",
            401,
            wire(
                "POST /api/things HTTP/1.1",
                &[b"Content-Length: 5"],
                b"hello",
            ),
        ),
        closes(
            "401 with a chunked body",
            401,
            wire(
                "POST /api/things HTTP/1.1",
                &[b"Transfer-Encoding: chunked"],
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        closes(
            "403 with a body",
            403,
            wire(
                "DELETE /api/content/7 HTTP/1.1",
                &[viewer.as_bytes(), b"Content-Length: 5"],
                b"hello",
            ),
        ),
        closes(
            "404 with a body",
            404,
            wire("POST /nowhere HTTP/1.1", &[b"Content-Length: 5"], b"hello"),
        ),
        closes(
            "405 with a body",
            405,
            wire("TRACE /p/x HTTP/1.1", &[b"Content-Length: 5"], b"hello"),
        ),
    ];
    assert_cases(&gw, &upstream, cases);
}

#[test]
fn identity_header_lookalikes_never_reach_the_upstream() {
    let (upstream, gw) = start();
    let spoofs: &[&[u8]] = &[
        b"X.User.Id: admin",
        b"X_User_Id: admin",
        b"x.user.role: admin",
        b"X_USER_ROLE: admin",
        b"X.Workspace.Id: acme",
        b"X_User_Plan: enterprise",
    ];
    let viewer = format!("Authorization: Bearer {}", token("alice", "viewer", ""));
    let signed_in: Vec<&[u8]> = [&[viewer.as_bytes()][..], spoofs].concat();
    for (target, fields, id, role) in [
        ("/p/ids", spoofs.to_vec(), vec![], vec![]),
        ("/api/ids", signed_in, vec!["alice"], vec!["viewer"]),
    ] {
        let mut conn = Conn::open(gw.addr);
        conn.send(&wire(&format!("GET {target} HTTP/1.1"), &fields, b""));
        let r = conn.read_response();
        assert_eq!((r.status, r.text()), (200, target.to_string()));
        let seen = upstream.take().requests;
        assert_eq!(seen.len(), 1, "{target}: {seen:?}");
        let read_as = |name| seen[0].headers_read_as(name);
        assert_eq!(read_as("x-user-id"), id, "{target}");
        assert_eq!(read_as("x-user-role"), role, "{target}");
        assert!(read_as("x-workspace-id").is_empty(), "{target}");
        assert!(read_as("x-user-plan").is_empty(), "{target}");
    }
}

// ---------------------------------------------------------------------------
// WebSocket upgrades (RFC 6455 §4)
// ---------------------------------------------------------------------------

/// The sample key of RFC 6455 §1.3, and the accept it computes.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// An upstream that answers 101 where a test wants it to, whatever was asked:
/// `/p/status101` with no accept, `/p/wrong-accept`, `/p/no-upgrade` (the
/// right accept, no `Upgrade`), `/p/tunnel` a proper one; 200 elsewhere.
fn switching_upstream() -> Recorder {
    Recorder::with_script(|seen| {
        let accept = |value: &str| format!("Sec-WebSocket-Accept: {value}\r\n");
        let fields = match seen.target.as_str() {
            "/p/status101" => "Upgrade: websocket\r\n".to_string(),
            "/p/wrong-accept" => format!("Upgrade: websocket\r\n{}", accept("AAAA")),
            "/p/no-upgrade" => accept(ACCEPT),
            "/p/tunnel" => format!("Upgrade: websocket\r\n{}", accept(ACCEPT)),
            _ => return Reply::target_of(seen),
        };
        Reply::Switch(
            format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n{fields}\r\n")
                .into_bytes(),
        )
    })
}

/// The four fields of a valid handshake, as lines.
fn handshake_fields() -> Vec<Vec<u8>> {
    [
        "Upgrade: websocket".to_string(),
        "Connection: Upgrade".to_string(),
        format!("Sec-WebSocket-Key: {KEY}"),
        "Sec-WebSocket-Version: 13".to_string(),
    ]
    .map(String::into_bytes)
    .to_vec()
}

/// `request_line` with the valid handshake's fields, `replaced` swapped in
/// by name (an empty line drops the field), plus `extra`, then `body`.
fn handshake(
    request_line: &str,
    replaced: &[(&str, &str)],
    extra: &[&[u8]],
    body: &[u8],
) -> Vec<u8> {
    let mut fields = handshake_fields();
    for (name, line) in replaced {
        fields.retain(|f| !f.starts_with(name.as_bytes()));
        if !line.is_empty() {
            fields.push(line.as_bytes().to_vec());
        }
    }
    let mut refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
    refs.extend_from_slice(extra);
    wire(request_line, &refs, body)
}

#[test]
fn an_upgrade_that_is_no_valid_websocket_handshake_is_forwarded_without_it() {
    let upstream = switching_upstream();
    let gw = Gateway::start(CONFIG, upstream.addr, &[]);
    let get = "GET /p/ws HTTP/1.1";
    let cases: Vec<(&str, Vec<u8>, &[u8])> = vec![
        (
            "a POST with a body",
            handshake(
                "POST /p/ws HTTP/1.1",
                &[],
                &[b"Content-Length: 5"],
                b"hello",
            ),
            b"hello",
        ),
        (
            "no key",
            handshake(get, &[("Sec-WebSocket-Key", "")], &[], b""),
            b"",
        ),
        (
            "a key of 5 bytes",
            handshake(
                get,
                &[("Sec-WebSocket-Key", "Sec-WebSocket-Key: c2hvcnQ=")],
                &[],
                b"",
            ),
            b"",
        ),
        (
            "a key that is no base64",
            handshake(
                get,
                &[(
                    "Sec-WebSocket-Key",
                    "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==",
                )],
                &[],
                b"",
            ),
            b"",
        ),
        (
            "no version",
            handshake(get, &[("Sec-WebSocket-Version", "")], &[], b""),
            b"",
        ),
        (
            "version 8",
            handshake(
                get,
                &[("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8")],
                &[],
                b"",
            ),
            b"",
        ),
        (
            "no Connection: upgrade",
            handshake(get, &[("Connection", "Connection: keep-alive")], &[], b""),
            b"",
        ),
        (
            "HTTP/1.0",
            handshake("GET /p/ws HTTP/1.0", &[], &[], b""),
            b"",
        ),
    ];
    let mut failures = Vec::new();
    for (name, bytes, body) in cases {
        upstream.take();
        let mut conn = Conn::open(gw.addr);
        conn.send(&bytes);
        let outcome = answer(&mut conn)
            .and_then(|r| answered_by_upstream(&r, "/p/ws"))
            .and_then(|()| match &upstream.take().requests[..] {
                [seen] if seen.body == body && seen.headers_named("upgrade").is_empty() => Ok(()),
                other => Err(format!("the upstream got {other:?}")),
            });
        if let Err(e) = outcome {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_upstream_101_that_answers_no_valid_handshake_is_a_502_and_nothing_is_tunnelled() {
    let upstream = switching_upstream();
    let gw = Gateway::start(CONFIG, upstream.addr, &[]);
    let plain_upgrade: &[&[u8]] = &[b"Upgrade: websocket", b"Connection: Upgrade"];
    // Each is followed by a pipelined request that a tunnel would hand to the
    // upstream raw, unrouted and unauthorized (websocket-smuggle).
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "Upgrade without a key",
            wire("GET /p/status101 HTTP/1.1", plain_upgrade, b""),
        ),
        (
            "Upgrade on a POST with a body",
            wire(
                "POST /p/status101 HTTP/1.1",
                &[
                    b"Upgrade: websocket",
                    b"Connection: Upgrade",
                    b"Content-Length: 5",
                ],
                b"hello",
            ),
        ),
        (
            "no Upgrade at all",
            wire("GET /p/status101 HTTP/1.1", &[], b""),
        ),
        (
            "a valid handshake, a 101 without an accept",
            handshake("GET /p/status101 HTTP/1.1", &[], &[], b""),
        ),
        (
            "a valid handshake, a wrong accept",
            handshake("GET /p/wrong-accept HTTP/1.1", &[], &[], b""),
        ),
        (
            "a valid handshake, a 101 without Upgrade: websocket",
            handshake("GET /p/no-upgrade HTTP/1.1", &[], &[], b""),
        ),
    ];
    let mut failures = Vec::new();
    for (name, bytes) in cases {
        upstream.take();
        let mut conn = Conn::open(gw.addr);
        conn.send(&[bytes, SMUGGLED.to_vec()].concat());
        let outcome = refusal(&mut conn, 502).and_then(|()| {
            let seen = upstream.take();
            match (seen.requests.len(), seen.contains(b"/p/smuggled")) {
                (1, false) => Ok(()),
                _ => Err(format!("the upstream got {:?}", raw_of(&seen))),
            }
        });
        if let Err(e) = outcome {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_valid_handshake_answered_with_its_accept_becomes_a_tunnel() {
    let upstream = switching_upstream();
    let gw = Gateway::start(CONFIG, upstream.addr, &[]);
    let mut conn = Conn::open(gw.addr);
    conn.send(&handshake("GET /p/tunnel HTTP/1.1", &[], &[], b""));
    let r = conn
        .try_read_response(false, ANSWER_WITHIN)
        .expect("an answer to the handshake");
    assert_eq!(
        (r.status, r.header("sec-websocket-accept")),
        (101, Some(ACCEPT))
    );
    conn.send(b"ping");
    assert_eq!(conn.read_bytes(4, ANSWER_WITHIN), b"ping");
    let seen = upstream.take().requests;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].headers_named("upgrade"), vec!["websocket"]);
    assert_eq!(seen[0].headers_named("sec-websocket-key"), vec![KEY]);
}
