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

use super::field;
use loona_hpack::{Decoder, Encoder};

/// The table size the client's encoder works with: h2's default for
/// `SETTINGS_HEADER_TABLE_SIZE`, which `http2::server` leaves alone.
const TABLE_SIZE: usize = 4096;

/// The largest header list a re-encoded block may carry: what h2 itself accepts
/// (`MAX_HEADER_LIST`). A larger one, which h2 would answer with a 431, is refused
/// instead, so a re-encoded block never needs more frames than h2 allows one block.
const MAX_REENCODED: usize = crate::http2::MAX_HEADER_LIST as usize;

/// A header list length (RFC 9113 §6.5.2) past which h2 stops decoding a block and ends
/// the connection (`header_list_way_too_large`, at 4 times `MAX_HEADER_LIST`).
const MAX_DECODED: usize = 4 * crate::http2::MAX_HEADER_LIST as usize;

/// What h2 gets for one header block.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// The block as the client sent it.
    AsSent,
    /// The HPACK block [`Shadow::screen`] wrote (a refused block's stand-in, or a block
    /// re-encoded after one).
    Replaced,
    /// Not valid HPACK to the shadow either: h2 will end the connection on it.
    Undecodable,
}

/// The shadow of the client's HPACK encoder state, for one connection.
pub struct Shadow {
    decoder: Decoder<'static>,
    /// Writes re-encoded blocks: static-table references and literals only (its own
    /// dynamic table is kept at size 0), so h2's table never has to agree with it.
    encoder: Encoder<'static>,
    /// True until a block has been replaced: h2's table is then still the client's.
    in_step: bool,
}

impl Shadow {
    pub fn new() -> Shadow {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(TABLE_SIZE);
        decoder.set_max_table_size(TABLE_SIZE);
        let mut encoder = Encoder::new();
        encoder.set_max_table_size(0);
        Shadow {
            decoder,
            encoder,
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
        let reencode = !self.in_step;
        let mut refused = refuse;
        let mut size = 0usize;
        let encoder = &mut self.encoder;
        let decoded = self.decoder.decode_with_cb(block, |name, value| {
            // A refused block is still decoded to its end, for the table.
            if refused {
                return;
            }
            size += 32 + name.len() + value.len();
            if reencode && size > MAX_REENCODED {
                refused = true;
            } else if size > MAX_DECODED {
                // h2 gives up on this list and the connection; fields past here are
                // not looked at (indexed fields can make a list far longer than its block).
            } else if field::is_refused(&name, &value) {
                refused = true;
            } else if reencode {
                // Writing to a Vec cannot fail.
                let _ = encoder.encode_header_into((&*name, &*value), out);
            }
        });
        if decoded.is_err() {
            return Verdict::Undecodable;
        }
        if refused {
            out.clear();
            let _ = encoder.encode_header_into((b"connection", b"close"), out);
            self.in_step = false;
            return Verdict::Replaced;
        }
        if reencode {
            Verdict::Replaced
        } else {
            Verdict::AsSent
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let big = "a".repeat(1000);
        let many: Vec<(String, &str)> = (0..70).map(|i| (format!("x-big-{i}"), &*big)).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let block = encode(&mut client, &[&GET[..], &many[..]].concat());
        assert_eq!(shadow.screen(&block, false, &mut out), Verdict::Replaced);
        assert_eq!(
            Decoder::new().decode(&out).unwrap(),
            fields(&[("connection", "close")])
        );
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
}
