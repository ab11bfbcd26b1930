//! Chunked bodies (RFC 9112 §7.1): decoding an upstream's answer or a client's
//! request as its bytes arrive, and the size line of the chunks written again.
//! The other side gets the data in chunks of our own, so what passes through is
//! the payload, never the sender's framing.

use bytes::{Buf, Bytes, BytesMut};

/// A chunk-size line or trailer line longer than this is not a sender we
/// can frame safely (extensions included, real ones are a few bytes).
const MAX_LINE: usize = 4096;

#[derive(Debug, PartialEq)]
pub enum Step {
    /// Payload bytes, in order.
    Data(Bytes),
    /// `buf` holds no complete piece yet: read more into it.
    NeedMore,
    /// The last chunk and the trailers have been read; what is left in `buf`
    /// is not part of this response.
    Done,
}

#[derive(Debug, PartialEq)]
pub struct Malformed;

#[derive(Default)]
pub struct Decoder {
    state: State,
}

#[derive(Default, Clone, Copy)]
enum State {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

impl Decoder {
    /// Takes the next piece out of `buf`. Call until it answers `NeedMore`
    /// (then read) or `Done`.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Step, Malformed> {
        loop {
            match self.state {
                State::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Step::NeedMore);
                    };
                    let size = chunk_size(&line)?;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let rest = left - n as u64;
                    self.state = if rest == 0 {
                        State::DataEnd
                    } else {
                        State::Data(rest)
                    };
                    return Ok(Step::Data(buf.split_to(n).freeze()));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Malformed);
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    // Trailer fields are dropped: few clients read them, and the
                    // downstream answer has already committed to its headers.
                    let Some(line) = take_line(buf)? else {
                        return Ok(Step::NeedMore);
                    };
                    if line.is_empty() {
                        self.state = State::Done;
                    }
                }
                State::Done => return Ok(Step::Done),
            }
        }
    }
}

/// One CRLF-terminated line, without its CRLF.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, Malformed> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(end) if end <= MAX_LINE => {
            let line = buf.split_to(end);
            buf.advance(2);
            Ok(Some(line))
        }
        Some(_) => Err(Malformed),
        None if buf.len() > MAX_LINE => Err(Malformed),
        None => Ok(None),
    }
}

/// The hex size at the start of a chunk-size line; extensions are ignored.
fn chunk_size(line: &[u8]) -> Result<u64, Malformed> {
    let digits = line
        .iter()
        .position(|b| *b == b';' || *b == b' ' || *b == b'\t')
        .map_or(line, |end| &line[..end]);
    if digits.is_empty() || digits.len() > 15 {
        return Err(Malformed);
    }
    digits.iter().try_fold(0u64, |size, b| {
        let digit = (*b as char).to_digit(16).ok_or(Malformed)?;
        Ok(size * 16 + u64::from(digit))
    })
}

/// `n` in lower-case hex, as a chunk-size line starts: the encoder's half.
pub fn size_hex(mut n: usize, out: &mut [u8; 16]) -> &[u8] {
    let mut at = out.len();
    loop {
        at -= 1;
        out[at] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            return &out[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of `step` bytes; returns the payload and what
    /// was left after the end.
    fn decode(wire: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), Malformed> {
        let mut decoder = Decoder::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut pieces = wire.chunks(step);
        loop {
            match decoder.next(&mut buf)? {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::NeedMore => match pieces.next() {
                    Some(p) => buf.extend_from_slice(p),
                    None => return Err(Malformed),
                },
                Step::Done => return Ok((out, buf.to_vec())),
            }
        }
    }

    #[test]
    fn chunk_sizes_are_written_in_lower_case_hex() {
        let mut out = [0u8; 16];
        assert_eq!(size_hex(0, &mut out), b"0");
        assert_eq!(size_hex(255, &mut out), b"ff");
        assert_eq!(size_hex(0x1a2b3, &mut out), b"1a2b3");
    }

    #[test]
    fn payload_is_the_same_whatever_the_read_sizes() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        for step in 1..wire.len() {
            let (payload, rest) = decode(wire, step).unwrap();
            assert_eq!(payload, b"hello, world", "step {step}");
            // Bytes past the end are never eaten, whatever arrived with them.
            assert!(b"NEXT".starts_with(&rest), "step {step}: {rest:?}");
        }
    }

    #[test]
    fn upper_case_hex_and_an_empty_body_decode() {
        assert_eq!(
            decode(b"A\r\n0123456789\r\n0\r\n\r\n", 64).unwrap().0,
            b"0123456789"
        );
        assert_eq!(decode(b"0\r\n\r\n", 64).unwrap().0, b"");
    }

    #[test]
    fn bad_framing_is_refused() {
        for wire in [
            &b"x\r\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
        ] {
            assert_eq!(decode(wire, 64), Err(Malformed), "{wire:?}");
        }
    }

    #[test]
    fn an_endless_size_line_is_refused_instead_of_buffered() {
        let wire = vec![b'1'; MAX_LINE + 10];
        assert_eq!(decode(&wire, 512), Err(Malformed));
    }

    #[test]
    fn a_truncated_body_never_reads_as_done() {
        assert_eq!(decode(b"5\r\nhel", 64), Err(Malformed));
        assert_eq!(decode(b"5\r\nhello\r\n", 64), Err(Malformed));
    }
}
