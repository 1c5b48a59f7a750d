//! The limits a request head must respect (`--limit-request-line`, `--limit-request-fields`,
//! `--limit-request-field-size`), as plain data: the configuration holds them and the HTTP parser
//! enforces them (`http::parse`, which re-exports them under their old names).
//!
//! It must not parse anything; it only says what the numbers are and what they add up to.

/// The largest value each `--limit-request-*` flag accepts, as gunicorn caps them.
pub const MAX_REQUEST_LINE: usize = 8190;
/// See [`MAX_REQUEST_LINE`].
pub const MAX_FIELDS: usize = 32768;
/// See [`MAX_REQUEST_LINE`].
pub const MAX_FIELD_SIZE: usize = 8190;

/// `--limit-request-line`'s default, as gunicorn's.
pub const DEFAULT_REQUEST_LINE: usize = 4094;
/// `--limit-request-fields`' default, as gunicorn's.
pub const DEFAULT_FIELDS: usize = 100;
/// `--limit-request-field-size`'s default, as gunicorn's.
pub const DEFAULT_FIELD_SIZE: usize = 8190;

/// The limits a request head must respect. The defaults are gunicorn's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Longest request line, without its CRLF (`--limit-request-line`, default [`DEFAULT_REQUEST_LINE`]). Longer: 414.
    pub request_line: usize,
    /// Most header fields (`--limit-request-fields`, default [`DEFAULT_FIELDS`]). More: 431.
    pub fields: usize,
    /// Longest header field line, name and value (`--limit-request-field-size`, default
    /// [`DEFAULT_FIELD_SIZE`]). Longer: 431.
    pub field_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { request_line: DEFAULT_REQUEST_LINE, fields: DEFAULT_FIELDS, field_size: DEFAULT_FIELD_SIZE }
    }
}

impl Limits {
    /// The most bytes a complete head may take: the request line, every field line, their CRLFs and
    /// the blank line. A connection never buffers more than this for one head.
    pub fn max_head(&self) -> usize {
        self.request_line + 2 + self.fields * (self.field_size + 2) + 2
    }
}
