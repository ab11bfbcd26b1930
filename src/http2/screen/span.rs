//! Where each HPACK representation of a header block ends (RFC 7541 §6), read from its
//! integer prefixes and string lengths only: no string is decoded and no table is kept.
//!
//! The shadow decoder (`httlib-hpack`) is handed one representation at a time, each one
//! known to lie whole in the block. That crate indexes past the end of a truncated
//! integer or string (a panic) and shifts the rest of its input down after every field
//! (quadratic in a block of many small fields); given exactly one representation it does
//! neither.

/// What a representation does to the decoder (RFC 7541 §6.1–6.3).
#[derive(Debug, PartialEq)]
pub enum Kind {
    /// A header field (indexed or literal).
    Field,
    /// A dynamic table size update, which h2 accepts only before the block's first field.
    SizeUpdate,
}

/// The kind and length of the representation that opens `rest`, or `None` if it does
/// not lie whole in `rest` or has an integer longer than 5 bytes (the limit h2 and
/// httlib share: both refuse such a block).
pub fn next(rest: &[u8]) -> Option<(Kind, usize)> {
    let first = *rest.first()?;
    // (prefix bits of the first integer, kind, strings that follow it)
    let (prefix, kind, strings) = if first & 0x80 != 0 {
        (7, Kind::Field, 0)
    } else if first & 0x40 != 0 {
        (6, Kind::Field, if first & 0x3f == 0 { 2 } else { 1 })
    } else if first & 0x20 != 0 {
        (5, Kind::SizeUpdate, 0)
    } else {
        (4, Kind::Field, if first & 0x0f == 0 { 2 } else { 1 })
    };
    let (_, mut at) = integer(rest, prefix)?;
    for _ in 0..strings {
        let (len, n) = integer(rest.get(at..)?, 7)?;
        at = at.checked_add(n)?.checked_add(len)?;
        if at > rest.len() {
            return None;
        }
    }
    Some((kind, at))
}

/// An HPACK integer (RFC 7541 §5.1) with a `prefix`-bit prefix, and its length in bytes.
fn integer(bytes: &[u8], prefix: u8) -> Option<(usize, usize)> {
    let mask = (1u8 << prefix) - 1;
    let first = *bytes.first()? & mask;
    if first < mask {
        return Some((first as usize, 1));
    }
    let mut value = mask as usize;
    for (i, &b) in bytes.iter().enumerate().skip(1).take(4) {
        value += ((b & 0x7f) as usize) << (7 * (i - 1));
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_read_as_rfc_7541_appendix_c1_shows() {
        assert_eq!(integer(&[0x0a], 5), Some((10, 1)));
        assert_eq!(integer(&[0x1f, 0x9a, 0x0a], 5), Some((1337, 3)));
        assert_eq!(integer(&[0x2a], 7), Some((42, 1)));
        // Truncated, and longer than 5 bytes.
        assert_eq!(integer(&[0x1f, 0x9a], 5), None);
        assert_eq!(integer(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0x01], 5), None);
    }

    #[test]
    fn each_representation_ends_where_its_strings_end() {
        // Indexed; size update to 1337; literal with indexing, name by index, value "ab";
        // literal without indexing, both strings literal ("a", Huffman "" of length 0).
        assert_eq!(next(&[0x82, 0x84]), Some((Kind::Field, 1)));
        assert_eq!(next(&[0x3f, 0x9a, 0x0a, 0x82]), Some((Kind::SizeUpdate, 3)));
        assert_eq!(next(&[0x44, 2, b'a', b'b', 0x82]), Some((Kind::Field, 4)));
        assert_eq!(next(&[0x00, 1, b'a', 0x80, 0x82]), Some((Kind::Field, 4)));
        // Never indexed with a new name.
        assert_eq!(next(&[0x10, 1, b'a', 1, b'b']), Some((Kind::Field, 5)));
    }

    #[test]
    fn a_representation_cut_short_has_no_end() {
        let whole = [0x40, 3, b'a', b'b', b'c', 2, b'x', b'y'];
        assert_eq!(next(&whole), Some((Kind::Field, whole.len())));
        for cut in 0..whole.len() {
            assert_eq!(next(&whole[..cut]), None, "cut at {cut}");
        }
        // A string length far past the block.
        assert_eq!(next(&[0x00, 0x7f, 0xff, 0xff, 0xff, 0x0f]), None);
    }
}
