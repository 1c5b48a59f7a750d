//! Badge colours: what the `bgcolor` and `textcolor` query parameters accept, normalised for SVG.
//!
//! It owns the accepted forms (3- or 6-digit hex with or without `#`, and shields.io's named
//! colours and their aliases) and the brightness rule shields uses to pick a text shadow. It
//! writes nothing; the SVG writer copies [`Color::as_str`] into an attribute.

/// shields.io's named colours (badge-maker's `color.js`), then its aliases, with their values.
const NAMED: &[(&str, &str)] = &[
    ("brightgreen", "#4c1"),
    ("green", "#97ca00"),
    ("yellow", "#dfb317"),
    ("yellowgreen", "#a4a61d"),
    ("orange", "#fe7d37"),
    ("red", "#e05d44"),
    ("blue", "#007ec6"),
    ("grey", "#555"),
    ("lightgrey", "#9f9f9f"),
    ("gray", "#555"),
    ("lightgray", "#9f9f9f"),
    ("critical", "#e05d44"),
    ("important", "#fe7d37"),
    ("success", "#4c1"),
    ("informational", "#007ec6"),
    ("inactive", "#9f9f9f"),
];

/// A validated colour, kept as its SVG spelling (`#` and 3 or 6 lowercase hex digits) in a fixed
/// buffer so that parsing and rendering allocate nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Color {
    /// `#rgb` or `#rrggbb`, ASCII; only the first `len` bytes are used.
    bytes: [u8; 7],
    /// 4 or 7.
    len: u8,
}

impl std::fmt::Debug for Color {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Color {
    /// Parses a query value: `007ec6`, `#007ec6`, `fff`, `#FFF`, or a shields name (`brightgreen`,
    /// `critical`, ...; case-insensitive). `None` for anything else, CSS names and `rgb()` included
    /// (they cannot be checked without a CSS parser, and an SVG attribute must never carry
    /// unchecked text).
    pub fn parse(value: &str) -> Option<Color> {
        if let Some(&(_, hex)) = NAMED.iter().find(|(name, _)| name.eq_ignore_ascii_case(value)) {
            return Color::parse(hex);
        }
        let digits = value.strip_prefix('#').unwrap_or(value).as_bytes();
        if !matches!(digits.len(), 3 | 6) || !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let mut bytes = [b'#'; 7];
        for (slot, digit) in bytes[1..].iter_mut().zip(digits) {
            *slot = digit.to_ascii_lowercase();
        }
        Some(Color { bytes, len: digits.len() as u8 + 1 })
    }

    /// The SVG spelling, e.g. `#007ec6`.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and '#' are ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("#000")
    }

    /// Perceived brightness from 0 (black) to 1 (white), W3C's colour-contrast (YIQ) weighting;
    /// above shields' threshold of 0.69 a background gets a light text shadow instead of a dark one.
    pub fn brightness(&self) -> f64 {
        let hex = &self.as_str()[1..];
        let channel = |i: usize| -> f64 {
            let value = if hex.len() == 3 {
                u8::from_str_radix(&hex[i..=i], 16).map(|v| v * 17)
            } else {
                u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            };
            f64::from(value.unwrap_or(0))
        };
        (channel(0) * 299.0 + channel(1) * 587.0 + channel(2) * 114.0) / 255_000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_forms_and_names() {
        assert_eq!(Color::parse("007ec6").unwrap().as_str(), "#007ec6");
        assert_eq!(Color::parse("#007EC6").unwrap().as_str(), "#007ec6");
        assert_eq!(Color::parse("fff").unwrap().as_str(), "#fff");
        assert_eq!(Color::parse("brightgreen").unwrap().as_str(), "#4c1");
        assert_eq!(Color::parse("Critical").unwrap().as_str(), "#e05d44");
        assert_eq!(Color::parse("lightgray").unwrap().as_str(), "#9f9f9f");
        for bad in ["", "#", "ff", "ffff", "fffffff", "ggg", "#12345g", "red;", "rgb(0,0,0)", "\"/>"] {
            assert_eq!(Color::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn brightness_follows_shields_threshold() {
        // shields: above 0.69 a light background gets a light (#ccc) shadow and dark text.
        assert!(Color::parse("fff").unwrap().brightness() > 0.99);
        assert!(Color::parse("000").unwrap().brightness() < 0.01);
        assert!(Color::parse("blue").unwrap().brightness() < 0.69);
        assert!(Color::parse("yellow").unwrap().brightness() < 0.69);
        assert!(Color::parse("dfdfdf").unwrap().brightness() > 0.69);
    }
}
