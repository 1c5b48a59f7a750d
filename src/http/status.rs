//! Every status hitcore answers with, in one table: its code, reason phrase, status line and body.
//!
//! The parser's errors, the answers and the access log all name a [`Status`] and read the code or
//! the bytes from here, so a status and its phrase cannot drift apart between them. It must not
//! decide which status a request gets (`conn` and `parse` do).

/// A status hitcore sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// 200 OK.
    Ok,
    /// 201 Created (the counting API's `/create`).
    Created,
    /// 204 No Content (the counting API's CORS preflight).
    NoContent,
    /// 400 Bad Request.
    BadRequest,
    /// 401 Unauthorized (an admin route without a token).
    Unauthorized,
    /// 403 Forbidden (an admin route with a wrong token).
    Forbidden,
    /// 404 Not Found.
    NotFound,
    /// 405 Method Not Allowed.
    MethodNotAllowed,
    /// 409 Conflict (`/create` of a counter that exists).
    Conflict,
    /// 413 Content Too Large.
    ContentTooLarge,
    /// 414 URI Too Long.
    UriTooLong,
    /// 417 Expectation Failed.
    ExpectationFailed,
    /// 429 Too Many Requests (`--rate-limit`).
    TooManyRequests,
    /// 431 Request Header Fields Too Large.
    HeaderFieldsTooLarge,
    /// 500 Internal Server Error.
    InternalServerError,
    /// 501 Not Implemented.
    NotImplemented,
    /// 503 Service Unavailable.
    ServiceUnavailable,
    /// 505 HTTP Version Not Supported.
    VersionNotSupported,
}

/// One row of the table. The status line and the body repeat the code and phrase as ready bytes,
/// so that a response only copies them; a unit test checks every row agrees with itself.
struct Row {
    code: u16,
    reason: &'static str,
    line: &'static [u8],
    body: &'static [u8],
}

impl Status {
    /// Every status, for tables and tests.
    pub const ALL: [Status; 18] = [
        Status::Ok,
        Status::Created,
        Status::NoContent,
        Status::BadRequest,
        Status::Unauthorized,
        Status::Forbidden,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::Conflict,
        Status::TooManyRequests,
        Status::ContentTooLarge,
        Status::UriTooLong,
        Status::ExpectationFailed,
        Status::HeaderFieldsTooLarge,
        Status::InternalServerError,
        Status::NotImplemented,
        Status::ServiceUnavailable,
        Status::VersionNotSupported,
    ];

    /// The table.
    const fn row(self) -> Row {
        match self {
            Status::Ok => Row { code: 200, reason: "OK", line: b"HTTP/1.1 200 OK\r\n", body: b"OK\n" },
            Status::Created => {
                Row { code: 201, reason: "Created", line: b"HTTP/1.1 201 Created\r\n", body: b"Created\n" }
            }
            Status::NoContent => {
                Row { code: 204, reason: "No Content", line: b"HTTP/1.1 204 No Content\r\n", body: b"No Content\n" }
            }
            Status::Unauthorized => Row {
                code: 401,
                reason: "Unauthorized",
                line: b"HTTP/1.1 401 Unauthorized\r\n",
                body: b"Unauthorized\n",
            },
            Status::Forbidden => {
                Row { code: 403, reason: "Forbidden", line: b"HTTP/1.1 403 Forbidden\r\n", body: b"Forbidden\n" }
            }
            Status::Conflict => {
                Row { code: 409, reason: "Conflict", line: b"HTTP/1.1 409 Conflict\r\n", body: b"Conflict\n" }
            }
            Status::TooManyRequests => Row {
                code: 429,
                reason: "Too Many Requests",
                line: b"HTTP/1.1 429 Too Many Requests\r\n",
                body: b"Too Many Requests\n",
            },
            Status::BadRequest => {
                Row { code: 400, reason: "Bad Request", line: b"HTTP/1.1 400 Bad Request\r\n", body: b"Bad Request\n" }
            }
            Status::NotFound => {
                Row { code: 404, reason: "Not Found", line: b"HTTP/1.1 404 Not Found\r\n", body: b"Not Found\n" }
            }
            Status::MethodNotAllowed => Row {
                code: 405,
                reason: "Method Not Allowed",
                line: b"HTTP/1.1 405 Method Not Allowed\r\n",
                body: b"Method Not Allowed\n",
            },
            Status::ContentTooLarge => Row {
                code: 413,
                reason: "Content Too Large",
                line: b"HTTP/1.1 413 Content Too Large\r\n",
                body: b"Content Too Large\n",
            },
            Status::UriTooLong => Row {
                code: 414,
                reason: "URI Too Long",
                line: b"HTTP/1.1 414 URI Too Long\r\n",
                body: b"URI Too Long\n",
            },
            Status::ExpectationFailed => Row {
                code: 417,
                reason: "Expectation Failed",
                line: b"HTTP/1.1 417 Expectation Failed\r\n",
                body: b"Expectation Failed\n",
            },
            Status::HeaderFieldsTooLarge => Row {
                code: 431,
                reason: "Request Header Fields Too Large",
                line: b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
                body: b"Request Header Fields Too Large\n",
            },
            Status::InternalServerError => Row {
                code: 500,
                reason: "Internal Server Error",
                line: b"HTTP/1.1 500 Internal Server Error\r\n",
                body: b"Internal Server Error\n",
            },
            Status::NotImplemented => Row {
                code: 501,
                reason: "Not Implemented",
                line: b"HTTP/1.1 501 Not Implemented\r\n",
                body: b"Not Implemented\n",
            },
            Status::ServiceUnavailable => Row {
                code: 503,
                reason: "Service Unavailable",
                line: b"HTTP/1.1 503 Service Unavailable\r\n",
                body: b"Service Unavailable\n",
            },
            Status::VersionNotSupported => Row {
                code: 505,
                reason: "HTTP Version Not Supported",
                line: b"HTTP/1.1 505 HTTP Version Not Supported\r\n",
                body: b"HTTP Version Not Supported\n",
            },
        }
    }

    /// The status with this code, if hitcore sends it.
    pub fn from_code(code: u16) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The numeric code.
    pub const fn code(self) -> u16 {
        self.row().code
    }

    /// The reason phrase.
    pub const fn reason(self) -> &'static str {
        self.row().reason
    }

    /// `HTTP/1.1 <code> <reason>\r\n`.
    pub const fn status_line(self) -> &'static [u8] {
        self.row().line
    }

    /// The plain-text body of an error answer: the reason phrase and a newline.
    pub const fn error_body(self) -> &'static [u8] {
        self.row().body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_agrees_with_itself() {
        for s in Status::ALL {
            let line = format!("HTTP/1.1 {} {}\r\n", s.code(), s.reason());
            assert_eq!(s.status_line(), line.as_bytes(), "{s:?}");
            assert_eq!(s.error_body(), format!("{}\n", s.reason()).as_bytes(), "{s:?}");
        }
    }
}
