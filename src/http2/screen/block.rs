//! One header block read by a shadow HPACK decoder, a copy of the table h2 keeps for the
//! client, so its fields are checked ([`field::is_refused`]) before h2 decodes it.
//!
//! HPACK state is the connection's: h2 must decode every block to the end, or the
//! client's later blocks no longer mean the same to it, which is why h2 cannot make a
//! stream error of a field it fails to decode. The shadow decodes the whole block
//! whatever it holds, and a refused block is replaced by one h2 can decode and will
//! refuse as a stream error (`connection: close`, RFC 9113 §8.2.2). From then on h2's
//! table lacks what the refused block inserted, so every later block is handed to h2
//! re-encoded from the shadow's fields, without references to h2's table.
//!
//! The decoder is `httlib-hpack`'s (docs/http2.md says why), fed one representation at a
//! time that [`span`] has found whole in the block: on input cut short it would panic.

use super::field;
use super::span::{self, Kind};
use httlib_hpack::{Decoder, Encoder};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The table size the client's encoder works with: h2's default for
/// `SETTINGS_HEADER_TABLE_SIZE`, which `http2::server` leaves alone.
const TABLE_SIZE: u32 = 4096;

/// The largest header list a re-encoded block may carry: what h2 itself accepts
/// (`MAX_HEADER_LIST`). A larger one, which h2 would answer with a 431, is refused
/// instead, so a re-encoded block never needs more frames than h2 allows one block.
const MAX_REENCODED: usize = crate::http2::MAX_HEADER_LIST as usize;

/// A header list length (RFC 9113 §6.5.2) past which h2 stops decoding a block and ends
/// the connection (`header_list_way_too_large`, at 4 times `MAX_HEADER_LIST`). The shadow
/// stops there too: it bounds what decoding one block costs, since an indexed field
/// of one byte can stand for a 4 KiB entry.
const MAX_DECODED: usize = 4 * crate::http2::MAX_HEADER_LIST as usize;

/// The largest block the shadow decodes: one frame's worth and a little more, so that a
/// legitimate block is nearly always screened while what a hostile one costs stays small
/// (figures in docs/http2.md). A larger block goes to h2 as sent and the screen steps
/// aside for the rest of the connection, its table no longer being the client's.
pub const MAX_BLOCK: usize = 32 * 1024;

/// What h2 gets for one header block.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// The block as the client sent it.
    AsSent,
    /// The HPACK block [`Shadow::screen`] wrote (a refused block's stand-in, or a block
    /// re-encoded after one).
    Replaced,
    /// Not decoded by the shadow: not valid HPACK (h2 will end the connection on it), or
    /// past what it decodes ([`MAX_BLOCK`], [`MAX_DECODED`]). Its table is no longer the
    /// client's.
    Undecodable,
}

/// The shadow of the client's HPACK encoder state, for one connection.
pub struct Shadow {
    decoder: Decoder<'static>,
    /// Writes re-encoded blocks: static-table references and literals only (its own
    /// dynamic table is kept at size 0), so h2's table never has to agree with it.
    encoder: Encoder<'static>,
    /// The representation being decoded (the decoder takes a `Vec` and drains it), and
    /// its field.
    input: Vec<u8>,
    fields: Vec<(Vec<u8>, Vec<u8>, u8)>,
    /// True until a block has been replaced: h2's table is then still the client's.
    in_step: bool,
}

impl Shadow {
    pub fn new() -> Shadow {
        Shadow {
            decoder: Decoder::with_dynamic_size(TABLE_SIZE),
            encoder: Encoder::with_dynamic_size(0),
            input: Vec::new(),
            // The decoder decodes as many representations as this has capacity for.
            fields: Vec::with_capacity(1),
            in_step: true,
        }
    }

    /// Whether h2's HPACK table still agrees with the client's, so the client's own
    /// frames may still be handed to h2 unscreened.
    pub fn in_step(&self) -> bool {
        self.in_step
    }

    /// Decodes `block` (the whole HPACK block of one HEADERS frame and its CONTINUATIONs)
    /// and says what h2 gets instead; `refuse` forces a refusal (a HEADERS frame that
    /// must be a stream error for a reason outside the block). For [`Verdict::Replaced`]
    /// the new block is in `out`.
    pub fn screen(&mut self, block: &[u8], refuse: bool, out: &mut Vec<u8>) -> Verdict {
        out.clear();
        if block.len() > MAX_BLOCK {
            return Verdict::Undecodable;
        }
        let reencode = !self.in_step;
        // A panic in the decoder on input `span` has checked would be a bug of its own;
        // the block is then taken for broken HPACK (and the panic is printed, as bugs are).
        let decoded = catch_unwind(AssertUnwindSafe(|| self.decode(block, reencode, out)));
        let Ok(Some(refused)) = decoded else {
            return Verdict::Undecodable;
        };
        if refused || refuse {
            out.clear();
            let close = (b"connection".to_vec(), b"close".to_vec(), 0);
            // Encoding a literal into a Vec cannot fail.
            let _ = self.encoder.encode(close, out);
            self.in_step = false;
            return Verdict::Replaced;
        }
        if reencode {
            Verdict::Replaced
        } else {
            Verdict::AsSent
        }
    }

    /// Decodes every representation of `block` into the shadow's table, checks its fields
    /// and, if `reencode`, writes them to `out`; says whether a field was refused, or
    /// `None` if the block is not valid HPACK or its list passes [`MAX_DECODED`].
    fn decode(&mut self, block: &[u8], reencode: bool, out: &mut Vec<u8>) -> Option<bool> {
        let (mut refused, mut size, mut at) = (false, 0usize, 0);
        let (mut in_fields, mut updates) = (false, 0);
        while at < block.len() {
            let (kind, len) = span::next(&block[at..])?;
            if kind == Kind::SizeUpdate {
                // At the block's start (RFC 7541 §4.2), as h2 requires, and no more than
                // the two an encoder ever needs (h2 takes any number, but they cost).
                updates += 1;
                if in_fields || updates > 2 {
                    return None;
                }
            }
            in_fields |= kind == Kind::Field;
            self.input.clear();
            self.input.extend_from_slice(&block[at..at + len]);
            at += len;
            self.decoder
                .decode_exact(&mut self.input, &mut self.fields)
                .ok()?;
            if !self.input.is_empty() {
                return None;
            }
            for (name, value, _) in self.fields.drain(..) {
                size += 32 + name.len() + value.len();
                if size > MAX_DECODED {
                    return None;
                }
                // A refused block is still decoded to its end, for the table.
                if refused {
                    continue;
                }
                if (reencode && size > MAX_REENCODED) || field::is_refused(&name, &value) {
                    refused = true;
                } else if reencode {
                    let _ = self
                        .encoder
                        .encode((name, value, Encoder::BEST_FORMAT), out);
                }
            }
        }
        Some(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // A second implementation: the client's encoder, and a decoder standing in for h2's.
    use loona_hpack::{Decoder, Encoder};

    fn fields(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    /// The client's side: an encoder with the usual 4 KiB dynamic table.
    fn encode(client: &mut Encoder<'static>, pairs: &[(&str, &str)]) -> Vec<u8> {
        client.encode(pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    const GET: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "gw.test"),
        (":path", "/"),
    ];

    #[test]
    fn valid_blocks_go_to_h2_as_sent() {
        let (mut client, mut shadow, mut out) = (Encoder::new(), Shadow::new(), Vec::new());
        for _ in 0..3 {
            let block = encode(&mut client, &[&GET[..], &[("x-lower", "1")]].concat());
            assert_eq!(shadow.screen(&block, false, &mut out), Verdict::AsSent);
        }
        assert!(shadow.in_step());
    }

    #[test]
    fn a_refused_block_becomes_connection_close_and_later_ones_are_reencoded() {
        let (mut client, mut shadow, mut out) = (Encoder::new(), Shadow::new(), Vec::new());
        let sent = [&GET[..], &[("x-kept", "yes"), ("X-Upper", "1")]].concat();
        let block = encode(&mut client, &sent);
        assert_eq!(shadow.screen(&block, false, &mut out), Verdict::Replaced);
        let mut h2 = Decoder::new();
        assert_eq!(h2.decode(&out).unwrap(), fields(&[("connection", "close")]));
        assert!(!shadow.in_step());

        // The client's next block refers to its table (`x-kept` by index): the
        // re-encoded one carries the same fields without using h2's table.
        let next = [&GET[..], &[("x-kept", "yes")]].concat();
        let block = encode(&mut client, &next);
        assert_eq!(shadow.screen(&block, false, &mut out), Verdict::Replaced);
        assert_eq!(Decoder::new().decode(&out).unwrap(), fields(&next));

        // `X-Upper` by index is refused again.
        let block = encode(&mut client, &sent);
        assert_eq!(shadow.screen(&block, false, &mut out), Verdict::Replaced);
        assert_eq!(h2.decode(&out).unwrap(), fields(&[("connection", "close")]));
    }

    #[test]
    fn a_forced_refusal_still_decodes_the_block_for_the_table() {
        let (mut client, mut shadow, mut out) = (Encoder::new(), Shadow::new(), Vec::new());
        let sent = [&GET[..], &[("x-kept", "yes")]].concat();
        let block = encode(&mut client, &sent);
        assert_eq!(shadow.screen(&block, true, &mut out), Verdict::Replaced);
        let block = encode(&mut client, &sent);
        assert_eq!(shadow.screen(&block, false, &mut out), Verdict::Replaced);
        assert_eq!(Decoder::new().decode(&out).unwrap(), fields(&sent));
    }

    #[test]
    fn a_reencoded_list_past_the_limit_is_refused() {
        let (mut client, mut shadow, mut out) = (Encoder::new(), Shadow::new(), Vec::new());
        let block = encode(&mut client, &[("X-Upper", "1")]);
        shadow.screen(&block, false, &mut out);
        // A 1 KiB entry, then 70 references to it: a 70 KiB list in a block of 1 KiB.
        let mut block = vec![0x40, 1, b'x', 0x7f, 0xe9, 0x06];
        block.extend([b'a'; 1000]);
        block.extend([0xbe; 70]);
        assert_eq!(shadow.screen(&block, false, &mut out), Verdict::Replaced);
        assert_eq!(
            Decoder::new().decode(&out).unwrap(),
            fields(&[("connection", "close")])
        );
        // The entry is in the shadow's table all the same.
        assert_eq!(shadow.screen(&[0xbe], false, &mut out), Verdict::Replaced);
        let entry = (b"x".to_vec(), vec![b'a'; 1000]);
        assert_eq!(Decoder::new().decode(&out).unwrap(), [entry]);
    }

    #[test]
    fn broken_hpack_and_a_table_larger_than_settled_are_undecodable() {
        let (mut shadow, mut out) = (Shadow::new(), Vec::new());
        // An index past both tables.
        assert_eq!(
            shadow.screen(&[0xff, 0x7f], false, &mut out),
            Verdict::Undecodable
        );
        // A dynamic table size update to 8192 (0x3f 0xe1 0x3f), above the 4096 settled.
        assert_eq!(
            shadow.screen(&[0x3f, 0xe1, 0x3f, 0x82], false, &mut out),
            Verdict::Undecodable
        );
    }

    /// Leaves the shadow out of step (a refused block that adds nothing to the table), so
    /// that `screen` writes out the fields it decodes.
    fn out_of_step() -> (Shadow, Vec<u8>) {
        let (mut shadow, mut out) = (Shadow::new(), Vec::new());
        assert_eq!(
            shadow.screen(&[0x00, 1, b'X', 0], false, &mut out),
            Verdict::Replaced
        );
        (shadow, out)
    }

    #[test]
    fn huffman_coded_blocks_and_the_table_read_as_rfc_7541_appendix_c4_shows() {
        let (mut shadow, mut out) = out_of_step();
        let first = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ];
        let second = [
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
        ];
        let third = [
            0x82, 0x87, 0x85, 0xbf, 0x40, 0x88, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f,
            0x89, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf,
        ];
        let request = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ];
        let expected = [
            request.to_vec(),
            [&request[..], &[("cache-control", "no-cache")]].concat(),
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ],
        ];
        for (block, expected) in [&first[..], &second, &third].into_iter().zip(expected) {
            assert_eq!(shadow.screen(block, false, &mut out), Verdict::Replaced);
            assert_eq!(Decoder::new().decode(&out).unwrap(), fields(&expected));
        }
    }

    #[test]
    fn the_table_follows_the_client_through_many_evictions() {
        let (mut shadow, mut out) = out_of_step();
        let mut client = Encoder::new();
        // Fields of varied sizes, each sent once new (inserted, evicting older ones from
        // the 4 KiB table) and again in later blocks (by index, while still in the table).
        let sent: Vec<(String, String)> = (0..400)
            .map(|i| (format!("x-field-{}", i % 37), "v".repeat(i * 7 % 300)))
            .collect();
        for i in 0..sent.len() {
            let pairs: Vec<(&str, &str)> = sent[i.saturating_sub(5)..=i]
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let block = encode(&mut client, &[&GET[..], &pairs].concat());
            assert_eq!(shadow.screen(&block, false, &mut out), Verdict::Replaced);
            let decoded = Decoder::new().decode(&out).unwrap();
            assert_eq!(decoded, fields(&[&GET[..], &pairs].concat()), "block {i}");
        }
    }

    #[test]
    fn a_late_or_third_size_update_or_a_block_past_the_cap_is_undecodable() {
        let mut out = Vec::new();
        assert_eq!(
            Shadow::new().screen(&[0x82, 0x20], false, &mut out),
            Verdict::Undecodable
        );
        // At the start, two of them (RFC 7541 §4.2) are fine, a third is not.
        let updates = [0x20, 0x3f, 0xe1, 0x1f];
        assert_eq!(
            Shadow::new().screen(&[&updates[..], &[0x82]].concat(), false, &mut out),
            Verdict::AsSent
        );
        assert_eq!(
            Shadow::new().screen(&[&updates[..], &[0x20, 0x82]].concat(), false, &mut out),
            Verdict::Undecodable
        );
        let big = vec![0x82; MAX_BLOCK + 1];
        assert_eq!(
            Shadow::new().screen(&big, false, &mut out),
            Verdict::Undecodable
        );
    }

    #[test]
    fn a_list_past_what_h2_decodes_is_undecodable() {
        // One entry of nearly 4 KiB, then referred to by index until the list passes
        // MAX_DECODED (h2 ends the connection there).
        let mut entry = vec![0x40, 1, b'x', 0x7f, 0xa1, 0x1e];
        entry.extend([b'v'; 4000]);
        let block = |refs| [&entry[..], &vec![0xbe; refs]].concat();
        let mut out = Vec::new();
        assert_eq!(
            Shadow::new().screen(&block(10), false, &mut out),
            Verdict::AsSent
        );
        let past = MAX_DECODED / 4000 + 1;
        assert_eq!(
            Shadow::new().screen(&block(past), false, &mut out),
            Verdict::Undecodable
        );
    }

    /// Every prefix of a valid block, and bytes from a simple generator: the decoder
    /// returns, whatever it returns (a panic here is one `screen` would have caught).
    #[test]
    fn blocks_cut_short_or_garbled_are_refused_without_a_panic() {
        let mut client = Encoder::new();
        let block = encode(
            &mut client,
            &[&GET[..], &[("x-a", "b"), ("x-c", "d")]].concat(),
        );
        for cut in 0..block.len() {
            let mut shadow = Shadow::new();
            let _ = shadow.decode(&block[..cut], false, &mut Vec::new());
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut garbled = Vec::new();
            for _ in 0..(state % 24) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                garbled.push(state as u8);
            }
            let mut shadow = Shadow::new();
            let _ = shadow.decode(&garbled, true, &mut Vec::new());
        }
    }

    /// The figures in docs/http2.md ("The header-block screen"): blocks of many tiny
    /// fields at the cap, the shadow's worst case.
    /// `cargo test --release --lib -- --ignored --nocapture worst_blocks`
    #[test]
    #[ignore]
    fn worst_blocks_are_decoded_within_the_cap_and_timed() {
        let repeat = |piece: &[u8]| piece.repeat(MAX_BLOCK / piece.len());
        // `no-cache: no-cache`, both Huffman-coded (RFC 7541 C.4.2).
        let no_cache = [0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf];
        let huffman = [&[0x00][..], &no_cache, &no_cache].concat();
        for (name, block) in [
            ("indexed fields (0x82)", repeat(&[0x82])),
            (
                "literal fields, 1-byte strings",
                repeat(&[0x00, 1, b'a', 1, b'b']),
            ),
            ("the same, inserted", repeat(&[0x40, 1, b'a', 1, b'b'])),
            ("literal fields, Huffman strings", repeat(&huffman)),
        ] {
            assert!(block.len() <= MAX_BLOCK);
            let (mut shadow, mut out) = (Shadow::new(), Vec::new());
            let start = std::time::Instant::now();
            for _ in 0..100 {
                assert_ne!(shadow.screen(&block, false, &mut out), Verdict::Replaced);
            }
            println!("{name}: {:?} per block", start.elapsed() / 100);
        }
    }
}
