//! Admin authorisation and the secrets the API makes: the token a request presents
//! (`Authorization: Bearer ...` or `?token=`), its constant-time comparison with a counter's admin
//! key or the global token, and random admin keys and names from the kernel's generator.
//!
//! It must not touch Redis or decide statuses (`serve` does); it never logs a token.

use std::io::Read as _;

/// The token of a request: the `Authorization` header's bearer token, else `?token=`.
pub fn presented<'a>(authorization: Option<&'a str>, query_token: Option<&'a str>) -> Option<&'a str> {
    let bearer = authorization.and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    bearer.or(query_token).filter(|t| !t.is_empty())
}

/// Whether `a` and `b` are equal, in time that depends on their lengths only, not on where they
/// first differ, so that a token cannot be guessed a byte at a time from response times.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the compiler from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

/// `n` bytes from the kernel's random generator. Admin keys are secrets, so a seeded user-space
/// generator will not do.
fn random_bytes(n: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// A new admin key: a random (version 4) UUID, as Abacus's.
pub fn admin_key() -> std::io::Result<String> {
    let mut b = random_bytes(16)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]))
}

/// A random 16-character name for `/create/` without names, from Abacus's alphabet.
pub fn random_name() -> std::io::Result<String> {
    const ALPHABET: &[u8; 64] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    Ok(random_bytes(16)?.iter().map(|b| ALPHABET[usize::from(b & 63)] as char).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_header_wins_over_the_query() {
        assert_eq!(presented(Some("Bearer abc"), Some("q")), Some("abc"));
        assert_eq!(presented(Some("bearer  abc "), None), Some("abc"));
        assert_eq!(presented(Some("Basic abc"), Some("q")), Some("q"));
        assert_eq!(presented(None, Some("")), None);
        assert_eq!(presented(None, None), None);
    }

    #[test]
    fn comparison_and_random_values() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        let k = admin_key().unwrap();
        assert_eq!(k.len(), 36);
        assert_eq!(&k[14..15], "4");
        assert_ne!(k, admin_key().unwrap());
        let n = random_name().unwrap();
        assert!(crate::api::names::validate(&n, "key").is_ok(), "{n}");
    }
}
