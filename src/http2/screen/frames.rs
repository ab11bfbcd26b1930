//! The client's bytes on their way to h2, without I/O: the connection preface and every
//! frame pass unchanged, except a header block, which is held from its HEADERS frame to
//! END_HEADERS, screened ([`Shadow::screen`]) and handed on as sent or replaced.
//!
//! Only the 9-byte frame heads and the HEADERS padding and priority fields are read
//! here (RFC 9113 §4.1, §6.2); the HPACK is the shadow's. Whatever the screen cannot
//! take apart (a frame too large, a frame inside a header block, a PUSH_PROMISE, a
//! block the shadow cannot decode or one longer than h2 allows) is a connection error
//! for h2 too: it is handed to h2 as it came, h2 ends the connection with its own
//! GOAWAY, and the screen steps aside. After a block has been replaced, h2's HPACK table
//! no longer matches the client's, so such a connection is ended by the screen instead.

use super::block::{Shadow, Verdict};
use bytes::{Buf, BufMut, BytesMut};

const HEAD: usize = 9;
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const MAX_FRAME: usize = crate::http2::MAX_FRAME as usize;
/// CONTINUATION frames without END_HEADERS held for one block; past this the frames go
/// to h2, whose CONTINUATION-flood guard (5 for our header list and frame sizes) has
/// fired by then. Bounds what one block holds here to 7 frames of 16 KiB.
const MAX_CONTINUATIONS: usize = 6;
/// Capacity kept between blocks; a larger buffer (a long block's) is let go.
const KEEP: usize = 16 * 1024;

/// What to do next, from [`Screen::next`].
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Hand h2 [`Screen::bytes`].
    Bytes,
    /// Read more from the client into [`Screen::input`].
    Input,
    /// End the connection: it can no longer be screened, and h2's HPACK table no longer
    /// matches the client's.
    Broken,
}

/// One connection's screen.
pub struct Screen {
    /// Read from the client, not yet handed on or held.
    input: BytesMut,
    /// Ready for h2, ahead of `input`.
    output: BytesMut,
    /// Bytes of `input` to hand on unchanged before the next frame head: the preface,
    /// then each frame that carries no header block; `usize::MAX` once the screen
    /// stepped aside.
    raw: usize,
    /// The header block being collected: its frames as received, and its HPACK
    /// fragments joined.
    held: BytesMut,
    block: Vec<u8>,
    continuations: usize,
    stream: u32,
    end_stream: bool,
    /// The HEADERS frame made the stream an error whatever its fields (it depends on itself).
    refuse: bool,
    /// A replacement block, before it is framed.
    replaced: Vec<u8>,
    shadow: Shadow,
}

impl Screen {
    /// A screen for a connection from which `read` was already read (the preface first).
    pub fn new(read: BytesMut) -> Screen {
        Screen {
            input: read,
            output: BytesMut::new(),
            raw: crate::http2::PREFACE.len(),
            held: BytesMut::new(),
            block: Vec::new(),
            continuations: 0,
            stream: 0,
            end_stream: false,
            refuse: false,
            replaced: Vec::new(),
            shadow: Shadow::new(),
        }
    }

    /// Where bytes read from the client go.
    pub fn input(&mut self) -> &mut BytesMut {
        &mut self.input
    }

    pub fn next(&mut self) -> Next {
        loop {
            if !self.output.is_empty() || (self.raw > 0 && !self.input.is_empty()) {
                return Next::Bytes;
            }
            if self.raw > 0 {
                return Next::Input;
            }
            match self.step() {
                Some(next) => return next,
                None => continue,
            }
        }
    }

    /// The bytes to hand h2 now (after [`Next::Bytes`]).
    pub fn bytes(&self) -> &[u8] {
        if self.output.is_empty() {
            &self.input[..self.raw.min(self.input.len())]
        } else {
            &self.output
        }
    }

    /// `n` of [`Screen::bytes`] were handed on.
    pub fn consume(&mut self, n: usize) {
        if self.output.is_empty() {
            self.input.advance(n);
            self.raw = self.raw.saturating_sub(n);
        } else {
            self.output.advance(n);
        }
    }

    /// Takes the frame at the start of `input` a step further: `None` when it moved
    /// something on, else what [`Screen::next`] answers.
    fn step(&mut self) -> Option<Next> {
        let Some(head) = self.input.get(..HEAD) else {
            return Some(Next::Input);
        };
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let holding = !self.held.is_empty();
        match kind {
            HEADERS | CONTINUATION => {}
            PUSH_PROMISE => return self.step_aside(),
            _ if holding => return self.step_aside(),
            _ => {
                self.raw = HEAD + len;
                return None;
            }
        }
        let in_block = kind == CONTINUATION;
        let more = flags & END_HEADERS == 0;
        if len > MAX_FRAME
            || in_block != holding
            || stream == 0
            || (in_block && stream != self.stream)
            || (in_block && more && self.continuations == MAX_CONTINUATIONS)
        {
            return self.step_aside();
        }
        if self.input.len() < HEAD + len {
            return Some(Next::Input);
        }
        self.collect(len, flags, stream, in_block)
    }

    /// Takes a whole HEADERS or CONTINUATION frame from `input` into the block, and
    /// screens the block at its end.
    fn collect(&mut self, len: usize, flags: u8, stream: u32, in_block: bool) -> Option<Next> {
        let more = flags & END_HEADERS == 0;
        let (fragment, refuse) = if in_block {
            (0..len, false)
        } else {
            match fragment_bounds(&self.input[HEAD..HEAD + len], flags, stream) {
                Some(found) => found,
                None => return self.step_aside(),
            }
        };
        if !in_block {
            self.stream = stream;
            self.end_stream = flags & END_STREAM != 0;
            self.refuse = refuse;
            self.continuations = 0;
            if !more {
                // The usual block: one frame, screened where it lies, and as a rule
                // handed on from there.
                let block = &self.input[HEAD..][fragment];
                let verdict = self.shadow.screen(block, refuse, &mut self.replaced);
                if verdict == Verdict::AsSent {
                    self.raw = HEAD + len;
                    return None;
                }
                let frame = self.input.split_to(HEAD + len);
                return self.hand_on(verdict, frame);
            }
            self.block.clear();
        } else if more {
            self.continuations += 1;
        }
        let frame = self.input.split_to(HEAD + len);
        self.block.extend_from_slice(&frame[HEAD..][fragment]);
        self.held.unsplit(frame);
        if more {
            return None;
        }
        let held = std::mem::take(&mut self.held);
        let verdict = self
            .shadow
            .screen(&self.block, self.refuse, &mut self.replaced);
        if self.block.capacity() > KEEP {
            self.block = Vec::new();
        }
        self.hand_on(verdict, held)
    }

    /// Hands h2 the screened block: `frames` as they came, or the replacement.
    fn hand_on(&mut self, verdict: Verdict, frames: BytesMut) -> Option<Next> {
        match verdict {
            Verdict::AsSent => self.output = frames,
            Verdict::Replaced => {
                self.frame_replacement();
                if self.replaced.capacity() > KEEP {
                    self.replaced = Vec::new();
                }
            }
            Verdict::Undecodable if self.shadow.in_step() => {
                self.output = frames;
                self.raw = usize::MAX;
            }
            Verdict::Undecodable => return Some(Next::Broken),
        }
        None
    }

    /// Writes the replacement block as a HEADERS frame and CONTINUATIONs, none larger
    /// than the frames the client may send.
    fn frame_replacement(&mut self) {
        let mut rest = &self.replaced[..];
        let (mut kind, mut flags) = (HEADERS, if self.end_stream { END_STREAM } else { 0 });
        loop {
            let n = rest.len().min(MAX_FRAME);
            let last = n == rest.len();
            if last {
                flags |= END_HEADERS;
            }
            self.output.put_uint(n as u64, 3);
            self.output.put_u8(kind);
            self.output.put_u8(flags);
            self.output.put_u32(self.stream);
            self.output.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if last {
                return;
            }
            (kind, flags) = (CONTINUATION, 0);
        }
    }

    /// Hands h2 the held frames and everything after as they came (h2 will end the
    /// connection on the frame at hand), or ends the connection if h2's table is off.
    fn step_aside(&mut self) -> Option<Next> {
        if !self.shadow.in_step() {
            return Some(Next::Broken);
        }
        self.output = std::mem::take(&mut self.held);
        self.raw = usize::MAX;
        None
    }
}

/// Where a HEADERS frame's HPACK fragment lies in its payload, past the padding length and
/// priority fields and before the padding (RFC 9113 §6.2), and whether it depends on its
/// own stream (a stream error, §5.3.1); `None` if those fields do not fit, which h2 takes
/// for a connection error.
fn fragment_bounds(
    payload: &[u8],
    flags: u8,
    stream: u32,
) -> Option<(std::ops::Range<usize>, bool)> {
    let mut start = 0;
    let mut pad = 0;
    if flags & PADDED != 0 {
        pad = usize::from(*payload.first()?);
        start = 1;
    }
    let mut self_dependent = false;
    if flags & PRIORITY != 0 {
        let fields = payload.get(start..start + 5)?;
        let dep = u32::from_be_bytes([fields[0], fields[1], fields[2], fields[3]]) & 0x7fff_ffff;
        self_dependent = dep == stream;
        start += 5;
    }
    let end = payload.len().checked_sub(pad)?;
    (start <= end).then_some((start..end, self_dependent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http2::PREFACE;
    use loona_hpack::{Decoder, Encoder};

    const DATA: u8 = 0x0;
    const SETTINGS: u8 = 0x4;
    const PING: u8 = 0x6;
    const WINDOW_UPDATE: u8 = 0x8;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend([kind, flags]);
        out.extend(stream.to_be_bytes());
        out.extend(payload);
        out
    }

    fn block(client: &mut Encoder<'static>, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut fields = vec![
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "gw.test"),
            (":path", "/"),
        ];
        fields.extend(extra);
        client.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    /// What h2 would read: `wire` fed to the screen `chunk` bytes at a time.
    fn screened(wire: &[u8], chunk: usize) -> Result<Vec<u8>, Vec<u8>> {
        let mut screen = Screen::new(BytesMut::new());
        let (mut fed, mut out) = (0, Vec::new());
        loop {
            match screen.next() {
                Next::Bytes => {
                    let n = screen.bytes().len();
                    out.extend_from_slice(screen.bytes());
                    screen.consume(n);
                }
                Next::Input if fed == wire.len() => return Ok(out),
                Next::Input => {
                    let end = (fed + chunk).min(wire.len());
                    screen.input().extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
                Next::Broken => return Err(out),
            }
        }
    }

    /// The frames after the preface: (kind, flags, stream, payload).
    fn frames_of(out: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut rest = out.strip_prefix(PREFACE).expect("the preface first");
        let mut frames = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
            frames.push((rest[3], rest[4], stream, rest[HEAD..HEAD + len].to_vec()));
            rest = &rest[HEAD + len..];
        }
        frames
    }

    fn connection_close() -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![(b"connection".to_vec(), b"close".to_vec())]
    }

    fn wire(frames: &[Vec<u8>]) -> Vec<u8> {
        [PREFACE.to_vec(), frames.concat()].concat()
    }

    #[test]
    fn the_preface_and_frames_without_header_blocks_pass_unchanged_even_byte_by_byte() {
        let sent = wire(&[
            frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]),
            frame(PING, 0, 0, b"12345678"),
            frame(WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes()),
            frame(DATA, END_STREAM, 1, &[7; 40_000]),
            frame(DATA, 0, 3, b""),
        ]);
        for chunk in [1, 5, 9, 10, 4096, usize::MAX] {
            assert_eq!(screened(&sent, chunk), Ok(sent.clone()), "{chunk}");
        }
    }

    #[test]
    fn valid_header_blocks_pass_as_sent_in_one_frame_or_several_padded_or_with_priority() {
        let mut client = Encoder::new();
        let one = block(&mut client, &[("x-lower", "1")]);
        let two = block(&mut client, &[("x-lower", "1"), ("accept", "*/*")]);
        let mut padded = vec![3, 0, 0, 0, 1, 16];
        padded.extend(block(&mut client, &[]));
        padded.extend([0; 3]);
        let sent = wire(&[
            frame(HEADERS, END_STREAM | END_HEADERS, 1, &one),
            frame(HEADERS, END_STREAM, 3, &two[..3]),
            frame(CONTINUATION, 0, 3, &two[3..5]),
            frame(CONTINUATION, END_HEADERS, 3, &two[5..]),
            frame(HEADERS, END_HEADERS | PADDED | PRIORITY, 5, &padded),
            frame(DATA, END_STREAM, 5, b"body"),
        ]);
        for chunk in [1, 7, usize::MAX] {
            assert_eq!(screened(&sent, chunk), Ok(sent.clone()), "{chunk}");
        }
    }

    #[test]
    fn an_uppercase_name_becomes_connection_close_on_the_same_stream_and_flags() {
        let mut client = Encoder::new();
        let bad = block(&mut client, &[("X-Upper", "1")]);
        let sent = wire(&[
            frame(HEADERS, END_STREAM | END_HEADERS, 1, &bad),
            frame(PING, 0, 0, b"12345678"),
        ]);
        let out = screened(&sent, 1).unwrap();
        let frames = frames_of(&out);
        assert_eq!(frames.len(), 2);
        let (kind, flags, stream, payload) = &frames[0];
        assert_eq!(
            (*kind, *flags, *stream),
            (HEADERS, END_STREAM | END_HEADERS, 1)
        );
        assert_eq!(Decoder::new().decode(payload).unwrap(), connection_close());
        assert_eq!(frames[1], (PING, 0, 0, b"12345678".to_vec()));
    }

    #[test]
    fn a_block_over_continuations_is_screened_whole_and_replaced_by_one_frame() {
        let mut client = Encoder::new();
        let bad = block(&mut client, &[("x-ok", "1"), ("x-nul", "a\0b")]);
        let cut = bad.len() - 4;
        let sent = wire(&[
            frame(HEADERS, 0, 7, &bad[..cut]),
            frame(CONTINUATION, END_HEADERS, 7, &bad[cut..]),
        ]);
        let frames = frames_of(&screened(&sent, 3).unwrap());
        assert_eq!(frames.len(), 1);
        assert_eq!(
            (frames[0].0, frames[0].1, frames[0].2),
            (HEADERS, END_HEADERS, 7)
        );
        assert_eq!(
            Decoder::new().decode(&frames[0].3).unwrap(),
            connection_close()
        );
    }

    #[test]
    fn a_headers_frame_that_depends_on_its_own_stream_is_refused() {
        let mut client = Encoder::new();
        let mut payload = vec![0, 0, 0, 9, 16];
        payload.extend(block(&mut client, &[]));
        let sent = wire(&[frame(HEADERS, END_HEADERS | PRIORITY, 9, &payload)]);
        let frames = frames_of(&screened(&sent, usize::MAX).unwrap());
        assert_eq!(
            Decoder::new().decode(&frames[0].3).unwrap(),
            connection_close()
        );
    }

    #[test]
    fn after_a_replacement_blocks_are_reencoded_and_long_ones_framed_within_16_kib() {
        let mut client = Encoder::new();
        let big = "b".repeat(1000);
        let many: Vec<(String, String)> =
            (0..31).map(|i| (format!("x-{i}"), big.clone())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let bad = block(&mut client, &[("X-Upper", "1")]);
        let long = block(&mut client, &many);
        let (a, b) = (long.len() / 3, long.len() * 2 / 3);
        let sent = wire(&[
            frame(HEADERS, END_STREAM | END_HEADERS, 1, &bad),
            frame(HEADERS, 0, 3, &long[..a]),
            frame(CONTINUATION, 0, 3, &long[a..b]),
            frame(CONTINUATION, END_HEADERS, 3, &long[b..]),
        ]);
        let frames = frames_of(&screened(&sent, 1000).unwrap());
        let kinds: Vec<(u8, u8, u32)> = frames.iter().map(|f| (f.0, f.1, f.2)).collect();
        assert_eq!(
            kinds,
            [
                (HEADERS, END_STREAM | END_HEADERS, 1),
                (HEADERS, 0, 3),
                (CONTINUATION, END_HEADERS, 3),
            ]
        );
        assert!(frames.iter().all(|f| f.3.len() <= MAX_FRAME));
        let reencoded: Vec<u8> = frames[1..].iter().flat_map(|f| f.3.clone()).collect();
        let mut expected = Decoder::new();
        expected.decode(&bad).unwrap();
        assert_eq!(
            Decoder::new().decode(&reencoded).unwrap(),
            expected.decode(&long).unwrap()
        );
    }

    #[test]
    fn a_continuation_flood_goes_to_h2_as_sent_once_past_the_bound() {
        let mut client = Encoder::new();
        let mut frames = vec![frame(HEADERS, 0, 1, &block(&mut client, &[]))];
        let piece = vec![0x40, 1, b'x', 0x7f, 0x81, 0x7f]; // truncated: never decodable
        frames.extend((0..20).map(|_| frame(CONTINUATION, 0, 1, &piece)));
        let sent = wire(&frames);
        assert_eq!(screened(&sent, 100), Ok(sent.clone()));
    }

    #[test]
    fn frames_the_screen_cannot_take_apart_go_to_h2_as_sent_while_its_table_is_in_step() {
        let mut client = Encoder::new();
        let ok = block(&mut client, &[]);
        for sent in [
            // A PUSH_PROMISE from a client, a frame inside a header block, a HEADERS frame on
            // stream 0, one larger than the frame size, padding longer than the frame.
            wire(&[frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2, 0x82])]),
            wire(&[frame(HEADERS, 0, 1, &ok), frame(PING, 0, 0, b"12345678")]),
            wire(&[frame(HEADERS, END_HEADERS, 0, &ok)]),
            wire(&[frame(HEADERS, END_HEADERS, 1, &vec![0x82; MAX_FRAME + 1])]),
            wire(&[frame(HEADERS, END_HEADERS | PADDED, 1, &[200, 0x82])]),
            // Not HPACK: an index past both tables.
            wire(&[frame(HEADERS, END_HEADERS, 1, &[0xff, 0x7f])]),
        ] {
            assert_eq!(screened(&sent, 1), Ok(sent.clone()));
        }
    }

    #[test]
    fn a_block_past_the_shadows_cap_and_everything_after_go_to_h2_as_sent() {
        let mut client = Encoder::new();
        let long = block(&mut client, &[("x-long", &"v".repeat(40 * 1024))]);
        assert!(long.len() > super::super::block::MAX_BLOCK);
        let bad = block(&mut client, &[("X-Upper", "1")]);
        let (a, b) = (long.len() / 3, long.len() * 2 / 3);
        let sent = wire(&[
            frame(HEADERS, 0, 1, &long[..a]),
            frame(CONTINUATION, 0, 1, &long[a..b]),
            frame(CONTINUATION, END_HEADERS, 1, &long[b..]),
            frame(HEADERS, END_STREAM | END_HEADERS, 3, &bad),
        ]);
        assert_eq!(screened(&sent, 1000), Ok(sent.clone()));
    }

    #[test]
    fn after_a_replacement_a_frame_the_screen_cannot_take_apart_ends_the_connection() {
        let mut client = Encoder::new();
        let bad = block(&mut client, &[("X-Upper", "1")]);
        let sent = wire(&[
            frame(HEADERS, END_STREAM | END_HEADERS, 1, &bad),
            frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2, 0x82]),
        ]);
        let out = screened(&sent, 1).unwrap_err();
        assert_eq!(frames_of(&out).len(), 1, "the replacement went out first");
    }
}
