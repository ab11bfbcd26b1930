//! One HTTP/2 stream as the downstream of one request: its body read as the
//! client sends it (flow control given back as it is taken), its answer's
//! head turned into HTTP/2 fields and its body sent as the client's window
//! allows. The same operations, with the same meanings and errors, as an
//! HTTP/1 client connection's, so the pipeline and the upstream exchange do
//! not know which one they answer.

use crate::http1::client::BODY_TOO_LARGE;
use crate::http1::{Head, Out};
use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderName, HeaderValue, Response};
use pingora::prelude::*;
use std::future::poll_fn;
use std::net::IpAddr;
use std::time::Duration;

/// How long one read of a request body, or one wait for the client's
/// window to open, may take (as for an HTTP/1 client).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long, and for how many bytes, a stream answered early is read on (`linger`).
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_LIMIT: usize = 1 << 20;

/// Answer fields that describe an HTTP/1 connection, never sent on an
/// HTTP/2 stream (RFC 9113 §8.2.2): the h2 crate refuses an answer that has one.
const CONNECTION_FIELDS: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

pub struct Stream {
    pub(super) respond: SendResponse<Bytes>,
    pub(super) body: RecvStream,
    pub(super) send: Option<SendStream<Bytes>>,
    tls: bool,
    peer: Option<IpAddr>,
    head_only: bool,
    /// The request's `Content-Length`, when it declared one.
    declared: Option<u64>,
    body_read: u64,
    /// The route's `max_body` (`limit_body`); the gRPC relay holds a call to it too.
    pub(super) body_limit: u64,
    pub(crate) answered: Option<u16>,
    /// The answer's last frame (END_STREAM) is sent.
    pub(super) ended: bool,
}

impl Stream {
    pub fn new(
        respond: SendResponse<Bytes>,
        body: RecvStream,
        parts: &http::request::Parts,
        tls: bool,
        peer: Option<IpAddr>,
    ) -> Stream {
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Stream {
            respond,
            body,
            send: None,
            tls,
            peer,
            head_only: parts.method == http::Method::HEAD,
            declared,
            body_read: 0,
            body_limit: u64::MAX,
            answered: None,
            ended: false,
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn peer_ip(&self) -> Option<IpAddr> {
        self.peer
    }

    pub fn answered(&self) -> Option<u16> {
        self.answered
    }

    /// See `http1::Client::limit_body`: a declared length over `max` fails now.
    pub fn limit_body(&mut self, max: u64) -> Result<()> {
        self.body_limit = max;
        match self.declared {
            Some(len) if len > max => Err(body_too_large()),
            _ => Ok(()),
        }
    }

    /// The next DATA of the request body, `None` at its end. The client's
    /// window is opened again by what was taken: at most a window's worth of
    /// a stream's body waits in the gateway at any time.
    pub async fn read_body(&mut self) -> Result<Option<Bytes>> {
        let data = match timeout(CLIENT_TIMEOUT, self.body.data()).await {
            Err(_) => return Err(Error::explain(ReadTimedout, "client body stalled").into_down()),
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => return Err(read_error(e)),
            Ok(Some(Ok(data))) => data,
        };
        let _ = self.body.flow_control().release_capacity(data.len());
        self.body_read += data.len() as u64;
        if self.body_read > self.body_limit {
            return Err(body_too_large());
        }
        Ok(Some(data))
    }

    /// Sends the answer's HEADERS: the head's fields, less the HTTP/1
    /// connection ones, with its length when known. A bodiless answer
    /// ends the stream here.
    pub fn write_head(&mut self, head: Head, out: Out) -> Result<()> {
        let mut answer = Response::new(());
        *answer.status_mut() = http::StatusCode::from_u16(head.status())
            .map_err(|_| Error::explain(InternalError, "answer status"))?;
        let fields = answer.headers_mut();
        fields_into(&head, fields);
        if let Out::Length(len) = out {
            fields.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        let end = out == Out::None || self.head_only;
        self.answered = Some(head.status());
        let send = self
            .respond
            .send_response(answer, end)
            .map_err(write_error)?;
        self.ended = end;
        self.send = (!end).then_some(send);
        Ok(())
    }

    /// Sends `data` as DATA frames, as fast as the client's windows allow.
    pub async fn write_body(&mut self, data: &[u8]) -> Result<()> {
        if data.is_empty() || self.ended {
            return Ok(());
        }
        let Some(send) = self.send.as_mut() else {
            return Ok(());
        };
        let mut data = Bytes::copy_from_slice(data);
        while !data.is_empty() {
            send.reserve_capacity(data.len());
            let capacity = match timeout(CLIENT_TIMEOUT, poll_fn(|cx| send.poll_capacity(cx))).await
            {
                Err(_) => {
                    return Err(Error::explain(WriteTimedout, "client does not read").into_down())
                }
                Ok(None) => {
                    return Err(
                        Error::explain(ConnectionClosed, "client reset the stream").into_down()
                    )
                }
                Ok(Some(Err(e))) => return Err(write_error(e)),
                Ok(Some(Ok(n))) => n,
            };
            if capacity == 0 {
                continue;
            }
            let piece = data.split_to(capacity.min(data.len()));
            send.send_data(piece, false).map_err(write_error)?;
        }
        Ok(())
    }

    /// Ends the answer: an empty last DATA frame when it has a body.
    pub fn finish(&mut self) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        match self.send.as_mut() {
            Some(send) => send.send_data(Bytes::new(), true).map_err(write_error),
            None => Ok(()),
        }
    }

    /// After an answer given before the request body was read (a refusal):
    /// reads and drops what the client still sends, for a moment, so the
    /// stream ends as both sides expect. Cut short, the stream is reset with
    /// NO_ERROR, which some clients (curl) take as a failure of an answer
    /// they have not read yet. The HTTP/1 side's lingering close, per stream.
    pub async fn linger(&mut self) {
        if self.body.is_end_stream() || !self.ended {
            return;
        }
        let discard = async {
            let mut left = LINGER_LIMIT;
            while let Some(Ok(data)) = self.body.data().await {
                let _ = self.body.flow_control().release_capacity(data.len());
                left = match left.checked_sub(data.len()) {
                    Some(left) => left,
                    None => return,
                };
            }
        };
        let _ = timeout(LINGER_TIME, discard).await;
    }

    /// Resolves when the client resets the stream while its answer is awaited.
    pub async fn gone(&mut self) -> Box<Error> {
        match poll_fn(|cx| self.respond.poll_reset(cx)).await {
            Ok(reason) => Error::explain(
                ConnectionClosed,
                format!("client reset the stream ({reason})"),
            )
            .into_down(),
            Err(e) => Error::because(ReadError, "client left", e).into_down(),
        }
    }
}

/// Whether a field describes an HTTP/1 connection and never goes on an
/// HTTP/2 stream (RFC 9113 §8.2.2).
pub(super) fn connection_field(name: &HeaderName, value: &HeaderValue) -> bool {
    CONNECTION_FIELDS.contains(&name.as_str()) || (name == http::header::TE && value != "trailers")
}

/// Adds the fields of `head` to `fields` as HTTP/2 fields (names lower-cased),
/// less the HTTP/1 connection ones.
pub(super) fn fields_into(head: &Head, fields: &mut http::HeaderMap) {
    for (name, value) in head.fields() {
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        if !connection_field(&name, &value) {
            fields.append(name, value);
        }
    }
}

pub(super) fn body_too_large() -> Box<Error> {
    Error::explain(BODY_TOO_LARGE, "over the route's max_body").into_down()
}

fn read_error(e: h2::Error) -> Box<Error> {
    Error::because(ReadError, "reading the client's stream", e).into_down()
}

fn write_error(e: h2::Error) -> Box<Error> {
    Error::because(WriteError, "writing the client's stream", e).into_down()
}
