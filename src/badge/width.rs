//! Text widths in Verdana 11 px, measured as shields.io measures them.
//!
//! It owns the advance-width table (`verdana-11px.bin`, written by `scripts/gen-badge-widths` from
//! the npm package anafanafo 2.0.0, the table shields.io's badge-maker sizes its badges with) and
//! the arithmetic shields does on it: widths summed as doubles in text order, control characters
//! zero, a code point the table lacks counted as wide as `m`, the sum truncated to whole pixels and
//! rounded up to an odd number "to increase chances of pixel grid alignment". It knows nothing of
//! SVG or queries; the layout is `svg.rs`'s.

/// The packed ranges: per record, first and last code point (3 bytes each, little-endian) and the
/// advance width in hundredths of a pixel (u16, little-endian), sorted by code point. The format
/// and the source are documented in `scripts/gen-badge-widths`, which also checks this file.
static TABLE: &[u8] = include_bytes!("verdana-11px.bin");

/// Bytes per record in [`TABLE`].
const RECORD: usize = 8;

// A truncated or padded table would misread every width after the damage; refuse to build.
const _: () = assert!(TABLE.len() % RECORD == 0 && !TABLE.is_empty());

/// Record `i`: (first code point, last code point, width in hundredths of a pixel).
fn record(i: usize) -> (u32, u32, u16) {
    let r = &TABLE[i * RECORD..(i + 1) * RECORD];
    let first = u32::from_le_bytes([r[0], r[1], r[2], 0]);
    let last = u32::from_le_bytes([r[3], r[4], r[5], 0]);
    (first, last, u16::from_le_bytes([r[6], r[7]]))
}

/// The advance width of `c` in pixels, or `None` when the table has no entry for it.
///
/// Hundredths divided by 100.0 give the same double JavaScript parses from anafanafo's JSON (both
/// are the correctly rounded value of the two-decimal number), so sums match shields' exactly.
pub fn char_width(c: char) -> Option<f64> {
    let code = u32::from(c);
    // Binary search for the last range starting at or before `code`.
    let (mut lo, mut hi) = (0, TABLE.len() / RECORD);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if record(mid).0 <= code {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let (first, last, hundredths) = record(lo.checked_sub(1)?);
    (first..=last).contains(&code).then(|| f64::from(hundredths) / 100.0)
}

/// The width of `text` in pixels, unrounded, as anafanafo's `widthOf` computes it.
pub fn text_width(text: &str) -> f64 {
    // anafanafo's guess for a character it has no width for: the width of "m".
    let em = char_width('m').unwrap_or(10.0);
    text.chars().fold(0.0, |sum, c| {
        // Control characters draw nothing (char-width-table-consumer's isControlChar).
        let width = if u32::from(c) <= 31 || c == '\u{7f}' { 0.0 } else { char_width(c).unwrap_or(em) };
        sum + width
    })
}

/// The width shields gives `text`'s box: truncated to whole pixels, then rounded up to odd.
pub fn preferred_width(text: &str) -> u32 {
    // The `| 0` in badge-maker: truncation toward zero of a non-negative sum.
    let whole = text_width(text) as u32;
    if whole % 2 == 0 { whole + 1 } else { whole }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Figures from anafanafo 2.0.0 itself (`anafanafo(s, {font: '11px Verdana'})` under node),
    /// the function shields.io's badge-maker calls; "cactus" and "grown" are also badge-maker's
    /// own snapshot test (textLength 350 each, a 90 px badge).
    const SHIELDS: &[(&str, f64, u32)] = &[
        ("cactus", 35.09, 35),
        ("grown", 34.18, 35),
        ("counter", 41.9, 41),
        ("0", 6.99, 7),
        ("1234567890", 69.9, 69),
        ("-42", 18.98, 19),
        ("views", 30.81, 31),
        ("hitcore", 37.96, 37),
        ("Ünïcödé", 43.839999999999996, 43),
        ("日本語", 33.0, 33),
        ("👍 ok", 27.759999999999998, 27),
        ("a&b<c>\"d'", 60.03000000000001, 61),
        ("WWW", 32.64, 33),
        ("iiii", 12.08, 13),
        ("\u{1}x", 6.51, 7),
    ];

    #[test]
    fn widths_match_shields_to_the_bit() {
        for &(text, width, preferred) in SHIELDS {
            // Exact equality on purpose: the same doubles summed in the same order.
            assert_eq!(text_width(text), width, "{text:?}");
            assert_eq!(preferred_width(text), preferred, "{text:?}");
        }
    }

    #[test]
    fn table_lookups_at_range_edges() {
        assert_eq!(char_width(' '), Some(3.87)); // the first record
        assert_eq!(char_width('0'), Some(6.99)); // inside the 0-9 range
        assert_eq!(char_width('9'), Some(6.99)); // its last code point
        assert_eq!(char_width('\u{0}'), None); // before the first range
        assert_eq!(char_width('\u{10FFFF}'), None); // after the last
        assert_eq!(text_width(""), 0.0);
        // Every record is well-formed and sorted, so the binary search's premise holds.
        let mut previous = None;
        for i in 0..TABLE.len() / RECORD {
            let (first, last, _) = record(i);
            assert!(first <= last && previous.is_none_or(|p| p < first), "record {i}");
            previous = Some(last);
        }
    }
}
