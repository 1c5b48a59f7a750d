//! The one table of Redis error replies hitcore tells apart, by their first word, and what each
//! makes hitcore do. docs/redis.md carries the same table (a unit test checks that every word here
//! is in it).
//!
//! | Class | Replies | HTTP | Log | Connection |
//! |---|---|---|---|---|
//! | not a primary (try again elsewhere) | `READONLY`, `LOADING`, `MASTERDOWN` | 503 + `Retry-After` | WARNING, at most one a second | rebuilt: the node is looked up again |
//! | try again | `CLUSTERDOWN`, `TRYAGAIN`, `BUSY`, `NOREPLICAS`, `OOM` | 503 + `Retry-After` | WARNING, at most one a second | kept |
//! | redirect | `MOVED`, `ASK` | followed in a Cluster, else 503 | INFO / WARNING | moved (Cluster) |
//! | misconfiguration | `WRONGTYPE`, `NOPERM`, `NOAUTH`, `WRONGPASS` | 500 | ERROR naming what to fix, at most one a second | kept |
//! | anything else | (`ERR ...`) | 500 | ERROR, at most one a second | kept |
//!
//! Every reply in the first three classes is one Redis gives *instead of* running the command, so
//! a 503 there never hides a counted hit. Even so nothing is resent except after `-MOVED`/`-ASK`
//! (which a Cluster defines as "run it there instead"): the rule that a written command is never
//! replayed stays simple.
//!
//! Pure: classification and words only. Acting on them is `queue`'s (the outcome) and
//! `session`'s (the log line, the connection).

/// How an error reply to a write is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// This node is not (or not yet, or no longer) a primary that can take writes. The command
    /// was rejected before it ran; the connection is pointed at the wrong node and is rebuilt.
    NotPrimary,
    /// A Redis Cluster node that does not own the key's slot.
    Redirect,
    /// The node cannot take the write now but will (the cluster is down, a script runs, too few
    /// replicas, out of memory): the command did not run; 503, and the connection stays.
    TryAgain,
    /// hitcore's configuration and Redis's disagree (the key's type, the user's rights, the
    /// password): the command did not run; 500 until an operator fixes it.
    Misconfigured,
    /// Anything else (a key holding a non-integer string): the command's own answer; 500.
    Other,
}

/// One row of the table: the reply's first word, its class, and what the log line says about it.
#[derive(Debug, Clone, Copy)]
pub struct ErrorReply {
    /// The first word of the reply, as Redis writes it.
    pub word: &'static str,
    /// How it is handled.
    pub kind: ErrorKind,
    /// What it means (try again) or what to fix (misconfiguration), for the log line.
    pub advice: &'static str,
}

/// The table. Replies not in it are [`ErrorKind::Other`].
pub const ERROR_REPLIES: &[ErrorReply] = &[
    ErrorReply { word: "READONLY", kind: ErrorKind::NotPrimary, advice: "the node is a replica" },
    ErrorReply { word: "LOADING", kind: ErrorKind::NotPrimary, advice: "the node is loading its data set" },
    ErrorReply { word: "MASTERDOWN", kind: ErrorKind::NotPrimary, advice: "the replica lost its primary" },
    ErrorReply { word: "MOVED", kind: ErrorKind::Redirect, advice: "the key's slot lives on another node" },
    ErrorReply { word: "ASK", kind: ErrorKind::Redirect, advice: "the key's slot is migrating" },
    ErrorReply {
        word: "CLUSTERDOWN",
        kind: ErrorKind::TryAgain,
        advice: "the cluster is down (a node is unreachable and its slots have no primary yet)",
    },
    ErrorReply { word: "TRYAGAIN", kind: ErrorKind::TryAgain, advice: "the key's slot is being resharded" },
    ErrorReply { word: "BUSY", kind: ErrorKind::TryAgain, advice: "Redis is running a long script or function" },
    ErrorReply {
        word: "NOREPLICAS",
        kind: ErrorKind::TryAgain,
        advice: "fewer replicas are connected than the server's min-replicas-to-write",
    },
    ErrorReply { word: "OOM", kind: ErrorKind::TryAgain, advice: "Redis is at its maxmemory with a noeviction policy" },
    ErrorReply {
        word: "WRONGTYPE",
        kind: ErrorKind::Misconfigured,
        advice: "the key holds a value that is not a counter: choose another --key or delete that key",
    },
    ErrorReply {
        word: "NOPERM",
        kind: ErrorKind::Misconfigured,
        advice: "hitcore's Redis user may not run INCR/INCRBY (or WAIT) on the key: grant it with ACL SETUSER",
    },
    ErrorReply {
        word: "NOAUTH",
        kind: ErrorKind::Misconfigured,
        advice: "Redis wants a password: put it in the URL or in --redis-password-file",
    },
    ErrorReply {
        word: "WRONGPASS",
        kind: ErrorKind::Misconfigured,
        advice: "the user or password hitcore logs in with is wrong: fix the URL or --redis-password-file",
    },
];

/// The table's row for an error reply's text (without the leading `-`), if it has one.
pub fn lookup(message: &[u8]) -> Option<&'static ErrorReply> {
    let word = message.split(|&b| b == b' ').next().unwrap_or_default();
    ERROR_REPLIES.iter().find(|row| row.word.as_bytes() == word)
}

/// Classifies an error reply's text (without the leading `-`).
pub fn error_kind(message: &[u8]) -> ErrorKind {
    lookup(message).map_or(ErrorKind::Other, |row| row.kind)
}

/// What the log line says about a reply: its meaning or what to fix; empty when not in the table.
pub fn advice(message: &[u8]) -> &'static str {
    lookup(message).map_or("", |row| row.advice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_classified_by_their_first_word() {
        assert_eq!(error_kind(b"READONLY You can't write against a read only replica."), ErrorKind::NotPrimary);
        assert_eq!(error_kind(b"LOADING Redis is loading the dataset in memory"), ErrorKind::NotPrimary);
        assert_eq!(error_kind(b"MASTERDOWN Link with MASTER is down"), ErrorKind::NotPrimary);
        assert_eq!(error_kind(b"MOVED 866 127.0.0.1:7001"), ErrorKind::Redirect);
        assert_eq!(error_kind(b"ASK 866 127.0.0.1:7001"), ErrorKind::Redirect);
        assert_eq!(error_kind(b"CLUSTERDOWN The cluster is down"), ErrorKind::TryAgain);
        assert_eq!(error_kind(b"TRYAGAIN Multiple keys request during rehashing of slot"), ErrorKind::TryAgain);
        assert_eq!(error_kind(b"BUSY Redis is busy running a script."), ErrorKind::TryAgain);
        assert_eq!(error_kind(b"NOREPLICAS Not enough good replicas to write."), ErrorKind::TryAgain);
        assert_eq!(error_kind(b"OOM command not allowed when used memory > 'maxmemory'."), ErrorKind::TryAgain);
        assert_eq!(error_kind(b"WRONGTYPE Operation against a key holding the wrong kind"), ErrorKind::Misconfigured);
        assert_eq!(
            error_kind(b"NOPERM User hit has no permissions to run the 'incrby' command"),
            ErrorKind::Misconfigured
        );
        assert_eq!(error_kind(b"NOAUTH Authentication required."), ErrorKind::Misconfigured);
        assert_eq!(error_kind(b"WRONGPASS invalid username-password pair"), ErrorKind::Misconfigured);
        assert_eq!(error_kind(b"ERR value is not an integer or out of range"), ErrorKind::Other);
        assert_eq!(error_kind(b"READONLYX"), ErrorKind::Other);
        assert_eq!(error_kind(b"BUSYKEY Target key name already exists."), ErrorKind::Other);
        assert_eq!(error_kind(b""), ErrorKind::Other);
        assert!(advice(b"WRONGTYPE x").contains("--key"));
        assert_eq!(advice(b"ERR x"), "");
    }

    #[test]
    fn docs_redis_md_lists_every_reply_in_the_table() {
        let docs = include_str!("../../docs/redis.md");
        let table = docs.split("### Error replies").nth(1).expect("docs/redis.md has an Error replies section");
        let table: String = table.lines().take_while(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n");
        for row in ERROR_REPLIES {
            assert!(table.contains(&format!("`{}`", row.word)), "docs/redis.md's table lacks {}", row.word);
        }
    }
}
