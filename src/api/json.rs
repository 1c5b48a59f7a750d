//! The API's JSON bodies, as Abacus shapes them, and JSONP: a small writer for the few flat objects
//! the API answers, string escaping, and the `?callback=` check.
//!
//! Pure functions; it must not decide statuses (`serve` does) or write HTTP heads (`reply` does).

/// The longest `?callback=` accepted.
pub const MAX_CALLBACK: usize = 128;

/// One JSON value of a flat object.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// A number.
    Int(i64),
    /// A string, escaped on output.
    Str(&'a str),
    /// `true` or `false`.
    Bool(bool),
}

/// `{"k":v,...}` with the fields in the order given.
pub fn object(fields: &[(&str, Value<'_>)]) -> String {
    // Room for `{"value":N}` and most error bodies without growing.
    let mut out = String::with_capacity(64);
    out.push('{');
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(&mut out, name);
        out.push(':');
        match value {
            Value::Int(n) => out.push_str(itoa::Buffer::new().format(*n)),
            Value::Str(s) => string(&mut out, s),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }
    out.push('}');
    out
}

/// `{"error":"..."}`.
pub fn error(message: &str) -> String {
    object(&[("error", Value::Str(message))])
}

/// `{"value":N}`: every hit's body, written without the general writer's escaping of the name.
pub fn value(n: i64) -> String {
    ValueText::new(n).as_str().to_string()
}

/// `{"value":N}` laid out on the stack, for the answers that copy it straight into their output
/// (every `/hit` and `/get`: no string per request). The longest is
/// `{"value":-9223372036854775808}`, 30 bytes.
#[derive(Debug)]
pub struct ValueText {
    buf: [u8; 30],
    len: usize,
}

impl ValueText {
    /// The body for `n`.
    pub fn new(n: i64) -> ValueText {
        let mut digits = itoa::Buffer::new();
        let mut text = ValueText { buf: [0; 30], len: 0 };
        for part in [b"{\"value\":".as_slice(), digits.format(n).as_bytes(), b"}"] {
            text.buf[text.len..text.len + part.len()].copy_from_slice(part);
            text.len += part.len();
        }
        text
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The text (ASCII).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// Appends `s` as a JSON string: quotes, backslashes, control characters, `<` and everything
/// outside ASCII escaped (so the line and paragraph separators JavaScript does not allow in a
/// string cannot reach a JSONP answer), the same escaping as the JSON logs'.
fn string(out: &mut String, s: &str) {
    crate::logjson::push_str(out, s);
}

/// Whether `name` may be used as a JSONP callback: a JavaScript identifier path (`cb`,
/// `jQuery123_456`, `app.counters.set`), ASCII only, at most [`MAX_CALLBACK`] bytes. Anything else
/// could inject script into the page that loads the answer, so it is refused with 400.
pub fn valid_callback(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_CALLBACK {
        return false;
    }
    name.split('.').all(|part| {
        let mut bytes = part.bytes();
        matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b'$')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
    })
}

/// The JSONP body: `callback(json);`, as gin (Abacus) writes it.
pub fn jsonp(callback: &str, json: &str) -> String {
    format!("{callback}({json});")
}

/// Go's `time.Duration.String()` of a TTL reply in seconds, as Abacus's `expires_str` shows it:
/// `4320h0m0s`, `1m5s`, `0s`; -1 (no expiry) and -2 (missing) are Go's nanosecond durations.
pub fn go_duration(ttl: i64) -> String {
    match ttl {
        t if t < 0 => format!("{t}ns"),
        0 => "0s".into(),
        t if t < 60 => format!("{t}s"),
        t if t < 3600 => format!("{}m{}s", t / 60, t % 60),
        t => format!("{}h{}m{}s", t / 3600, t % 3600 / 60, t % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_body_is_the_object_the_general_writer_makes() {
        let seed = fastrand::u64(..);
        let mut rng = fastrand::Rng::with_seed(seed);
        let edges = [0, 1, -1, 9, 10, i64::MAX, i64::MIN];
        for n in edges.into_iter().chain((0..10_000).map(|_| rng.i64(..) >> rng.u32(0..63))) {
            assert_eq!(value(n), object(&[("value", Value::Int(n))]), "seed {seed}");
        }
    }

    #[test]
    fn objects_and_escapes() {
        assert_eq!(value(42), r#"{"value":42}"#);
        assert_eq!(error("Key not found"), r#"{"error":"Key not found"}"#);
        let o = object(&[("a", Value::Str("q\"\\\n\u{1}<")), ("b", Value::Bool(true)), ("c", Value::Int(-1))]);
        assert_eq!(o, r#"{"a":"q\"\\\n\u0001\u003c","b":true,"c":-1}"#);
        assert!(serde_json::from_str::<serde_json::Value>(&o).is_ok());
    }

    #[test]
    fn callbacks_are_identifier_paths_only() {
        for ok in ["cb", "_x", "$", "jQuery3_1", "a.b.c", "$.x9"] {
            assert!(valid_callback(ok), "{ok}");
        }
        for bad in ["", "1a", "a..b", ".a", "a.", "alert(1)", "a-b", "a b", "a;b", "é", &"a".repeat(129)] {
            assert!(!valid_callback(bad), "{bad}");
        }
        assert_eq!(jsonp("cb", "{}"), "cb({});");
    }

    #[test]
    fn durations_read_as_go_prints_them() {
        assert_eq!(go_duration(15552000), "4320h0m0s");
        assert_eq!(go_duration(65), "1m5s");
        assert_eq!(go_duration(3661), "1h1m1s");
        assert_eq!(go_duration(7), "7s");
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(-1), "-1ns");
        assert_eq!(go_duration(-2), "-2ns");
    }
}
