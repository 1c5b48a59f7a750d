//! Shields-style SVG badges showing a counter's value, from Abacus's query parameters.
//!
//! It owns the query parameters a `/hit/.../shield` or `/get/.../shield` request may carry, their
//! validation, and the SVG. It is pure: no sockets, no Redis, no clock; the HTTP routes call it.
//! Two steps, so that a bad query is refused before any counter is touched:
//!
//! ```
//! use hitcore::badge::Badge;
//! let badge = Badge::from_query("text=views&style=flat-square&bgcolor=brightgreen").unwrap();
//! // ... count the hit, get its value ...
//! let mut body = Vec::new();
//! badge.render(42, &mut body);
//! assert!(body.starts_with(b"<svg "));
//! assert!(Badge::from_query("style=3d").is_err()); // the route answers 400 with the message
//! ```
//!
//! | Parameter | Default | Accepts |
//! |---|---|---|
//! | `text` | `counter` | the label, at most [`MAX_TEXT`] characters, no control characters; empty means no label |
//! | `bgcolor` | `007ec6` | the value box: hex `rgb` or `rrggbb` (a leading `#`, sent as `%23`, is allowed) or a shields name: `brightgreen`, `green`, `yellow`, `yellowgreen`, `orange`, `red`, `blue`, `grey`/`gray`, `lightgrey`/`lightgray`, `success`, `important`, `critical`, `informational`, `inactive` |
//! | `textcolor` | `fff` | the value's text, same forms (the label stays white on its grey box, as shields draws it) |
//! | `style` | `flat` | `flat`, `flat-square`, `plastic`, or `flat-simple`, `flat-square-simple`, `plastic-simple` (the value alone, no label) |
//! | `fontsize` | `11` | a whole number of pixels, 6 to 48; the badge scales with it |
//! | `font` | `verdana` | `verdana`, the only font whose metrics hitcore carries |
//!
//! Other parameters (`callback`, `token`, a cache-buster) are ignored; a repeated one counts once,
//! the first time (as gin's `Query`). Values are percent-decoded (`+` is a space). Widths come from
//! Verdana 11 px's real advance widths, the table shields.io sizes its badges with (`width.rs`).

mod color;
mod svg;
pub mod width;

use std::borrow::Cow;

use color::Color;
use svg::{Drawing, Shape};

/// The `Content-Type` of [`Badge::render`]'s output.
pub const CONTENT_TYPE: &str = "image/svg+xml;charset=utf-8";

/// The longest `text` accepted, in characters. The request line's limit bounds it anyway; this
/// keeps one badge's width sane (128 Verdana characters are about 900 px).
pub const MAX_TEXT: usize = 128;

/// A query parameter the badge refuses. The message names the parameter and what it accepts, never
/// the value (it could be anything a client sent), so it can be sent back in a 400 as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadgeError {
    /// `bgcolor` or `textcolor` is neither hex nor a shields colour name.
    #[error("{0} must be a hex colour (3 or 6 digits, '#' optional) or a shields colour name such as brightgreen")]
    Color(&'static str),
    /// `style` is not one of the six.
    #[error("style must be flat, flat-square, plastic, flat-simple, flat-square-simple or plastic-simple")]
    Style,
    /// `fontsize` is not a whole number in range.
    #[error("fontsize must be a whole number from 6 to 48")]
    FontSize,
    /// `font` names a font without metrics here.
    #[error("font must be verdana")]
    Font,
    /// `text` has a character XML cannot carry (a control character, U+FFFE, U+FFFF).
    #[error("text must not contain control characters")]
    TextCharacter,
    /// `text` is longer than [`MAX_TEXT`] characters.
    #[error("text must be at most 128 characters")]
    TextLength,
}

/// Whether the badge shows its label: the `-simple` styles drop it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    /// Label box, then value box.
    Shown,
    /// The value box alone.
    Hidden,
}

/// A validated badge, waiting for its value. Borrows the query where no percent-decoding was
/// needed; [`Badge::into_owned`] detaches it (to keep it across an `.await` on a reused buffer).
#[derive(Clone, Debug)]
pub struct Badge<'q> {
    /// The decoded `text`.
    label: Cow<'q, str>,
    /// `style` without its `-simple`.
    shape: Shape,
    /// `style`'s `-simple` or not.
    show: Label,
    /// `bgcolor`.
    background: Color,
    /// `textcolor`: the value's text.
    text: Color,
    /// `fontsize`, pixels.
    font_size: u32,
}

impl<'q> Badge<'q> {
    /// Reads and validates a request's query string (the part after `?`; a leading `?` is
    /// skipped). The first invalid parameter, in the table's order, is the error.
    pub fn from_query(query: &'q str) -> Result<Badge<'q>, BadgeError> {
        let mut first = [None::<Cow<'q, str>>, None, None, None, None, None];
        const NAMES: [&str; 6] = ["text", "bgcolor", "textcolor", "style", "fontsize", "font"];
        let query = query.strip_prefix('?').unwrap_or(query);
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if let Some(i) = NAMES.iter().position(|n| *n == name) {
                first[i].get_or_insert(value);
            }
        }
        let [text, bgcolor, textcolor, style, fontsize, font] = first;

        let label = text.unwrap_or(Cow::Borrowed("counter"));
        if label.chars().any(|c| c < ' ' || c == '\u{7f}' || c == '\u{fffe}' || c == '\u{ffff}') {
            return Err(BadgeError::TextCharacter);
        }
        if label.chars().count() > MAX_TEXT {
            return Err(BadgeError::TextLength);
        }
        let color = |value: Option<Cow<'_, str>>, default: &str, name| {
            Color::parse(value.as_deref().unwrap_or(default)).ok_or(BadgeError::Color(name))
        };
        let background = color(bgcolor, "007ec6", "bgcolor")?;
        let text = color(textcolor, "fff", "textcolor")?;
        let style = style.as_deref().unwrap_or("flat").to_ascii_lowercase();
        let (base, show) = match style.strip_suffix("-simple") {
            Some(base) => (base, Label::Hidden),
            None => (style.as_str(), Label::Shown),
        };
        let shape = match base {
            "flat" => Shape::Flat,
            "flat-square" => Shape::FlatSquare,
            "plastic" => Shape::Plastic,
            _ => return Err(BadgeError::Style),
        };
        let font_size = match fontsize.as_deref().map(str::parse::<u32>) {
            None => 11,
            Some(Ok(size @ 6..=48)) => size,
            Some(_) => return Err(BadgeError::FontSize),
        };
        if !font.as_deref().unwrap_or("verdana").eq_ignore_ascii_case("verdana") {
            return Err(BadgeError::Font);
        }
        Ok(Badge { label, shape, show, background, text, font_size })
    }

    /// The same badge, owning its label.
    pub fn into_owned(self) -> Badge<'static> {
        Badge { label: Cow::Owned(self.label.into_owned()), ..self }
    }

    /// Appends the SVG for `value` to `out` (UTF-8, [`CONTENT_TYPE`]); `out`'s earlier bytes are
    /// left alone, so a response head can already be in it. About 1.2 KB for a default badge.
    pub fn render(&self, value: i64, out: &mut Vec<u8>) {
        let mut digits = itoa::Buffer::new();
        let label = match self.show {
            Label::Shown => &self.label,
            Label::Hidden => "",
        };
        let drawing = Drawing {
            label,
            value: digits.format(value),
            shape: self.shape,
            background: self.background,
            text: self.text,
            font_size: self.font_size,
        };
        svg::write(&drawing, out);
    }
}

#[cfg(test)]
mod tests;
