//! `--check-config`, as `nginx -t`: everything that can be checked without binding or connecting,
//! then the effective configuration, printed as a TOML file with each value's origin and every
//! secret masked.
//!
//! It owns the checks that touch the file system (where logs and the pid file will be written) and
//! the printing. It must not bind, connect to Redis or create files; loading and validating the
//! values themselves is [`super::load`]'s and [`super::Cli::into_config`]'s.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use nix::unistd::{AccessFlags, access};

use super::load::{Loaded, Origin};
use super::values::format_cpu_list;
use crate::bind::Bind;
use crate::config::Config;
use crate::logging::LogTarget;

/// The exit code of a configuration that is refused, as clap uses for a bad flag.
pub const INVALID: u8 = 2;

/// Runs the file-system checks, prints the outcome, and gives the exit code: 0 valid, 2 not.
/// The configuration goes to stdout, the verdict to stderr (as `nginx -t`).
pub fn main(loaded: &Loaded) -> ExitCode {
    let problems = problems(&loaded.config);
    for w in &loaded.warnings {
        eprintln!("hitcore: WARNING: {w}");
    }
    if problems.is_empty() {
        print!("{}", render(loaded));
        eprintln!("hitcore: the configuration is valid");
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            eprintln!("hitcore: {p}");
        }
        eprintln!("hitcore: the configuration check failed");
        ExitCode::from(INVALID)
    }
}

/// What would fail at start-up although every value parses: files that cannot be written where
/// the configuration says. Each message names the flag.
pub fn problems(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut writable = |flag: &str, path: &Path| {
        if let Err(e) = check_writable(path) {
            out.push(format!("invalid value for '{flag}': {e}"));
        }
    };
    if let LogTarget::File(path) = &config.error_log {
        writable("--error-logfile", path);
    }
    if let Some(LogTarget::File(path)) = &config.access_log {
        writable("--access-logfile", path);
    }
    if let Some(path) = &config.pidfile {
        writable("--pid", path);
    }
    for b in &config.binds {
        if let Bind::Unix(path) = b {
            writable("--bind", path);
        }
    }
    out
}

/// A file can be appended to if it exists and is writable, or if its directory exists and is.
fn check_writable(path: &Path) -> Result<(), String> {
    let shown = path.display();
    if path.exists() {
        if path.is_dir() {
            return Err(format!("{shown} is a directory"));
        }
        return access(path, AccessFlags::W_OK).map_err(|e| format!("{shown} is not writable: {e}"));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!("{shown}: the directory {} does not exist", dir.display()));
    }
    access(dir, AccessFlags::W_OK | AccessFlags::X_OK)
        .map_err(|e| format!("{shown}: cannot create files in {}: {e}", dir.display()))
}

/// The effective configuration as a TOML file a `-c` could read back, with origins as comments.
pub fn render(loaded: &Loaded) -> String {
    let config = &loaded.config;
    let mut out = String::new();
    let file = loaded.file.as_ref().map(|p| p.display().to_string());
    let _ = writeln!(out, "# hitcore {}: effective configuration", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(out, "# file: {}", file.as_deref().unwrap_or("none"));
    for s in &loaded.settings {
        let origin = match &s.origin {
            Origin::Default => "default".to_string(),
            Origin::CommandLine => "command line".to_string(),
            Origin::Env(var) => format!("environment {var}"),
            Origin::File => "file".to_string(),
        };
        let value = if s.long == "redis" {
            // The parsed target's own redacted form: no password, whatever way it was written.
            Some(quote(&config.redis.to_string()))
        } else if s.values.is_empty() {
            None
        } else if s.secret {
            Some(quote("***"))
        } else if s.boolean {
            Some(s.values[0].clone())
        } else if s.long == "bind" {
            // What will be served: systemd's sockets replace the default.
            let shown = |b: &Bind| match b {
                Bind::Activated { fd, .. } => quote(&format!("fd://{fd}")),
                other => quote(&other.to_string()),
            };
            Some(format!("[{}]", config.binds.iter().map(shown).collect::<Vec<_>>().join(", ")))
        } else {
            Some(s.values.iter().map(|v| scalar(v)).collect::<Vec<_>>().join(", "))
        };
        let _ = match value {
            Some(v) => writeln!(out, "{} = {v}  # {origin}", s.long),
            None => writeln!(out, "# {} is not set", s.long),
        };
    }
    let password = match config.redis.password {
        Some(_) => "set (masked)",
        None => "none",
    };
    let _ = writeln!(out, "# resolved: redis password {password}; redis {}", config.redis);
    if config.redis.sentinel_password.is_some() {
        // Wherever it came from (flag, file, credential, environment), masked.
        let _ = writeln!(out, "# resolved: sentinel password set (masked)");
    }
    for b in &config.binds {
        let _ = writeln!(out, "# resolved: bind {b}");
    }
    let _ = writeln!(out, "# resolved: {}", placement(config));
    if let (Some(uid), Some(gid)) = (config.user, config.group) {
        let _ = writeln!(out, "# resolved: shards run as uid {uid}, gid {gid}");
    }
    out
}

/// How the shards are placed on CPUs, as the supervisor will do it.
fn placement(config: &Config) -> String {
    let n = config.cpus.len();
    if config.pin {
        let each: Vec<String> = config.cpus.iter().enumerate().map(|(i, c)| format!("{i}->{c}")).collect();
        format!("{n} shards, each pinned to one CPU (--pin; shard->CPU {})", each.join(" "))
    } else {
        format!(
            "{n} shards, not pinned: each may run on any of CPUs {} and the kernel places it (--pin pins them)",
            format_cpu_list(&config.allowed_cpus)
        )
    }
}

/// A number stays a TOML number; anything else becomes a TOML string.
fn scalar(v: &str) -> String {
    if v.parse::<i64>().is_ok() || (v.parse::<f64>().is_ok_and(f64::is_finite) && v.contains('.')) {
        v.to_string()
    } else {
        quote(v)
    }
}

fn quote(v: &str) -> String {
    toml::Value::String(v.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_files() {
        let dir = std::env::temp_dir();
        assert!(check_writable(&dir.join("hitcore-check-test.log")).is_ok());
        assert!(check_writable(&dir).unwrap_err().contains("directory"));
        let err = check_writable(Path::new("/nonexistent-hitcore-dir/x.log")).unwrap_err();
        assert!(err.contains("/nonexistent-hitcore-dir") && err.contains("does not exist"), "{err}");
    }

    #[test]
    fn values_stay_toml() {
        assert_eq!(scalar("4"), "4");
        assert_eq!(scalar("0.5"), "0.5");
        assert_eq!(scalar("hit"), "\"hit\"");
        assert_eq!(scalar("inf"), "\"inf\"");
        assert_eq!(quote("a\"b"), r#"'a"b'"#);
    }
}
