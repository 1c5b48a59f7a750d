//! `--log-format json`: one JSON object per line for the error log and the access log, for log
//! pipelines (Loki, Elasticsearch, journald's JSON) that should not need a parser per line.
//!
//! It owns the JSON string escaping both logs use and the error log's object
//! (`{"time":…,"pid":…,"level":…,"message":…}` plus the event's own fields). Output is ASCII only:
//! `"` and `\` are backslash-escaped, control bytes (and DEL) become `\u00XX`, and every non-ASCII
//! character `\uXXXX` (a surrogate pair beyond the BMP), so no byte a client or a library sends can
//! end a line or a string early. It must not decide what is logged or where (`logging` does), and
//! the access log's keys and values are `http::logformat`'s.

use std::fmt::Write as _;

/// `--log-format`: the error and access logs as gunicorn's text lines, or as JSON lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
pub enum LogFormat {
    /// gunicorn's lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Appends `s` to `out` as a JSON string, quotes included, ASCII only. `<` is escaped too, so the
/// string is also safe inside a page's `<script>` (the counting API's JSONP answers use this).
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' if c != '<' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Appends `"key":"value"` (with a leading comma unless `first`).
pub fn push_pair(out: &mut String, first: bool, key: &str, value: &str) {
    if !first {
        out.push(',');
    }
    push_str(out, key);
    out.push(':');
    push_str(out, value);
}

/// One error-log event as a JSON line: time (RFC 3339, local offset), pid, gunicorn's level name,
/// the message, the library it came from when bridged (`logger`), then the event's other fields
/// by name. A field named like one of those four keeps its value under `field.NAME`.
pub fn event_line(
    time: &str,
    pid: u32,
    level: &str,
    logger: Option<&str>,
    message: &str,
    fields: &[(String, String)],
) -> String {
    let mut out = String::with_capacity(96 + message.len());
    out.push('{');
    push_pair(&mut out, true, "time", time);
    let _ = write!(out, ",\"pid\":{pid}");
    push_pair(&mut out, false, "level", level);
    if let Some(logger) = logger {
        push_pair(&mut out, false, "logger", logger);
    }
    push_pair(&mut out, false, "message", message);
    for (name, value) in fields {
        let reserved = matches!(name.as_str(), "time" | "pid" | "level" | "logger" | "message");
        let key = if reserved { format!("field.{name}") } else { name.clone() };
        push_pair(&mut out, false, &key, value);
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> String {
        let mut out = String::new();
        push_str(&mut out, s);
        out
    }

    #[test]
    fn strings_are_escaped_to_ascii() {
        assert_eq!(json("plain"), "\"plain\"");
        assert_eq!(json("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(json("l1\nl2\r\t\x1b[31m\x7f"), r#""l1\nl2\r\t\u001b[31m\u007f""#);
        assert_eq!(json("é€😀"), r#""\u00e9\u20ac\ud83d\ude00""#);
        for s in ["a\"b\\c", "l1\nl2\r\t\x1b[31m\x7f\0", "é€😀 \u{2028}"] {
            let back: String = serde_json::from_str(&json(s)).unwrap();
            assert_eq!(back, s);
            assert!(json(s).bytes().all(|b| (b' '..=b'~').contains(&b)), "{}", json(s));
        }
    }

    #[test]
    fn an_event_is_one_object() {
        let fields = vec![("shard".to_string(), "2".to_string()), ("message".to_string(), "x".to_string())];
        let line =
            event_line("2026-12-07T04:00:00.000+00:00", 42, "WARNING", Some("glommio"), "hi\n\"there\"", &fields);
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1, "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["pid"], 42);
        assert_eq!(v["level"], "WARNING");
        assert_eq!(v["logger"], "glommio");
        assert_eq!(v["message"], "hi\n\"there\"");
        assert_eq!(v["shard"], "2");
        assert_eq!(v["field.message"], "x");
    }
}
