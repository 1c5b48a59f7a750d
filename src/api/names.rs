//! Counter names: what a namespace or key may be, the reserved names `:HOST:` and `:PATH:`, and the
//! Redis keys they become (`K:{namespace}:{key}`, `A:{namespace}:{key}`, as Abacus lays them out).
//!
//! Pure functions of their input; it must not touch Redis, sockets or HTTP framing.

use std::rc::Rc;

/// Shortest and longest name.
pub const MIN_LEN: usize = 3;
/// See [`MIN_LEN`].
pub const MAX_LEN: usize = 64;

/// The namespace of `/hit/{key}` and the other one-segment routes.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Why a name cannot be used; each is answered 400 with its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Too short or too long.
    #[error("Invalid {0}: length must be between 3 and 64 characters inclusive")]
    Length(&'static str),
    /// A character outside `[A-Za-z0-9_.-]`.
    #[error("Invalid {0}: must match the pattern ^[A-Za-z0-9_\\-.]{{3,64}}$")]
    Characters(&'static str),
    /// `:HOST:` without an `Origin` header, or `:PATH:` without a `Referer`.
    #[error("{0} header is required if {1} is used")]
    MissingHeader(&'static str, &'static str),
    /// The header `:HOST:` or `:PATH:` would take is not an http(s) URL without odd characters.
    #[error("Invalid {0} header format")]
    BadHeader(&'static str),
}

/// The headers the reserved names read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sources<'a> {
    /// `Origin`, for `:HOST:`.
    pub origin: Option<&'a str>,
    /// `Referer`, for `:PATH:`.
    pub referer: Option<&'a str>,
}

/// The name `segment` stands for: itself when valid, or the page's origin or address for the
/// reserved names (a part of the header, so nothing is copied until [`Names::new`]). `what` is
/// "namespace" or "key", for the error text.
pub fn resolve<'a>(segment: &'a str, what: &'static str, sources: Sources<'a>) -> Result<&'a str, NameError> {
    match segment {
        ":HOST:" => match (sources.origin, sources.referer) {
            // A badge's `<img>` request carries no `Origin` (browsers send it with CORS requests and
            // POSTs only), so the origin of its `Referer` names the embedding site instead; with
            // neither header it is Abacus's error about `Origin`.
            (None, Some(referer)) => from_header(Some(origin_of(referer)), "Referer", ":HOST:"),
            (origin, _) => from_header(origin, "Origin", ":HOST:"),
        },
        ":PATH:" => from_header(sources.referer, "Referer", ":PATH:"),
        _ => validate(segment, what).map(|()| segment),
    }
}

/// Checks a name against `^[A-Za-z0-9_.-]{3,64}$`.
pub fn validate(name: &str, what: &'static str) -> Result<(), NameError> {
    if !(MIN_LEN..=MAX_LEN).contains(&name.len()) {
        return Err(NameError::Length(what));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
        return Err(NameError::Characters(what));
    }
    Ok(())
}

/// `scheme://host[:port]` of a URL, as a browser's `Origin` header writes it: up to the first `/`,
/// `?` or `#` after `://`. Anything without `://` is returned whole, for [`from_header`] to refuse.
fn origin_of(url: &str) -> &str {
    let Some(at) = url.find("://").map(|i| i + 3) else { return url };
    let end = url[at..].find(['/', '?', '#']).map_or(url.len(), |i| at + i);
    &url[..end]
}

/// A reserved name's value: the header, if it is an http(s) URL without spaces, quotes, angle or
/// curly brackets, percent signs or backslashes (Abacus's rule), cut to 64 bytes. (Abacus also
/// pads a value under 3 bytes with dots; an http(s) URL is never that short.)
fn from_header<'a>(value: Option<&'a str>, header: &'static str, name: &'static str) -> Result<&'a str, NameError> {
    let value = value.ok_or(NameError::MissingHeader(header, name))?;
    let url = value.starts_with("http://") || value.starts_with("https://");
    let odd = value.bytes().any(|b| b" \t\r\n<>\"'\\%{}".contains(&b) || !(0x21..0x7f).contains(&b));
    if !url || odd {
        return Err(NameError::BadHeader(header));
    }
    // ASCII only (checked above), so any byte offset is a character boundary.
    Ok(&value[..value.len().min(MAX_LEN)])
}

/// A counter's namespace and key, held as its Redis key `K:{namespace}:{key}` (Abacus's layout):
/// one allocation per request, shared by the ops that carry the key to Redis, where the namespace,
/// the key and the joined key were three strings and a copy before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// `K:{namespace}:{key}`: ASCII, as every name is.
    counter_key: Rc<[u8]>,
    namespace_len: usize,
}

impl Names {
    /// The names of a counter (validated, or made by the server).
    pub fn new(namespace: &str, key: &str) -> Names {
        let counter_key = b"K:".iter().chain(namespace.as_bytes()).chain(b":").chain(key.as_bytes()).copied().collect();
        Names { counter_key, namespace_len: namespace.len() }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        text(&self.counter_key[2..2 + self.namespace_len])
    }

    /// The key.
    pub fn key(&self) -> &str {
        text(&self.counter_key[3 + self.namespace_len..])
    }

    /// The counter's Redis key, `K:{namespace}:{key}`.
    pub fn counter_key(&self) -> &Rc<[u8]> {
        &self.counter_key
    }

    /// [`Names::counter_key`] as text, for the answers that show it.
    pub fn counter_key_text(&self) -> &str {
        text(&self.counter_key)
    }

    /// The Redis key holding the counter's admin key, `A:{namespace}:{key}`.
    pub fn admin_key(&self) -> String {
        format!("A{}", &self.counter_key_text()[1..])
    }

    /// The pub/sub channel a counter's new values are published on (`/stream`), `S:{namespace}:{key}`.
    pub fn stream_channel(&self) -> String {
        format!("S{}", &self.counter_key_text()[1..])
    }
}

/// Names are joined from `&str`s at ASCII separators, so they are always UTF-8.
fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_abacus_rule() {
        assert_eq!(validate("abc", "key"), Ok(()));
        assert_eq!(validate("A-b_c.9", "key"), Ok(()));
        assert_eq!(validate(&"x".repeat(64), "key"), Ok(()));
        assert_eq!(validate("ab", "key"), Err(NameError::Length("key")));
        assert_eq!(validate(&"x".repeat(65), "namespace"), Err(NameError::Length("namespace")));
        for bad in ["a b", "abc/", "ab:c", "abç", "a%20", "a\"b"] {
            assert_eq!(validate(bad, "key"), Err(NameError::Characters("key")), "{bad}");
        }
        assert_eq!(
            NameError::Length("key").to_string(),
            "Invalid key: length must be between 3 and 64 characters inclusive"
        );
    }

    #[test]
    fn reserved_names_take_the_headers_validated_and_cut() {
        let s = Sources { origin: Some("https://example.com"), referer: Some("http://example.com/a/post") };
        assert_eq!(resolve(":HOST:", "namespace", s).unwrap(), "https://example.com");
        assert_eq!(resolve(":PATH:", "key", s).unwrap(), "http://example.com/a/post");
        let long = format!("https://e.com/{}", "p".repeat(100));
        let s = Sources { origin: None, referer: Some(&long) };
        assert_eq!(resolve(":PATH:", "key", s).unwrap(), &long[..64]);
        assert_eq!(resolve(":HOST:", "key", Sources::default()), Err(NameError::MissingHeader("Origin", ":HOST:")));
        for bad in ["ftp://x.org", "https://x.org/a b", "https://x.org/<script>", "https://x.org/%41", "null"] {
            let s = Sources { origin: Some(bad), referer: None };
            assert_eq!(resolve(":HOST:", "key", s), Err(NameError::BadHeader("Origin")), "{bad}");
        }
        assert_eq!(resolve("plain", "key", Sources::default()).unwrap(), "plain");
    }

    #[test]
    fn host_without_origin_is_the_referers_origin() {
        // An <img> badge: no Origin; the Referer is the page, or only its origin (Chromium's
        // default strict-origin-when-cross-origin policy).
        for referer in
            ["https://blog.example:8443/a/post?x=1#top", "https://blog.example:8443/", "https://blog.example:8443"]
        {
            let s = Sources { origin: None, referer: Some(referer) };
            assert_eq!(resolve(":HOST:", "namespace", s).unwrap(), "https://blog.example:8443", "{referer}");
        }
        let s = Sources { origin: None, referer: Some("https://b.example?q#f") };
        assert_eq!(resolve(":HOST:", "namespace", s).unwrap(), "https://b.example");
        // Origin wins when both are there, as before.
        let s = Sources { origin: Some("https://a.example"), referer: Some("https://b.example/p") };
        assert_eq!(resolve(":HOST:", "namespace", s).unwrap(), "https://a.example");
        for bad in ["null", "ftp://x.org/p", "https://x.org<b>/p", "about:blank"] {
            let s = Sources { origin: None, referer: Some(bad) };
            assert_eq!(resolve(":HOST:", "key", s), Err(NameError::BadHeader("Referer")), "{bad}");
        }
    }

    #[test]
    fn keys_are_laid_out_as_abacus_does() {
        let n = Names::new("default", "page");
        assert_eq!(&n.counter_key()[..], b"K:default:page");
        assert_eq!(n.counter_key_text(), "K:default:page");
        let n = Names::new("ns.x", "page");
        assert_eq!((n.namespace(), n.key()), ("ns.x", "page"));
        assert_eq!(n.admin_key(), "A:ns.x:page");
        assert_eq!(n.stream_channel(), "S:ns.x:page");
    }

    /// Seeded: any namespace and key come back as they went in (a `:` or a non-ASCII character in
    /// them included, though validation lets neither through), and the Redis keys are the three
    /// strings joined as Abacus joins them.
    #[test]
    fn names_come_back_whole_and_join_as_abacus_does() {
        let seed = fastrand::u64(..);
        let mut rng = fastrand::Rng::with_seed(seed);
        let alphabet: Vec<char> = "abcXYZ09_.-:/é".chars().collect();
        for _ in 0..2_000 {
            let name = |rng: &mut fastrand::Rng| -> String {
                (0..rng.usize(0..=80)).map(|_| alphabet[rng.usize(..alphabet.len())]).collect()
            };
            let (namespace, key) = (name(&mut rng), name(&mut rng));
            let n = Names::new(&namespace, &key);
            assert_eq!((n.namespace(), n.key()), (namespace.as_str(), key.as_str()), "seed {seed}");
            assert_eq!(n.counter_key_text(), format!("K:{namespace}:{key}"), "seed {seed}");
            assert_eq!(n.admin_key(), format!("A:{namespace}:{key}"), "seed {seed}");
            assert_eq!(n.stream_channel(), format!("S:{namespace}:{key}"), "seed {seed}");
        }
    }
}
