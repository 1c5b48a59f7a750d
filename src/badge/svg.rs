//! The badge's SVG: shields.io's `flat`, `flat-square` and `plastic` templates, written into a
//! caller's buffer.
//!
//! It owns the geometry (badge-maker's, without logos or links: 5 px padding each side of a text,
//! label box `#555`, heights 20/20/18, corner radii 3/none/4, text drawn at 10× and scaled by .1
//! for sub-pixel placement) and the XML escaping of everything that came from a query. It does not
//! parse queries or measure glyphs: [`super::Badge`] and [`super::width`] do.

use super::color::Color;
use super::width::preferred_width;

/// The badge's outline: one of shields' three templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Rounded corners (3 px), a faint vertical gradient, text shadows. shields' default.
    Flat,
    /// Square corners, no gradient, no shadows, crisp edges.
    FlatSquare,
    /// 18 px high, rounder corners (4 px), a glossy gradient, text shadows.
    Plastic,
}

impl Shape {
    /// Badge height in pixels at 11 px text.
    fn height(self) -> u32 {
        match self {
            Shape::Flat | Shape::FlatSquare => 20,
            Shape::Plastic => 18,
        }
    }

    /// Added to the text baseline (at 10× scale): plastic's text sits higher in its lower box.
    fn baseline_offset(self) -> u32 {
        match self {
            Shape::Flat | Shape::FlatSquare => 0,
            Shape::Plastic => 10,
        }
    }
}

/// The colour of the label box, shields' default `labelColor`.
const LABEL_BACKGROUND: &str = "#555";

/// The font stack shields names (Verdana first: the widths are Verdana's).
const FONT_FAMILY: &str = "Verdana,Geneva,DejaVu Sans,sans-serif";

/// shields: above this brightness a background gets a light shadow under its text.
const LIGHT_BACKGROUND: f64 = 0.69;

/// Everything a badge needs to be drawn, already validated.
#[derive(Clone, Copy, Debug)]
pub struct Drawing<'a> {
    /// The label, unescaped; empty for the `-simple` styles (no label box at all).
    pub label: &'a str,
    /// The value as text, unescaped.
    pub value: &'a str,
    /// Which template.
    pub shape: Shape,
    /// The value box's colour (the whole badge's when there is no label).
    pub background: Color,
    /// The value's text colour (the label's is always white on its grey box).
    pub text: Color,
    /// Text size in pixels; the geometry is laid out at 11 px and scaled by `font_size / 11` with a
    /// `viewBox`, so every proportion stays shields'.
    pub font_size: u32,
}

/// Writes the SVG of `d` at the end of `out` (nothing else is touched).
pub fn write(d: &Drawing<'_>, out: &mut Vec<u8>) {
    let height = d.shape.height();
    let label_width = if d.label.is_empty() { 0 } else { preferred_width(d.label) };
    // badge-maker: a text box is its text plus 5 px each side; no label, no label box.
    let left = if d.label.is_empty() { 0 } else { label_width + 10 };
    let value_width = preferred_width(d.value);
    let right = value_width + 10;
    let width = left + right;

    out.extend_from_slice(b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"");
    scaled(out, width, d.font_size);
    out.extend_from_slice(b"\" height=\"");
    scaled(out, height, d.font_size);
    out.extend_from_slice(b"\" viewBox=\"0 0 ");
    number(out, width);
    out.push(b' ');
    number(out, height);
    out.extend_from_slice(b"\" role=\"img\" aria-label=\"");
    accessible_text(out, d);
    out.extend_from_slice(b"\"><title>");
    accessible_text(out, d);
    out.extend_from_slice(b"</title>");

    match d.shape {
        Shape::Flat => out.extend_from_slice(
            b"<linearGradient id=\"s\" x2=\"0\" y2=\"100%\"><stop offset=\"0\" stop-color=\"#bbb\" \
              stop-opacity=\".1\"/><stop offset=\"1\" stop-opacity=\".1\"/></linearGradient>",
        ),
        Shape::Plastic => out.extend_from_slice(
            b"<linearGradient id=\"s\" x2=\"0\" y2=\"100%\"><stop offset=\"0\" stop-color=\"#fff\" \
              stop-opacity=\".7\"/><stop offset=\".1\" stop-color=\"#aaa\" stop-opacity=\".1\"/>\
              <stop offset=\".9\" stop-color=\"#000\" stop-opacity=\".3\"/><stop offset=\"1\" \
              stop-color=\"#000\" stop-opacity=\".5\"/></linearGradient>",
        ),
        Shape::FlatSquare => {}
    }
    if d.shape == Shape::FlatSquare {
        out.extend_from_slice(b"<g shape-rendering=\"crispEdges\">");
    } else {
        out.extend_from_slice(b"<clipPath id=\"r\"><rect width=\"");
        number(out, width);
        out.extend_from_slice(b"\" height=\"");
        number(out, height);
        out.extend_from_slice(if d.shape == Shape::Plastic { b"\" rx=\"4" } else { b"\" rx=\"3" });
        out.extend_from_slice(b"\" fill=\"#fff\"/></clipPath><g clip-path=\"url(#r)\">");
    }
    if left > 0 {
        rect(out, 0, left, height, LABEL_BACKGROUND);
    }
    rect(out, left, right, height, d.background.as_str());
    if d.shape != Shape::FlatSquare {
        rect(out, 0, width, height, "url(#s)");
    }
    out.extend_from_slice(b"</g><g text-anchor=\"middle\" font-family=\"");
    out.extend_from_slice(FONT_FAMILY.as_bytes());
    out.extend_from_slice(b"\" text-rendering=\"geometricPrecision\" font-size=\"110\">");

    // Centres at 10× scale. Widths are odd, so a half width plus whole margins is a half pixel,
    // which the 10× scale makes whole: shields' label at 1 + w/2 + 5, value at left - 1 + w/2 + 5
    // (at w/2 + 5 without a label).
    if left > 0 {
        let x = 10 + 5 * label_width + 50;
        text(out, d.shape, d.label, x, label_width, LABEL_TEXT, LABEL_BACKGROUND_DARK);
    }
    let margin = left.saturating_sub(1);
    let x = 10 * margin + 5 * value_width + 50;
    let dark = d.background.brightness() <= LIGHT_BACKGROUND;
    text(out, d.shape, d.value, x, value_width, d.text.as_str(), dark);
    out.extend_from_slice(b"</g></svg>");
}

/// `#555` is dark: the label's shadow is the dark one.
const LABEL_BACKGROUND_DARK: bool = true;

/// The label's text colour: white on its grey box, as shields draws it whatever the value's colours
/// (a `textcolor` chosen for a light `bgcolor` would be unreadable on `#555`).
const LABEL_TEXT: &str = "#fff";

/// `label: value`, or the value alone, escaped: the accessible name and the tooltip.
fn accessible_text(out: &mut Vec<u8>, d: &Drawing<'_>) {
    if !d.label.is_empty() {
        escape(out, d.label);
        out.extend_from_slice(b": ");
    }
    escape(out, d.value);
}

/// One background rectangle.
fn rect(out: &mut Vec<u8>, x: u32, width: u32, height: u32, fill: &str) {
    out.extend_from_slice(b"<rect");
    if x > 0 {
        out.extend_from_slice(b" x=\"");
        number(out, x);
        out.push(b'"');
    }
    out.extend_from_slice(b" width=\"");
    number(out, width);
    out.extend_from_slice(b"\" height=\"");
    number(out, height);
    out.extend_from_slice(b"\" fill=\"");
    out.extend_from_slice(fill.as_bytes());
    out.extend_from_slice(b"\"/>");
}

/// One text (and its shadow, one pixel lower, where the template has shadows), centred on `x`
/// and stretched to exactly the measured width with `textLength`, so the box fits whatever font
/// the viewer substitutes.
fn text(out: &mut Vec<u8>, shape: Shape, content: &str, x: u32, width: u32, fill: &str, dark: bool) {
    let baseline = 140 - shape.baseline_offset();
    if shape != Shape::FlatSquare {
        out.extend_from_slice(b"<text aria-hidden=\"true\" x=\"");
        number(out, x);
        out.extend_from_slice(b"\" y=\"");
        number(out, baseline + 10);
        out.extend_from_slice(if dark { b"\" fill=\"#010101" } else { b"\" fill=\"#ccc" });
        out.extend_from_slice(b"\" fill-opacity=\".3\" transform=\"scale(.1)\" textLength=\"");
        number(out, 10 * width);
        out.extend_from_slice(b"\">");
        escape(out, content);
        out.extend_from_slice(b"</text>");
    }
    out.extend_from_slice(b"<text x=\"");
    number(out, x);
    out.extend_from_slice(b"\" y=\"");
    number(out, baseline);
    out.extend_from_slice(b"\" transform=\"scale(.1)\" fill=\"");
    out.extend_from_slice(fill.as_bytes());
    out.extend_from_slice(b"\" textLength=\"");
    number(out, 10 * width);
    out.extend_from_slice(b"\">");
    escape(out, content);
    out.extend_from_slice(b"</text>");
}

/// XML-escapes `s` for both text and attribute values (the five entities shields' `escapeXml`
/// writes). Characters XML forbids never get here: [`super::Badge::from_query`] refuses them.
pub fn escape(out: &mut Vec<u8>, s: &str) {
    let mut rest = s.as_bytes();
    while let Some(i) = rest.iter().position(|b| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'')) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(match rest[i] {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'"' => b"&quot;",
            _ => b"&apos;",
        });
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

fn number(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `n * font_size / 11` in pixels, to two decimals with trailing zeros dropped (`96`, `104.73`).
fn scaled(out: &mut Vec<u8>, n: u32, font_size: u32) {
    let hundredths = (u64::from(n) * u64::from(font_size) * 200 + 11) / 22;
    out.extend_from_slice(itoa::Buffer::new().format(hundredths / 100).as_bytes());
    let frac = hundredths % 100;
    if frac != 0 {
        out.push(b'.');
        out.push(b'0' + (frac / 10) as u8);
        if frac % 10 != 0 {
            out.push(b'0' + (frac % 10) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drawing<'a>(label: &'a str, value: &'a str, shape: Shape) -> Drawing<'a> {
        Drawing {
            label,
            value,
            shape,
            background: Color::parse("4c1").unwrap(),
            text: Color::parse("fff").unwrap(),
            font_size: 11,
        }
    }

    fn svg(d: &Drawing<'_>) -> String {
        let mut out = Vec::new();
        write(d, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// badge-maker's own snapshot ("message/label, no logo"): cactus | grown, flat, is 90 × 20
    /// with two 45 px boxes, texts centred at 23.5 and 66.5 px, each 35 px long.
    #[test]
    fn geometry_matches_shields_snapshot() {
        let s = svg(&drawing("cactus", "grown", Shape::Flat));
        assert!(s.contains("width=\"90\" height=\"20\" viewBox=\"0 0 90 20\""), "{s}");
        assert!(s.contains("<rect width=\"45\" height=\"20\" fill=\"#555\"/>"), "{s}");
        assert!(s.contains("<rect x=\"45\" width=\"45\" height=\"20\" fill=\"#4c1\"/>"), "{s}");
        assert!(
            s.contains(
                "<text x=\"235\" y=\"140\" transform=\"scale(.1)\" fill=\"#fff\" textLength=\"350\">cactus</text>"
            ),
            "{s}"
        );
        assert!(s.contains("<text aria-hidden=\"true\" x=\"665\" y=\"150\" fill=\"#010101\""), "{s}");
        assert!(
            s.contains(
                "<text x=\"665\" y=\"140\" transform=\"scale(.1)\" fill=\"#fff\" textLength=\"350\">grown</text>"
            ),
            "{s}"
        );
    }

    #[test]
    fn no_label_is_one_box() {
        let s = svg(&drawing("", "1234", Shape::FlatSquare));
        // "1234": 4 × 6.99 = 27.96 → 27, plus 10 of padding; the text centred in it.
        assert!(s.contains("width=\"37\" height=\"20\""), "{s}");
        assert!(!s.contains("#555") && !s.contains("aria-hidden"), "{s}");
        assert!(s.contains("<text x=\"185\" y=\"140\""), "{s}");
        assert!(s.contains("aria-label=\"1234\""), "{s}");
    }

    #[test]
    fn font_size_scales_the_outside_only() {
        let mut d = drawing("cactus", "grown", Shape::Plastic);
        d.font_size = 22;
        let s = svg(&d);
        assert!(s.contains("width=\"180\" height=\"36\" viewBox=\"0 0 90 18\""), "{s}");
        d.font_size = 13;
        assert!(svg(&d).contains("width=\"106.36\" height=\"21.27\""));
        // Light backgrounds get the light shadow.
        d.background = Color::parse("eee").unwrap();
        assert!(svg(&d).contains("fill=\"#ccc\""));
    }

    #[test]
    fn escape_writes_entities() {
        let mut out = Vec::new();
        escape(&mut out, "a&b<c>\"d'e");
        assert_eq!(out, b"a&amp;b&lt;c&gt;&quot;d&apos;e");
    }
}
