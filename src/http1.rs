//! The HTTP/1 transport: request heads, framing decisions, the chunked codec,
//! the client connection, the exchange with an upstream and WebSocket tunnels.
//! It imports no policy (routes, tokens, rules, identity headers, config): the
//! pipeline in `proxy` hands it what to add to a request and to an answer, and
//! maps its errors to answers. That keeps it small enough to fuzz and review
//! alone, and replaceable by a library without touching policy.

pub mod chunked;
pub mod client;
pub mod exchange;
pub mod framing;
pub mod request;
pub mod websocket;

pub use client::{push_field, Client, Head, Out, ReadFailure};
pub use request::{BodyFraming, HeadError, Request};
