//! The HTTP/2 transport, on the `h2` crate (pingora's own HTTP/2 is built on
//! it): the server settings every HTTP/2 connection gets, the connection
//! preface, the screen every header block passes before h2 reads it
//! ([`screen`]), and each stream as a downstream the pipeline answers
//! ([`stream::Stream`]). Like `http1`, it imports no policy: a stream's
//! request is handed to the pipeline as the same [`crate::http1::Request`]
//! an HTTP/1 client's would be, and its answer is written from the same
//! [`crate::http1::Head`].

pub mod grpc;
pub mod request;
pub mod screen;
pub mod stream;

pub use stream::Stream;

use std::time::Duration;

/// What every prior-knowledge HTTP/2 connection starts with (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Streams one connection may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`);
/// a stream past it is refused (`REFUSED_STREAM`), not queued.
pub const MAX_CONCURRENT_STREAMS: u32 = 128;
/// The largest header list a stream may send (`SETTINGS_MAX_HEADER_LIST_SIZE`),
/// the same bound as an HTTP/1 request head. Past it the stream is refused
/// with a 431; far past it (a CONTINUATION flood), the connection is closed
/// without the headers being kept.
pub const MAX_HEADER_LIST: u32 = crate::http1::request::MAX_HEAD as u32;
/// The largest frame a client may send (`SETTINGS_MAX_FRAME_SIZE`, the protocol's default).
pub const MAX_FRAME: u32 = 16 * 1024;
/// Flow-control windows: what a client may send before the gateway has
/// forwarded it, per stream and per connection.
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Answer bytes buffered per stream before the writer waits for the client.
const SEND_BUFFER: usize = 256 * 1024;
/// Streams a client may reset before the gateway has even accepted them
/// (rapid reset, CVE-2023-44487): past this, the connection is closed with
/// `ENHANCE_YOUR_CALM`.
const MAX_PENDING_RESETS: usize = 20;
/// Streams the gateway may reset because the client broke the protocol on
/// them (malformed headers, a window overflow) before it closes the whole
/// connection with `ENHANCE_YOUR_CALM`.
const MAX_ERROR_RESETS: usize = 100;
/// Reset streams remembered (so their late frames are ignored), at most.
const MAX_CONCURRENT_RESETS: usize = 50;
/// How long the client may take to send its preface and first SETTINGS.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server side of the h2 crate with the gateway's bounds. Each bound is
/// explicit, so none depends on a default that a crate update may move.
/// `SETTINGS_HEADER_TABLE_SIZE` is left at the protocol's 4096, which the screen's
/// shadow HPACK decoder mirrors (`screen/block.rs`).
pub fn server() -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_send_buffer_size(SEND_BUFFER)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(Some(MAX_ERROR_RESETS))
        .max_concurrent_reset_streams(MAX_CONCURRENT_RESETS)
        .reset_stream_duration(Duration::from_secs(1));
    builder
}

/// What the h2 server reads a client's connection through: the bytes its HTTP/1 reader
/// already took first (the preface), every header block screened ([`screen`]).
pub type Primed<S> = screen::Screened<S>;
