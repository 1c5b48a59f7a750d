//! Tests of the badge as the routes use it: query in, SVG out, read back with an XML parser.
//!
//! They own no production code. Every rendered badge is parsed with `roxmltree`, so "well-formed"
//! and "escaped" are checked by a real XML reader, not by searching the bytes.

use proptest::prelude::*;

use super::*;

const STYLES: [&str; 6] = ["flat", "flat-square", "plastic", "flat-simple", "flat-square-simple", "plastic-simple"];

fn render(query: &str, value: i64) -> String {
    let mut out = b"head".to_vec();
    Badge::from_query(query).unwrap().render(value, &mut out);
    // The caller's earlier bytes are kept.
    assert!(out.starts_with(b"head"));
    String::from_utf8(out.split_off(4)).unwrap()
}

/// The texts a badge shows, in document order, and its accessible name, as an XML reader sees them.
fn read_back(svg: &str) -> (Vec<String>, String) {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}: {svg}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(root.tag_name().namespace(), Some("http://www.w3.org/2000/svg"));
    let texts = root
        .descendants()
        .filter(|n| n.has_tag_name("text") && n.attribute("aria-hidden").is_none())
        .map(|n| n.text().unwrap_or("").to_owned())
        .collect();
    let title = root.descendants().find(|n| n.has_tag_name("title")).and_then(|n| n.text()).unwrap();
    assert_eq!(root.attribute("aria-label"), Some(title));
    (texts, title.to_owned())
}

/// The outer width must be the sum of the boxes, or the value box is cut off or padded.
fn boxes_add_up(svg: &str) {
    let doc = roxmltree::Document::parse(svg).unwrap();
    let root = doc.root_element();
    let view: Vec<u32> = root.attribute("viewBox").unwrap().split(' ').map(|n| n.parse().unwrap()).collect();
    let fills: u32 = root
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("fill").is_some_and(|f| !f.starts_with("url")))
        .filter(|n| n.parent().is_some_and(|p| p.has_tag_name("g")))
        .map(|n| n.attribute("width").unwrap().parse::<u32>().unwrap())
        .sum();
    assert_eq!(view[2], fills, "{svg}");
}

#[test]
fn defaults_are_abacus() {
    let svg = render("", 7);
    let (texts, title) = read_back(&svg);
    assert_eq!(texts, ["counter", "7"]);
    assert_eq!(title, "counter: 7");
    assert!(svg.contains("fill=\"#007ec6\""), "{svg}");
    assert!(svg.contains("fill=\"#fff\" textLength"), "{svg}");
    // counter (41 px) and 7 (7 px), each with 10 px of padding, at 11 px: 20 high.
    assert!(svg.contains("width=\"68\" height=\"20\" viewBox=\"0 0 68 20\""), "{svg}");
}

#[test]
fn every_style_renders_well_formed_svg() {
    for style in STYLES {
        for value in [0, 1, -5, 1234567, i64::MAX, i64::MIN] {
            for size in ["6", "11", "13", "48"] {
                let query = format!("style={style}&fontsize={size}&text=views&bgcolor=%23e05d44&textcolor=333");
                let svg = render(&query, value);
                let (texts, title) = read_back(&svg);
                if style.ends_with("-simple") {
                    assert_eq!(texts, [value.to_string()], "{query}");
                    assert_eq!(title, value.to_string());
                } else {
                    assert_eq!(texts, ["views".to_owned(), value.to_string()], "{query}");
                    assert_eq!(title, format!("views: {value}"));
                }
                assert!(svg.contains("#e05d44") && svg.contains("fill=\"#333\""), "{svg}");
                // The label keeps white text on its grey box whatever textcolor says.
                assert_eq!(svg.contains("fill=\"#fff\" textLength"), !style.ends_with("-simple"), "{svg}");
                boxes_add_up(&svg);
            }
        }
    }
}

#[test]
fn query_forms() {
    // Percent-decoding, '+' as space, case-insensitive style, the first of a repeated parameter.
    let (texts, _) = read_back(&render("?text=page+views%21&style=FLAT&text=second&token=x", 3));
    assert_eq!(texts, ["page views!", "3"]);
    // An empty label is no label.
    let (texts, title) = read_back(&render("text=", 3));
    assert_eq!((texts, title), (vec!["3".to_owned()], "3".to_owned()));
    // Borrowed when nothing needed decoding; into_owned keeps the content.
    let badge = Badge::from_query("text=abc").unwrap();
    assert!(matches!(badge.label, Cow::Borrowed("abc")));
    assert!(matches!(badge.into_owned().label, Cow::Owned(ref s) if s == "abc"));
}

#[test]
fn bad_parameters_are_named() {
    let cases = [
        ("bgcolor=nope", BadgeError::Color("bgcolor")),
        ("textcolor=%23ff", BadgeError::Color("textcolor")),
        ("bgcolor=", BadgeError::Color("bgcolor")),
        ("style=for-the-badge", BadgeError::Style),
        ("style=-simple", BadgeError::Style),
        ("style=", BadgeError::Style),
        ("fontsize=5", BadgeError::FontSize),
        ("fontsize=49", BadgeError::FontSize),
        ("fontsize=11.5", BadgeError::FontSize),
        ("fontsize=", BadgeError::FontSize),
        ("font=arial", BadgeError::Font),
        ("text=a%00b", BadgeError::TextCharacter),
        ("text=%0A", BadgeError::TextCharacter),
        ("text=%EF%BF%BF", BadgeError::TextCharacter),
    ];
    for (query, error) in cases {
        let got = Badge::from_query(query).unwrap_err();
        assert_eq!(got, error, "{query}");
        // The message names the parameter and never repeats the value.
        let message = got.to_string();
        let name = query.split('=').next().unwrap();
        assert!(message.starts_with(name), "{query}: {message}");
    }
    let long = format!("text={}", "x".repeat(MAX_TEXT + 1));
    assert_eq!(Badge::from_query(&long).unwrap_err(), BadgeError::TextLength);
    assert!(Badge::from_query(&long[..long.len() - 1]).is_ok());
}

/// Parameter names the badge reads, and some it does not, for the generated queries.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("text".to_owned()),
        Just("bgcolor".to_owned()),
        Just("textcolor".to_owned()),
        Just("style".to_owned()),
        Just("fontsize".to_owned()),
        Just("font".to_owned()),
        "[a-z]{1,6}",
    ]
}

/// Values mixing valid ones with XML's special characters and arbitrary Unicode.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("flat-square-simple".to_owned()),
        Just("plastic".to_owned()),
        Just("brightgreen".to_owned()),
        Just("12".to_owned()),
        "[<>&\"' a-z;#]{0,12}",
        "[<>&\"'\\PC]{0,20}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    /// Whatever a client puts in the query, the badge is refused or is well-formed XML whose texts
    /// and accessible name read back exactly as sent: no `<`, `&` or `"` ever reaches the SVG raw.
    #[test]
    fn any_query_is_refused_or_escaped(
        pairs in prop::collection::vec((name(), value()), 0..6),
        number in any::<i64>(),
    ) {
        let query: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
        let label = pairs.iter().find(|(n, _)| n == "text").map_or("counter", |(_, v)| v.as_str());
        if let Ok(badge) = Badge::from_query(&query) {
            let mut out = Vec::new();
            badge.render(number, &mut out);
            let svg = String::from_utf8(out).unwrap();
            let (texts, title) = read_back(&svg);
            let shown = texts.len() == 2;
            prop_assert_eq!(texts.last().unwrap(), &number.to_string());
            if shown {
                prop_assert_eq!(&texts[0], label);
                prop_assert_eq!(title, format!("{label}: {number}"));
            }
            boxes_add_up(&svg);
        }
    }

    /// Any label with every other parameter valid: accepted exactly when it has no character XML
    /// forbids and fits [`MAX_TEXT`], and then read back unchanged in every style.
    #[test]
    fn any_label_is_accepted_or_refused_for_a_reason(
        label in prop_oneof!["[<>&\"' ]{0,8}", "\\PC{0,40}", any::<String>()],
        style in 0..STYLES.len(),
    ) {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("text", &label)
            .append_pair("style", STYLES[style])
            .finish();
        let forbidden = label.chars().any(|c| c < ' ' || c == '\u{7f}' || c == '\u{fffe}' || c == '\u{ffff}');
        match Badge::from_query(&query) {
            Err(BadgeError::TextCharacter) => prop_assert!(forbidden),
            Err(BadgeError::TextLength) => prop_assert!(!forbidden && label.chars().count() > MAX_TEXT),
            Err(other) => prop_assert!(false, "{other}"),
            Ok(badge) => {
                prop_assert!(!forbidden && label.chars().count() <= MAX_TEXT);
                let mut out = Vec::new();
                badge.render(-1, &mut out);
                let (texts, _) = read_back(std::str::from_utf8(&out).unwrap());
                if STYLES[style].ends_with("-simple") || label.is_empty() {
                    prop_assert_eq!(texts, vec!["-1".to_owned()]);
                } else {
                    prop_assert_eq!(texts, vec![label.clone(), "-1".to_owned()]);
                }
            }
        }
    }

    /// Raw query strings, not built by a serialiser: malformed escapes and stray separators too.
    #[test]
    fn raw_queries_never_break_the_xml(query in "[a-z=&%+#;<>\"'0-9A-F]{0,40}") {
        if let Ok(badge) = Badge::from_query(&query) {
            let mut out = Vec::new();
            badge.render(1, &mut out);
            read_back(std::str::from_utf8(&out).unwrap());
        }
    }
}
