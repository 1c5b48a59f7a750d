//! The `-c` configuration file: TOML whose keys are the long flags (`workers = 4`,
//! `worker-connections = 2000`, `bind = ["127.0.0.1:8000"]`, `no-coalesce = true`).
//!
//! It owns reading the file and turning each key into the flags it stands for, checked against the
//! clap definition: an unknown key, a value of the wrong TOML type, or a value the flag's own parser
//! refuses is an error naming the file and the key. It must not decide precedence ([`super::load`]
//! does) or validate beyond what one flag's parser checks ([`super::Cli::into_config`] does).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};

/// Keys a file may not set: they say which file to read or what to do with it.
const NOT_IN_FILE: &[&str] = &["config", "check-config", "help", "version"];

/// One key of the file as the flags it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The clap id of the flag (its field name in `Cli`).
    pub id: String,
    /// `--flag=value` arguments (several for a repeatable flag; none for `flag = false`).
    pub args: Vec<OsString>,
}

/// Why the file cannot be used; every message names the file, and the key when there is one.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// It could not be read.
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// It is not TOML. Only the place is named: the parser's own message quotes the line, and a
    /// line that breaks TOML (an unescaped `"` or `\` in a string) is often one holding a password.
    #[error("{}: not valid TOML at line {line}, column {column} (the line is not shown: it may hold a secret)", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where the parser stopped, from 1.
        line: usize,
        /// The column there, in characters from 1.
        column: usize,
    },
    /// A key that is not a flag, or a value it cannot take.
    #[error("{}: key '{key}': {message}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// The key as written.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads and checks `path` against the flags of `cmd` (the command without environment variables).
pub fn read(path: &Path, cmd: &Command) -> Result<Vec<Entry>, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read { path: path.to_path_buf(), source })?;
    parse(path, &text, cmd)
}

/// Checks the text of a file against the flags of `cmd`, in the file's key order.
pub fn parse(path: &Path, text: &str, cmd: &Command) -> Result<Vec<Entry>, FileError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e.span().map_or(0, |s| s.start).min(text.len());
        let before = text.get(..at).unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        FileError::Syntax {
            path: path.to_path_buf(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    })?;
    let mut entries = Vec::new();
    for (key, value) in &table {
        let refuse = |message: String| FileError::Key { path: path.to_path_buf(), key: key.clone(), message };
        let arg = find(cmd, key).ok_or_else(|| refuse(unknown(cmd, key)))?;
        let long = arg.get_long().unwrap_or(key);
        let values = as_strings(arg, value).map_err(refuse)?;
        let mut args = Vec::new();
        for v in &values {
            let flag = match v {
                None => format!("--{long}"),
                Some(v) => format!("--{long}={v}"),
            };
            check_value(arg, &flag).map_err(refuse)?;
            args.push(OsString::from(flag));
        }
        entries.push(Entry { id: arg.get_id().to_string(), args });
    }
    Ok(entries)
}

/// The flag a key names: its long name or one of its aliases.
fn find<'a>(cmd: &'a Command, key: &str) -> Option<&'a Arg> {
    if NOT_IN_FILE.contains(&key) {
        return None;
    }
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(key) || a.get_all_aliases().is_some_and(|aliases| aliases.contains(&key)))
}

fn unknown(cmd: &Command, key: &str) -> String {
    if NOT_IN_FILE.contains(&key) {
        return "not allowed in a configuration file".into();
    }
    let dashed = key.replace('_', "-").to_ascii_lowercase();
    match find(cmd, &dashed) {
        Some(arg) => format!("unknown key; did you mean '{}'?", arg.get_long().unwrap_or_default()),
        None => "unknown key; keys are the long flags without dashes (see hitcore --help)".into(),
    }
}

/// The TOML value as flag values: `None` is a bare boolean flag. Refuses wrong types.
fn as_strings(arg: &Arg, value: &toml::Value) -> Result<Vec<Option<String>>, String> {
    use toml::Value;
    let number = wants_number(arg);
    let scalar = |v: &Value| match v {
        // `workers = "4"` is a string where a number belongs: refused, as TOML's types are meant.
        Value::String(s) if number => Err(format!("expected a number, found a string (\"{}\")", s.escape_debug())),
        Value::String(s) => Ok(s.clone()),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Float(f) => Ok(f.to_string()),
        other if number => Err(format!("expected a number, found {}", other.type_str())),
        other => Err(format!("expected a string or a number, found {}", other.type_str())),
    };
    match arg.get_action() {
        ArgAction::SetTrue => match value {
            Value::Boolean(true) => Ok(vec![None]),
            Value::Boolean(false) => Ok(vec![]),
            other => Err(format!("expected true or false, found {}", other.type_str())),
        },
        ArgAction::Append => match value {
            Value::Array(items) if items.is_empty() => Err("expected at least one value".into()),
            Value::Array(items) => items.iter().map(|v| scalar(v).map(Some)).collect(),
            v => Ok(vec![Some(scalar(v)?)]),
        },
        _ => match value {
            Value::Array(_) => Err("expected a single value, found an array".into()),
            v => Ok(vec![Some(scalar(v)?)]),
        },
    }
}

/// Whether the flag's value is a number (a count or seconds), so the file must write it as a TOML
/// number. `bind-mode` parses to a number too but is written as an octal string (`"660"`).
fn wants_number(arg: &Arg) -> bool {
    use std::any::TypeId;
    let ty = arg.get_value_parser().type_id();
    let numeric = [
        TypeId::of::<usize>(),
        TypeId::of::<u64>(),
        TypeId::of::<u32>(),
        TypeId::of::<u16>(),
        TypeId::of::<i64>(),
        TypeId::of::<f64>(),
        TypeId::of::<std::time::Duration>(),
    ];
    numeric.iter().any(|t| ty == *t) && arg.get_value_names().is_none_or(|names| names.iter().all(|n| n != "MODE"))
}

/// Runs the flag's own parser on one value, so the file refuses what the command line would.
/// The probe copies only the flag's name, action and parser: relations to other flags (`requires`,
/// `conflicts_with`) are checked later, with the command line, by the full command.
fn check_value(arg: &Arg, flag: &str) -> Result<(), String> {
    let mut copy =
        Arg::new(arg.get_id().clone()).action(arg.get_action().clone()).ignore_case(arg.is_ignore_case_set());
    copy = copy.value_parser(arg.get_value_parser().clone());
    if let Some(long) = arg.get_long() {
        copy = copy.long(long.to_string());
    }
    let probe = Command::new("hitcore").no_binary_name(true).arg(copy);
    match probe.try_get_matches_from([flag]) {
        Ok(_) => Ok(()),
        Err(e) => {
            let text = e.to_string();
            Err(text.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::CommandFactory;

    fn entries(text: &str) -> Result<Vec<Entry>, String> {
        parse(Path::new("/etc/hitcore/test.toml"), text, &Cli::command()).map_err(|e| e.to_string())
    }

    fn args(e: &Entry) -> Vec<&str> {
        e.args.iter().map(|a| a.to_str().unwrap()).collect()
    }

    #[test]
    fn keys_become_flags() {
        let got = entries(
            "workers = 2\nworker-connections = 2000\nbind = [\"127.0.0.1:1\", \"[::1]:2\"]\nkeep-alive = 0.5\n\
             no-coalesce = true\nshare-cpus = false\nredis = \"redis://h/1\"\n",
        )
        .unwrap();
        let by_id: Vec<(&str, Vec<&str>)> = got.iter().map(|e| (e.id.as_str(), args(e))).collect();
        assert_eq!(
            by_id,
            vec![
                ("bind", vec!["--bind=127.0.0.1:1", "--bind=[::1]:2"]),
                ("keep_alive", vec!["--keep-alive=0.5"]),
                ("no_coalesce", vec!["--no-coalesce"]),
                ("redis", vec!["--redis=redis://h/1"]),
                ("share_cpus", vec![]),
                ("worker_connections", vec!["--worker-connections=2000"]),
                ("workers", vec!["--workers=2"]),
            ]
        );
        // A single string for a repeatable key, and an alias.
        assert_eq!(args(&entries("bind = \"127.0.0.1:3\"").unwrap()[0]), vec!["--bind=127.0.0.1:3"]);
        assert_eq!(entries("log-file = \"/tmp/x\"").unwrap()[0].id, "error_logfile");
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let err = entries("wrokers = 2").unwrap_err();
        assert!(
            err.contains("/etc/hitcore/test.toml") && err.contains("'wrokers'") && err.contains("unknown"),
            "{err}"
        );
        let err = entries("worker_connections = 2").unwrap_err();
        assert!(err.contains("did you mean 'worker-connections'"), "{err}");
        let err = entries("workers = \"lots\"").unwrap_err();
        assert!(err.contains("'workers'") && err.contains("lots"), "{err}");
        // A number written as a string is refused, naming the file and the key.
        let err = entries("workers = \"4\"").unwrap_err();
        assert!(
            err.contains("/etc/hitcore/test.toml") && err.contains("'workers'") && err.contains("expected a number"),
            "{err}"
        );
        let err = entries("keep-alive = \"2\"").unwrap_err();
        assert!(err.contains("'keep-alive'") && err.contains("expected a number"), "{err}");
        // Strings stay strings; the octal mode is a string; levels take any case.
        assert_eq!(args(&entries("bind-mode = \"660\"").unwrap()[0]), vec!["--bind-mode=660"]);
        assert_eq!(args(&entries("log-level = \"DEBUG\"").unwrap()[0]), vec!["--log-level=DEBUG"]);
        assert_eq!(args(&entries("key = \"hits\"").unwrap()[0]), vec!["--key=hits"]);
        let err = entries("workers = true").unwrap_err();
        assert!(err.contains("'workers'") && err.contains("boolean"), "{err}");
        let err = entries("no-coalesce = \"yes\"").unwrap_err();
        assert!(err.contains("expected true or false"), "{err}");
        let err = entries("workers = [1, 2]").unwrap_err();
        assert!(err.contains("single value"), "{err}");
        let err = entries("config = \"/other.toml\"").unwrap_err();
        assert!(err.contains("not allowed"), "{err}");
        let err = entries("workers = ").unwrap_err();
        assert!(err.contains("/etc/hitcore/test.toml") && err.contains("TOML"), "{err}");
        let err = entries("keep-alive = -1").unwrap_err();
        assert!(err.contains("'keep-alive'") && err.contains("-1"), "{err}");
    }

    #[test]
    fn a_syntax_error_names_the_line_without_quoting_it() {
        let err = entries("workers = 2\n\nredis = \"redis://:hun\"ter2@h/0\"\n").unwrap_err();
        assert!(err.contains("/etc/hitcore/test.toml") && err.contains("line 3, column"), "{err}");
        assert!(!err.contains("hun") && !err.contains("ter2"), "{err}");
    }

    /// The pieces of `password`, written raw into a file's `redis` URL in each form, that the
    /// file's error shows: `(url, error, pieces)` for each form that shows any.
    fn file_error_leaks(password: &str) -> Vec<(String, String, Vec<String>)> {
        use crate::config::redis_url::tests::{forms, leaked, rotated};
        let shown = |url: &str| match entries(&format!("workers = 1\nredis = \"{url}\"\nkeep-alive = 2\n")) {
            Ok(_) => String::new(),
            Err(e) => e,
        };
        let mut found = Vec::new();
        for (url, base) in forms(password).iter().zip(forms(&rotated(password))) {
            let (out, baseline) = (shown(url), shown(&base));
            let leaks = leaked(password, &out, &baseline);
            if !leaks.is_empty() {
                found.push((url.clone(), out, leaks));
            }
        }
        found
    }

    /// Passwords the property once failed on: `aS N\h` made a TOML error whose own words ("is
    /// not") were taken for a piece of it, as its rotation turned `\h` into the valid `\r`.
    #[test]
    fn no_piece_of_the_passwords_that_once_failed_in_a_file_error() {
        for password in ["aS N\\h", "x\\q\\\"b", "\\uZZ a"] {
            assert_eq!(file_error_leaks(password), vec![], "{password}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// A password written raw into the file (a stray `"` or `\` breaks the TOML string) never
        /// shows in the error, in any URL form.
        #[test]
        fn no_piece_of_a_password_in_a_file_error(password in crate::config::redis_url::tests::password()) {
            let leaks = file_error_leaks(&password);
            proptest::prop_assert!(leaks.is_empty(), "{leaks:?}");
        }
    }
}
