//! The supervisor's own flags, a group flattened into [`super::Cli`] in two parts because `--help`
//! lists them in two places: [`StopFlags`] (`-t/--timeout`, `--graceful-timeout`,
//! `--upgrade-timeout`: how long a shard, a stop or an upgrade may take) and [`ProcessFlags`]
//! (`-p/--pid`, `-u/--user`, `-g/--group`), validated into [`Process`].
//!
//! It looks names up in the passwd and group databases; it must not write the pid file or change
//! user (the supervisor and shards do).

use std::path::PathBuf;
use std::time::Duration;

use super::error::{FlagError, refuse};
use super::values::{lookup_group, lookup_user, seconds, seconds_text};
use crate::config::defaults::{DEFAULT_GRACEFUL_TIMEOUT, DEFAULT_TIMEOUT, DEFAULT_UPGRADE_TIMEOUT};

/// How long a silent shard, a graceful stop and an upgrade may take. Every value is usable (a
/// zero `--timeout` turns the watchdog off), so there is nothing to validate.
#[derive(Debug, clap::Args)]
pub struct StopFlags {
    /// Seconds without a heartbeat before a shard is killed and replaced (WORKER TIMEOUT); 0 = off
    #[arg(short = 't', long, value_name = "SECS", value_parser = seconds, allow_negative_numbers = true,
          default_value = seconds_text(DEFAULT_TIMEOUT))]
    pub timeout: Duration,

    /// Seconds a graceful stop (TERM, HUP, TTOU) may take before shards are killed
    #[arg(long = "graceful-timeout", value_name = "SECS", value_parser = seconds, allow_negative_numbers = true,
          default_value = seconds_text(DEFAULT_GRACEFUL_TIMEOUT))]
    pub graceful_timeout: Duration,

    /// Seconds a USR2 may take before the new supervisor serves; past it the old one stops the new
    /// one and carries on
    #[arg(long = "upgrade-timeout", value_name = "SECS", value_parser = seconds, allow_negative_numbers = true,
          default_value = seconds_text(DEFAULT_UPGRADE_TIMEOUT))]
    pub upgrade_timeout: Duration,
}

/// The supervisor's process: its pid file and whom shards run as.
#[derive(Debug, clap::Args)]
pub struct ProcessFlags {
    /// Write the supervisor's PID to FILE (refused if it names a live process); removed on exit
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,

    /// Run shards as this user (name or uid); the supervisor binds first, so a root supervisor can
    /// listen on port 80 [default: the current user]
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,

    /// Run shards with this group (name or gid) [default: the --user's primary group]
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub group: Option<String>,
}

/// The process part of [`crate::config::Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// `-p/--pid`.
    pub pidfile: Option<PathBuf>,
    /// The uid of `-u/--user`.
    pub user: Option<u32>,
    /// The gid of `-g/--group`, else `--user`'s primary group.
    pub group: Option<u32>,
}

impl ProcessFlags {
    /// Resolves the user and group names; a uid with no passwd entry needs `-g`.
    pub fn into_process(self) -> Result<Process, FlagError> {
        let user = self.user.as_deref().map(lookup_user).transpose().map_err(|m| refuse("--user", m))?;
        let group = match (self.group.as_deref(), user) {
            (Some(g), _) => Some(lookup_group(g).map_err(|m| refuse("--group", m))?),
            (None, Some((_, Some(gid)))) => Some(gid),
            (None, Some((uid, None))) => {
                return Err(refuse("--user", format!("uid {uid} has no passwd entry, so no primary group: pass -g")));
            }
            (None, None) => None,
        };
        Ok(Process { pidfile: self.pidfile, user: user.map(|(uid, _)| uid), group })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    fn process(args: &[&str]) -> Result<Process, FlagError> {
        Cli::try_parse_from([&["hitcore"], args].concat()).unwrap().process.into_process()
    }

    #[test]
    fn the_group_defaults_to_the_users_and_a_bare_uid_needs_one() {
        assert_eq!(process(&["-u", "root"]).unwrap(), Process { pidfile: None, user: Some(0), group: Some(0) });
        assert_eq!(process(&["-u", "4000000000"]).unwrap_err().flag, "--user");
        let given = process(&["-u", "4000000000", "-g", "5", "-p", "/run/h.pid"]).unwrap();
        assert_eq!((given.user, given.group), (Some(4000000000), Some(5)));
        assert_eq!(given.pidfile, Some(PathBuf::from("/run/h.pid")));
        assert_eq!(process(&["-g", "no-such-group-here"]).unwrap_err().flag, "--group");
    }
}
