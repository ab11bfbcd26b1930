//! gRPC pass-through: a client's HTTP/2 stream relayed to an HTTP/2 upstream
//! stream, both ways at once (client, server and bidirectional streaming),
//! with the upstream's trailers (`grpc-status`, `grpc-message`) passed on and
//! the call's `grpc-timeout` enforced by the gateway as well. Like the rest of
//! the transport it imports no policy: the request head it sends is the one
//! the pipeline built for an HTTP/1 upstream (identity and forwarding fields
//! included), re-read as HTTP/2 fields.

use super::stream::{body_too_large, connection_field, fields_into, Stream};
use crate::http1::client::BODY_TOO_LARGE;
use crate::http1::exchange::Answering;
use crate::http1::{Head, Request};
use bytes::Bytes;
use h2::client::SendRequest;
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use pingora::prelude::*;
use std::future::poll_fn;
use std::time::{Duration, Instant};

/// Whether a request is a gRPC call (`application/grpc`, `application/grpc+proto`, ...).
pub fn is_grpc(req: &Request) -> bool {
    req.header("content-type").is_some_and(|v| {
        v.len() >= 16
            && v[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(v.get(16), None | Some(b'+' | b';'))
    })
}

/// The call's deadline from `grpc-timeout` (`1-8 digits` then `H M S m u n`).
pub fn timeout_of(req: &Request) -> Option<Duration> {
    let value = std::str::from_utf8(req.header("grpc-timeout")?).ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The upstream's request: `head` (an HTTP/1.1 request head, as the pipeline
/// wrote it for the upstream) as HTTP/2 fields, its `Host` as `:authority`.
pub fn upstream_request(head: &[u8], tls: bool) -> Result<http::Request<()>> {
    let bad = || Error::explain(InternalError, "gRPC request head");
    let mut fields = [httparse::EMPTY_HEADER; 160];
    let mut parsed = httparse::Request::new(&mut fields);
    parsed.parse(head).map_err(|_| bad())?;
    let method =
        Method::from_bytes(parsed.method.unwrap_or_default().as_bytes()).map_err(|_| bad())?;
    let host = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| h.value)
        .ok_or_else(bad)?;
    let uri = Uri::builder()
        .scheme(if tls { "https" } else { "http" })
        .authority(host)
        .path_and_query(parsed.path.unwrap_or("/"))
        .build()
        .map_err(|_| bad())?;
    let mut request = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(())
        .map_err(|_| bad())?;
    let map = request.headers_mut();
    for h in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            continue;
        };
        if name != http::header::HOST && !connection_field(&name, &value) {
            map.append(name, value);
        }
    }
    Ok(request)
}

/// Relays one call: the client's stream to a new upstream stream on `sender`
/// and the answer back, trailers included. `answer_timeout` bounds the wait
/// for the answer's head; `deadline` (the call's `grpc-timeout`) the whole
/// call: past it the upstream stream is reset and the client gets
/// `DEADLINE_EXCEEDED`, in trailers when the answer had begun. The request's
/// DATA is held to the stream's `limit_body` (the route's `max_body`): the
/// frame that would pass it is not forwarded, the upstream stream is reset,
/// and the call fails with `BODY_TOO_LARGE` (the pipeline's 413, which a gRPC
/// client reads as `RESOURCE_EXHAUSTED`), or, when the answer had begun, ends
/// with that status in trailers and is counted as the 413 it is.
pub async fn relay(
    client: &mut Stream,
    sender: SendRequest<Bytes>,
    request: http::Request<()>,
    answer_timeout: Duration,
    deadline: Option<Duration>,
    answering: &mut impl Answering,
) -> Result<()> {
    let started = Instant::now();
    let limit = client.body_limit;
    let mut sender = sender
        .ready()
        .await
        .map_err(|e| Error::because(ConnectError, "upstream HTTP/2 connection", e).into_up())?;
    let end = client.body.is_end_stream();
    let (answer, mut up) = sender
        .send_request(request, end)
        .map_err(|e| Error::because(WriteError, "opening the upstream stream", e).into_up())?;
    let call = async {
        let upward = async {
            if !end {
                send_up(&mut client.body, &mut up, limit).await?;
            }
            std::future::pending::<Result<()>>().await
        };
        let downward = async {
            // A client that cancels the call while it waits ends it upstream too.
            let reset = poll_fn(|cx| client.respond.poll_reset(cx));
            let answer = tokio::select! {
                answer = tokio::time::timeout(answer_timeout, answer) => match answer {
                    Err(_) => return Err(Error::explain(ReadTimedout, "upstream answer").into_up()),
                    Ok(Err(e)) => return Err(Error::because(ReadError, "upstream answer", e).into_up()),
                    Ok(Ok(answer)) => answer,
                },
                _ = reset => return Err(cancelled()),
            };
            answering.upstream_answered(started.elapsed());
            let (parts, body) = answer.into_parts();
            let mut head = Head::new(parts.status.as_u16());
            answering.own_fields(&mut head);
            let mut response = http::Response::new(());
            *response.status_mut() = parts.status;
            for (name, value) in &parts.headers {
                if !answering.replaces(name.as_str().as_bytes()) && !connection_field(name, value) {
                    response.headers_mut().append(name, value.clone());
                }
            }
            fields_into(&head, response.headers_mut());
            let trailers_only = body.is_end_stream();
            client.answered = Some(parts.status.as_u16());
            let send = client
                .respond
                .send_response(response, trailers_only)
                .map_err(|e| Error::because(WriteError, "answering the client", e).into_down())?;
            client.ended = trailers_only;
            if !trailers_only {
                // Kept on the stream, so that a call the gateway ends midway
                // can still be given its status in trailers.
                send_down(body, client.send.insert(send)).await?;
                client.ended = true;
            }
            Ok(())
        };
        tokio::select! {
            down = downward => down,
            up = upward => up,
        }
    };
    let result = match deadline {
        Some(deadline) => match tokio::time::timeout(deadline, call).await {
            Ok(result) => result,
            Err(_) => Err(Error::explain(ReadTimedout, "the call's grpc-timeout").into_up()),
        },
        None => call.await,
    };
    match result {
        Err(e) if client.answered.is_some() && !client.ended => {
            // The answer has begun: a call the gateway ends gets its status in
            // trailers (the messages are those of the pipeline's refusals).
            let (status, message, counted) = match e.etype() {
                ReadTimedout => ("4", "Gateway timeout", None),
                t if *t == BODY_TOO_LARGE => ("8", "Payload too large", Some(413)),
                _ => return Err(e),
            };
            end_with_status(client, status, message);
            if counted.is_some() {
                client.answered = counted;
            }
            Ok(())
        }
        other => other,
    }
}

/// Ends an answer that has begun with `grpc-status` and `grpc-message` in
/// trailers. Trailers can be sent on any stream whose answer is not over;
/// when they cannot, the client has reset the stream or the connection is
/// gone, and a reset is all that is left to try.
fn end_with_status(client: &mut Stream, status: &'static str, message: &'static str) {
    if let Some(send) = client.send.as_mut() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static(status));
        trailers.insert("grpc-message", HeaderValue::from_static(message));
        if send.send_trailers(trailers).is_err() {
            send.send_reset(Reason::CANCEL);
        }
    }
    client.ended = true;
}

/// The client's messages to the upstream, as its window allows, then its end
/// (with the client's trailers, if any). A DATA frame that takes the body
/// past `limit` bytes is not forwarded: the upstream stream is reset
/// (`CANCEL`) so the server stops, and the call fails as too large.
async fn send_up(body: &mut RecvStream, up: &mut SendStream<Bytes>, limit: u64) -> Result<()> {
    // A write the upstream stream no longer takes is not the call's failure:
    // a gRPC server that has answered in full may reset the stream with
    // NO_ERROR before the request's end (RFC 9113 §8.1), and a server that
    // failed is reported by the answer's side. Either way sending stops here.
    let mut received: u64 = 0;
    while let Some(data) = body.data().await {
        let mut data = data
            .map_err(|e| Error::because(ReadError, "reading the client's stream", e).into_down())?;
        received += data.len() as u64;
        if received > limit {
            up.send_reset(Reason::CANCEL);
            return Err(body_too_large());
        }
        let _ = body.flow_control().release_capacity(data.len());
        while !data.is_empty() {
            up.reserve_capacity(data.len());
            let Some(Ok(n)) = poll_fn(|cx| up.poll_capacity(cx)).await else {
                return Ok(());
            };
            if n > 0
                && up
                    .send_data(data.split_to(n.min(data.len())), false)
                    .is_err()
            {
                return Ok(());
            }
        }
    }
    let _ = match body.trailers().await {
        Ok(Some(trailers)) => up.send_trailers(trailers),
        _ => up.send_data(Bytes::new(), true),
    };
    Ok(())
}

/// The upstream's messages to the client, as its window allows, then its
/// trailers (`grpc-status`, `grpc-message`).
async fn send_down(mut body: RecvStream, down: &mut SendStream<Bytes>) -> Result<()> {
    let write =
        |e: h2::Error| Error::because(WriteError, "writing the client's stream", e).into_down();
    loop {
        let next = tokio::select! {
            next = body.data() => next,
            _ = poll_fn(|cx| down.poll_reset(cx)) => return Err(cancelled()),
        };
        let Some(data) = next else {
            break;
        };
        let mut data = data
            .map_err(|e| Error::because(ReadError, "reading the upstream stream", e).into_up())?;
        let _ = body.flow_control().release_capacity(data.len());
        while !data.is_empty() {
            down.reserve_capacity(data.len());
            let n = match poll_fn(|cx| down.poll_capacity(cx)).await {
                Some(Ok(n)) => n,
                Some(Err(e)) => return Err(write(e)),
                None => return Err(Error::explain(WriteError, "client stream closed").into_down()),
            };
            if n > 0 {
                down.send_data(data.split_to(n.min(data.len())), false)
                    .map_err(write)?;
            }
        }
    }
    match body.trailers().await {
        Ok(Some(trailers)) => down.send_trailers(trailers).map_err(write),
        Ok(None) => down.send_data(Bytes::new(), true).map_err(write),
        Err(e) => Err(Error::because(ReadError, "upstream trailers", e).into_up()),
    }
}

/// The client reset its stream: the call is over (and logged as the client's leaving).
fn cancelled() -> Box<Error> {
    Error::explain(ConnectionClosed, "client cancelled the call").into_down()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types_and_timeouts() {
        let req = |fields: &str| {
            Request::from_text(&format!("POST /s/M HTTP/1.1\r\nHost: a\r\n{fields}\r\n"))
        };
        assert!(is_grpc(&req("content-type: application/grpc\r\n")));
        assert!(is_grpc(&req("Content-Type: application/grpc+proto\r\n")));
        assert!(!is_grpc(&req("content-type: application/grpcx\r\n")));
        assert!(!is_grpc(&req("content-type: application/json\r\n")));
        let timeout = |v: &str| timeout_of(&req(&format!("grpc-timeout: {v}\r\n")));
        assert_eq!(timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(timeout("5000u"), Some(Duration::from_millis(5)));
        assert_eq!(timeout("123456789S"), None);
        assert_eq!(timeout("S"), None);
        assert_eq!(timeout("10x"), None);
    }

    #[test]
    fn the_upstream_request_is_the_http1_head_as_http2_fields() {
        let head = b"POST /pkg.Svc/Call HTTP/1.1\r\nHost: up:50051\r\ncontent-type: application/grpc\r\nte: trailers\r\ntransfer-encoding: chunked\r\nx-user-id: u1\r\n\r\n";
        let req = upstream_request(head, false).unwrap();
        assert_eq!(req.uri(), "http://up:50051/pkg.Svc/Call");
        assert_eq!(req.headers()["te"], "trailers");
        assert_eq!(req.headers()["x-user-id"], "u1");
        assert!(!req.headers().contains_key("host"));
        assert!(!req.headers().contains_key("transfer-encoding"));
    }
}
