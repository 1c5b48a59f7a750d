//! The environment variables that are not `HITCORE_<FLAG>`: the platform ones gunicorn reads
//! (`PORT`, `WEB_CONCURRENCY`, `FORWARDED_ALLOW_IPS`), and `HITCORE_*` names that match no flag
//! (a misspelling would otherwise be ignored without a word).
//!
//! It owns which variables these are, what each stands for and how weak it is, and the warning
//! text for unknown ones. It must not decide the layering itself ([`super::load`] places what
//! this returns) nor validate beyond turning a variable into a flag (clap and
//! [`super::Cli::into_config`] do).

use std::ffi::OsString;

use clap::Command;

/// The prefix of every flag's environment variable: `--worker-connections` is
/// `HITCORE_WORKER_CONNECTIONS`.
pub const ENV_PREFIX: &str = "HITCORE_";

/// gunicorn's `PORT`: with no bind anywhere else, bind `0.0.0.0:$PORT` (as gunicorn's `bind`
/// default does; Heroku-style platforms set it).
pub const PORT_ENV: &str = "PORT";

/// gunicorn's `WEB_CONCURRENCY`: the default number of workers (shards), below the file.
pub const WEB_CONCURRENCY_ENV: &str = "WEB_CONCURRENCY";

/// gunicorn's own variable for `--forwarded-allow-ips`, weaker than `HITCORE_FORWARDED_ALLOW_IPS`.
pub const FORWARDED_ALLOW_IPS_ENV: &str = "FORWARDED_ALLOW_IPS";

/// `HITCORE_*` variables that are not flags but are read on purpose, so they draw no warning:
/// the supervisor's hand-offs to shards and to a USR2 successor, two executor tuning knobs
/// (`src/executor.rs`), three debug-build test hooks, and the repository scripts' own settings.
const NOT_FLAGS: &[&str] = &[
    "HITCORE_SHARD",
    "HITCORE_UPGRADE",
    "HITCORE_SPIN_US",
    "HITCORE_PREEMPT_US",
    "HITCORE_TEST_PANIC_CONNECTION",
    "HITCORE_TEST_NO_MULTISHOT",
    "HITCORE_TEST_REFUSE_DEEP_RINGS",
    "HITCORE_SKIP_FUZZ",
    "HITCORE_ADVISORY_DB",
    "HITCORE_DENY_DB",
];

/// A platform variable turned into the flag it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// The clap id of the flag.
    pub id: &'static str,
    /// The `--flag=value` argument.
    pub arg: OsString,
    /// The variable it came from.
    pub var: &'static str,
}

/// Why a platform variable cannot be used: the variable and what is wrong (its value is not
/// secret, but is still not echoed beyond what identifies the mistake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformError {
    /// The flag the variable stands for.
    pub flag: &'static str,
    /// The message, naming the variable.
    pub message: String,
}

/// `PORT` and `WEB_CONCURRENCY` from `get` (the process environment in use), each only when
/// `unset(id)` says nothing stronger set that flag. `PORT` must be a port number, and
/// `WEB_CONCURRENCY` a positive integer, as gunicorn requires (it fails on anything else).
pub fn platform(
    get: impl Fn(&str) -> Option<OsString>,
    unset: impl Fn(&str) -> bool,
) -> Result<Vec<Platform>, PlatformError> {
    let mut out = Vec::new();
    if unset("bind")
        && let Some(port) = get(PORT_ENV)
    {
        let port = port.to_string_lossy();
        match port.trim().parse::<u16>() {
            Ok(p) => out.push(Platform { id: "bind", arg: format!("--bind=0.0.0.0:{p}").into(), var: PORT_ENV }),
            Err(_) => {
                return Err(PlatformError {
                    flag: "--bind",
                    message: format!("PORT must be a port number (0-65535), not '{}'", port.escape_debug()),
                });
            }
        }
    }
    if unset("workers")
        && let Some(n) = get(WEB_CONCURRENCY_ENV)
    {
        let n = n.to_string_lossy();
        match n.trim().parse::<usize>() {
            Ok(w) => {
                out.push(Platform { id: "workers", arg: format!("--workers={w}").into(), var: WEB_CONCURRENCY_ENV })
            }
            Err(_) => {
                return Err(PlatformError {
                    flag: "--workers",
                    message: format!("WEB_CONCURRENCY must be a number of workers, not '{}'", n.escape_debug()),
                });
            }
        }
    }
    if unset("forwarded_allow_ips")
        && let Some(list) = get(FORWARDED_ALLOW_IPS_ENV)
    {
        let mut arg = OsString::from("--forwarded-allow-ips=");
        arg.push(list);
        out.push(Platform { id: "forwarded_allow_ips", arg, var: FORWARDED_ALLOW_IPS_ENV });
    }
    Ok(out)
}

/// One WARNING text per `HITCORE_*` variable in `names` that is neither a flag's variable in `cmd`
/// nor one read on purpose, with the nearest flag variable when one is close. Values are never
/// shown (one could be a password put under the wrong name).
pub fn unknown_variables(cmd: &Command, names: impl IntoIterator<Item = OsString>) -> Vec<String> {
    let known: Vec<String> =
        cmd.get_arguments().filter_map(|a| a.get_env()).map(|v| v.to_string_lossy().into_owned()).collect();
    let mut unknown: Vec<String> = names
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.starts_with(ENV_PREFIX) && !known.contains(n) && !NOT_FLAGS.contains(&n.as_str()))
        .collect();
    unknown.sort();
    unknown
        .into_iter()
        .map(|name| {
            let near = known
                .iter()
                .filter(|k| k.starts_with(ENV_PREFIX))
                .map(|k| (distance(&name, k), k))
                .filter(|(d, _)| *d <= 2)
                .min();
            let hint = match near {
                Some((_, k)) => format!("; did you mean {k}?"),
                None => "; every flag's variable is HITCORE_ and its long name (hitcore --help)".into(),
            };
            format!("{} names no flag and is ignored{hint}", name.escape_debug())
        })
        .collect()
}

/// Levenshtein distance, for suggestions between short names.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::load::command;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn port_and_web_concurrency_become_weak_flags() {
        let got = platform(env(&[("PORT", "5000"), ("WEB_CONCURRENCY", "3")]), |_| true).unwrap();
        let args: Vec<_> = got.iter().map(|p| (p.id, p.arg.to_str().unwrap(), p.var)).collect();
        assert_eq!(args, vec![("bind", "--bind=0.0.0.0:5000", "PORT"), ("workers", "--workers=3", "WEB_CONCURRENCY")]);
        // Set more strongly elsewhere: left alone.
        assert!(platform(env(&[("PORT", "5000"), ("WEB_CONCURRENCY", "3")]), |_| false).unwrap().is_empty());
        let err = platform(env(&[("PORT", "http")]), |_| true).unwrap_err();
        assert_eq!(err.flag, "--bind");
        assert!(err.message.contains("PORT must be a port number") && err.message.contains("'http'"), "{err:?}");
        let err = platform(env(&[("WEB_CONCURRENCY", "four")]), |_| true).unwrap_err();
        assert!(err.message.contains("WEB_CONCURRENCY") && err.message.contains("'four'"), "{err:?}");
        let got = platform(env(&[("FORWARDED_ALLOW_IPS", "10.0.0.0/8")]), |_| true).unwrap();
        assert_eq!(got[0].arg, OsString::from("--forwarded-allow-ips=10.0.0.0/8"));
    }

    #[test]
    fn unknown_hitcore_variables_are_named_with_a_suggestion() {
        let names = ["HITCORE_WROKERS", "HITCORE_WORKERS", "HITCORE_SHARD", "PATH", "HITCORE_FOO_BAR_BAZ"];
        let got = unknown_variables(&command(), names.iter().map(OsString::from));
        assert_eq!(
            got,
            vec![
                "HITCORE_FOO_BAR_BAZ names no flag and is ignored; every flag's variable is HITCORE_ and its long \
                 name (hitcore --help)"
                    .to_string(),
                "HITCORE_WROKERS names no flag and is ignored; did you mean HITCORE_WORKERS?".to_string(),
            ]
        );
        // Every flag's own variable is known, HITCORE_FORWARDED_ALLOW_IPS included.
        let all: Vec<OsString> =
            command().get_arguments().filter_map(|a| a.get_env()).map(|v| v.to_os_string()).collect();
        assert!(all.contains(&OsString::from("HITCORE_FORWARDED_ALLOW_IPS")), "{all:?}");
        assert!(unknown_variables(&command(), all).is_empty());
    }

    #[test]
    fn distances() {
        assert_eq!(distance("HITCORE_WROKERS", "HITCORE_WORKERS"), 2);
        assert_eq!(distance("abc", "abc"), 0);
        assert_eq!(distance("", "ab"), 2);
    }
}
