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
                        // What has arrived of the line, less a CR whose LF is on its way.
                        chunk_size(buf.strip_suffix(b"\r").unwrap_or(buf), false)?;
                        return Ok(Step::NeedMore);
                    };
                    let size = chunk_size(&line, true)?;
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

    /// Bytes of the current chunk its size line announced that `next` has not
    /// handed out yet.
    pub fn rest_of_chunk(&self) -> u64 {
        match self.state {
            State::Data(left) => left,
            _ => 0,
        }
    }
}

/// One CRLF-terminated line, without its CRLF. A line is refused as soon as
/// it cannot end well: a bare LF (or CR), or more than `MAX_LINE` bytes, so
/// a broken sender gets its 400 at once instead of after a read timeout.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, Malformed> {
    let Some(lf) = buf.iter().position(|b| *b == b'\n') else {
        let stray_cr = buf.iter().rev().skip(1).any(|b| *b == b'\r');
        if stray_cr || buf.len() > MAX_LINE {
            return Err(Malformed);
        }
        return Ok(None);
    };
    if lf == 0 || buf[lf - 1] != b'\r' || lf > MAX_LINE || buf[..lf - 1].contains(&b'\r') {
        return Err(Malformed);
    }
    let line = buf.split_to(lf - 1);
    buf.advance(2);
    Ok(Some(line))
}

/// The most hex digits a chunk size may have: 16 fill a u64.
const MAX_DIGITS: usize = 16;

/// The size of a chunk-size line (RFC 9112 §7.1.1), its extensions checked
/// and ignored. `whole`: the line is complete; otherwise `line` is what has
/// arrived of it so far, and only a prefix no valid line can start with is
/// refused.
fn chunk_size(line: &[u8], whole: bool) -> Result<u64, Malformed> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits > MAX_DIGITS || (digits == 0 && (whole || !line.is_empty())) {
        return Err(Malformed);
    }
    if !extensions_ok(&line[digits..], whole) {
        return Err(Malformed);
    }
    let size = line[..digits].iter().fold(0u64, |size, b| {
        // A hex digit, checked above; at most 16 of them, so no overflow.
        size << 4 | u64::from((*b as char).to_digit(16).unwrap_or(0))
    });
    Ok(size)
}

/// Where the extension grammar is: `*( BWS ";" BWS name [ BWS "=" BWS value ] )`,
/// value a token or a quoted string.
#[derive(Clone, Copy, PartialEq)]
enum Ext {
    /// After the size or a complete extension: BWS, then `;` or the end.
    Between,
    /// After `;`: BWS, then a name.
    BeforeName,
    Name,
    /// After a name: BWS, then `=`, `;` or the end.
    AfterName,
    /// After `=`: BWS, then a value.
    BeforeValue,
    Token,
    Quoted,
    QuotedEscape,
}

/// Whether `rest` (the line after the size) is a valid run of extensions,
/// or, when not `whole`, could still become one.
fn extensions_ok(rest: &[u8], whole: bool) -> bool {
    let ws = |b: u8| b == b' ' || b == b'\t';
    let mut state = Ext::Between;
    for &b in rest {
        state = match (state, b) {
            (Ext::Between | Ext::AfterName, b';') => Ext::BeforeName,
            (Ext::Between | Ext::AfterName | Ext::BeforeName | Ext::BeforeValue, b) if ws(b) => {
                state
            }
            (Ext::BeforeName | Ext::Name, b) if is_tchar(b) => Ext::Name,
            (Ext::Name, b) if ws(b) => Ext::AfterName,
            (Ext::AfterName | Ext::Name, b'=') => Ext::BeforeValue,
            (Ext::Name | Ext::Token, b';') => Ext::BeforeName,
            (Ext::BeforeValue | Ext::Token, b) if is_tchar(b) => Ext::Token,
            (Ext::BeforeValue, b'"') => Ext::Quoted,
            (Ext::Token, b) if ws(b) => Ext::Between,
            (Ext::Quoted, b'"') => Ext::Between,
            (Ext::Quoted, b'\\') => Ext::QuotedEscape,
            (Ext::Quoted, b) if b == b'\t' || (b >= 0x20 && b != 0x7f) => Ext::Quoted,
            (Ext::QuotedEscape, b) if b == b'\t' || (b >= 0x20 && b != 0x7f) => Ext::Quoted,
            _ => return false,
        };
    }
    // Whitespace only counts when an extension follows it (`5 ;a`), never
    // as the end of a line (`5 `): RFC 9112 has no trailing whitespace there.
    !whole || matches!(state, Ext::Name | Ext::Token) || (state == Ext::Between && !ends_ws(rest))
}

fn ends_ws(rest: &[u8]) -> bool {
    rest.last().is_some_and(|b| *b == b' ' || *b == b'\t')
}

/// A character of an RFC 9110 token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
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
    fn the_rest_of_a_chunk_is_known_from_its_size_line() {
        let mut decoder = Decoder::default();
        let mut buf = BytesMut::from(&b"a\r\nhel"[..]);
        assert_eq!(
            decoder.next(&mut buf),
            Ok(Step::Data(Bytes::from_static(b"hel")))
        );
        assert_eq!(decoder.rest_of_chunk(), 7);
        buf.extend_from_slice(b"lo worl\r\n");
        assert_eq!(
            decoder.next(&mut buf),
            Ok(Step::Data(Bytes::from_static(b"lo worl")))
        );
        assert_eq!(decoder.rest_of_chunk(), 0);
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
            b"00000000000000005\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5;a=b\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\nX: 1\n\r\n",
            b"5\r\nhello\r\n0\n\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            b"5;a\x01b\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\r\nhello\r\n0\r\n\r\n",
            b"5\rhello\r\n0\r\n\r\n",
        ] {
            assert_eq!(decode(wire, 64), Err(Malformed), "{wire:?}");
        }
    }

    #[test]
    fn valid_extensions_pass() {
        for size_line in [
            "5;a",
            "5;a=b",
            "5 ;a=b",
            "5;a=\"q \\\" ;x\"",
            "5; a = b ;c",
            "0005",
            "FFFFFFFFFFFFFFF5;big=0",
        ] {
            let wire = format!("{size_line}\r\nhello\r\n0\r\n\r\n");
            if size_line.starts_with("FFF") {
                // Sixteen digits are a size, not an error (the data is just short).
                let mut buf = BytesMut::from(wire.as_str());
                assert!(Decoder::default().next(&mut buf).is_ok(), "{size_line}");
                continue;
            }
            assert_eq!(
                decode(wire.as_bytes(), 64).unwrap().0,
                b"hello",
                "{size_line}"
            );
        }
    }

    #[test]
    fn a_size_line_that_cannot_be_valid_is_refused_before_it_ends() {
        // Nothing more will arrive: the refusal must come from what is here.
        for partial in [
            &b"zz"[..],
            b"5 5",
            b"0x",
            b"5\x01",
            b"5;a\x02",
            b"5\r5",
            b"11111111111111111",
        ] {
            let mut buf = BytesMut::from(partial);
            assert_eq!(
                Decoder::default().next(&mut buf),
                Err(Malformed),
                "{partial:?}"
            );
        }
        for waiting in [&b""[..], b"5", b"5;", b"5;a=\"x", b"5\r"] {
            let mut buf = BytesMut::from(waiting);
            assert_eq!(
                Decoder::default().next(&mut buf),
                Ok(Step::NeedMore),
                "{waiting:?}"
            );
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
