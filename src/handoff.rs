//! The hand-offs across a re-exec: the [`Spec`] a supervisor passes to each shard process it
//! spawns (JSON in `HITCORE_SHARD`), and the [`Upgrade`] a supervisor passes to the new supervisor it
//! starts on USR2 (JSON in `HITCORE_UPGRADE`), and reading them back.
//!
//! It crosses a version boundary on every upgrade: after the binary on disk is replaced, a running
//! supervisor of release N spawns shards of release N+1 (HUP), so a shard must read what an older
//! supervisor writes. The rules, kept here and tested against the previous release's hand-off
//! (`tests/fixtures/handoff-e5955ed.json`):
//! - A field added since a release has a serde default equal to its flag's default, so a hand-off
//!   without it still reads (`Config::evict_after` is the first such field).
//! - Unknown fields are ignored, so an older shard reads a newer supervisor's hand-off (a rollback).
//! - [`VERSION`] is bumped only when a field changes meaning; a shard refuses a hand-off newer than
//!   its own version, saying so in the error log (see [`report_unreadable`]), and exits with the
//!   boot-error status so the supervisor keeps the old shards. A hand-off without a version is from
//!   a release before versioning (version 0), read as it is.
//!
//! It must not hold anything but the encoding: spawning is the supervisor's, running the shard's.

use std::os::fd::RawFd;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::logging::{LogLevel, LogTarget};

/// The environment variable that carries a shard's [`Spec`] from the supervisor. Its presence is
/// what makes the binary run as a shard.
pub const SPEC_ENV: &str = "HITCORE_SHARD";

/// The hand-off version this release writes, and the newest it reads.
pub const VERSION: u32 = 1;

/// What the supervisor tells a shard it spawns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    /// The hand-off version ([`VERSION`] when written by this release; 0 before versioning).
    #[serde(default)]
    pub version: u32,
    /// The shard's index (for logs and the process title).
    pub index: usize,
    /// The CPU assigned to this shard: it is pinned there with `--pin` (`Config::pin`), and otherwise
    /// runs on any of `Config::allowed_cpus`.
    pub cpu: usize,
    /// The inherited, bound, non-blocking socket: listening already (a first shard, a restart on the
    /// kept listener), or not yet (a replacement), in which case the shard listens once it can accept.
    pub listen_fd: RawFd,
    /// Listeners every shard shares besides `listen_fd` (later `-b` addresses), inherited and
    /// listening; the shard accepts on each until it stops, and never shuts one down.
    #[serde(default)]
    pub extra_fds: Vec<RawFd>,
    /// The inherited heartbeat memfd.
    pub heartbeat_fd: RawFd,
    /// With HTTPS, the inherited memfd holding the session-ticket secret every shard of this
    /// supervisor shares (src/https/tickets.rs); absent from an older supervisor's hand-off, and
    /// without HTTPS: each shard then has a ticket key of its own.
    #[serde(default)]
    pub ticket_fd: Option<RawFd>,
    /// This shard's slot in the heartbeat region.
    pub slot: usize,
    /// Everything else.
    pub config: Config,
}

/// The environment variable that carries an [`Upgrade`] to the supervisor started on USR2.
pub const UPGRADE_ENV: &str = "HITCORE_UPGRADE";

/// What a supervisor tells the supervisor it starts on USR2 (same rules as [`Spec`]: versioned,
/// new fields defaulted, unknown fields ignored).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Upgrade {
    /// The hand-off version ([`VERSION`]).
    #[serde(default)]
    pub version: u32,
    /// The supervisor handing over: its pid file entry and its systemd watchdog become ours.
    pub parent: u32,
    /// The write end of a pipe: the new supervisor writes `READY` once its shards serve, or
    /// `FAILED <reason>`, then closes it.
    pub report_fd: RawFd,
    /// The listeners, inherited: their addresses are where the new shards listen.
    #[serde(default)]
    pub listeners: Vec<Inherited>,
}

/// One inherited listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inherited {
    /// The descriptor, open in the new supervisor.
    pub fd: RawFd,
    /// Its address, as the old supervisor saw it (the new one asks the socket itself).
    pub addr: String,
    /// Its shard can hand it over (USR2 without closing it): the new supervisor may give it to one of
    /// its own shards, and says which it adopted when it reports `READY`.
    #[serde(default)]
    pub shared: bool,
}

/// Why a shard cannot use the hand-off it was given.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// Not JSON, or a field this release needs is missing or of another type.
    #[error("cannot read the supervisor's hand-off ({SPEC_ENV}): {0}")]
    Invalid(#[from] serde_json::Error),
    /// Written by a release that changed its meaning.
    #[error(
        "the supervisor's hand-off ({SPEC_ENV}) has version {found}, newer than the version {VERSION} this \
         binary reads: run a supervisor and shards of the same release"
    )]
    TooNew {
        /// The version found.
        found: u32,
    },
}

/// Encodes a spec for [`SPEC_ENV`].
pub fn encode(spec: &Spec) -> Result<String, serde_json::Error> {
    serde_json::to_string(spec)
}

/// Reads a spec written by this release or an older one.
pub fn decode(text: &str) -> Result<Spec, HandoffError> {
    // The version is looked at first, so a newer hand-off is refused for its version rather than for
    // whatever field it happens to have changed.
    #[derive(Deserialize)]
    struct Versioned {
        #[serde(default)]
        version: u32,
    }
    let Versioned { version } = serde_json::from_str(text)?;
    if version > VERSION {
        return Err(HandoffError::TooNew { found: version });
    }
    Ok(serde_json::from_str(text)?)
}

/// Reads an upgrade hand-off written by this release or an older one.
pub fn decode_upgrade(text: &str) -> Result<Upgrade, String> {
    let upgrade: Upgrade = serde_json::from_str(text)
        .map_err(|e| format!("cannot read the old supervisor's hand-off ({UPGRADE_ENV}): {e}"))?;
    if upgrade.version > VERSION {
        return Err(format!(
            "the old supervisor's hand-off ({UPGRADE_ENV}) has version {}, newer than the version {VERSION} this \
             binary reads",
            upgrade.version
        ));
    }
    Ok(upgrade)
}

/// Logs why a hand-off cannot be used, in the error log it names if that much can be read (a shard
/// has no other place an operator looks), else on stderr.
pub fn report_unreadable(text: &str, error: &HandoffError) {
    #[derive(Deserialize)]
    struct Logs {
        error_log: LogTarget,
        #[serde(default = "info")]
        log_level: LogLevel,
    }
    fn info() -> LogLevel {
        LogLevel::Info
    }
    #[derive(Deserialize)]
    struct Partial {
        config: Logs,
    }
    let (target, level) = serde_json::from_str::<Partial>(text)
        .map_or((LogTarget::Stderr, LogLevel::Info), |p| (p.config.error_log, p.config.log_level));
    let logged = crate::logging::init(&target, level.min(LogLevel::Error))
        .or_else(|_| crate::logging::init(&LogTarget::Stderr, LogLevel::Error));
    match logged {
        Ok(()) => tracing::error!("Worker failed to boot: {error}"),
        Err(_) => eprintln!("hitcore: Worker failed to boot: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    /// What the release before `--evict-after` (e5955ed) put in HITCORE_SHARD for `-w 1`, read from
    /// a running shard's /proc/PID/environ.
    const PREVIOUS_RELEASE: &str = include_str!("../tests/fixtures/handoff-e5955ed.json");

    #[test]
    fn the_previous_release_hand_off_reads_with_flag_defaults_for_new_fields() {
        let spec = decode(PREVIOUS_RELEASE).unwrap();
        assert_eq!(spec.version, 0);
        assert_eq!((spec.index, spec.cpu, spec.listen_fd, spec.heartbeat_fd, spec.slot), (0, 0, 3, 4, 0));
        assert_eq!(spec.config.key, "hit");
        // A field the old supervisor did not send takes its flag's default.
        let defaults = Cli::try_parse_from(["hitcore", "--redis", "redis://127.0.0.1:6379"]).unwrap();
        assert_eq!(spec.config.evict_after, defaults.evict_after);
        // The old supervisor always pinned; a shard of this release it spawns after an upgrade
        // takes this release's default placement, as a restarted server would.
        assert_eq!(spec.config.pin, defaults.pin);
        assert!(!spec.config.pin);
        // It served plain HTTP, and had no session-ticket secret to pass.
        assert_eq!((spec.config.https, spec.ticket_fd), (None, None));
    }

    #[test]
    fn unknown_fields_are_ignored_and_a_written_spec_reads_back() {
        let mut value: serde_json::Value = serde_json::from_str(PREVIOUS_RELEASE).unwrap();
        value["from_the_future"] = serde_json::json!({"a": 1});
        value["config"]["another_flag"] = serde_json::json!(true);
        let spec = decode(&value.to_string()).unwrap();
        let again = decode(&encode(&Spec { version: VERSION, ..spec }).unwrap()).unwrap();
        assert_eq!(again.version, VERSION);
        assert_eq!(again.config.bind, "127.0.0.1:40011".parse().unwrap());
    }

    #[test]
    fn a_newer_version_or_bad_json_is_refused_with_a_reason() {
        let mut value: serde_json::Value = serde_json::from_str(PREVIOUS_RELEASE).unwrap();
        value["version"] = serde_json::json!(VERSION + 1);
        let e = decode(&value.to_string()).unwrap_err();
        assert!(matches!(e, HandoffError::TooNew { found } if found == VERSION + 1), "{e}");
        assert!(e.to_string().contains(&format!("version {}", VERSION + 1)));
        let e = decode("{\"index\":").unwrap_err();
        assert!(e.to_string().starts_with("cannot read the supervisor's hand-off (HITCORE_SHARD)"), "{e}");
        value["version"] = serde_json::json!(VERSION);
        value.as_object_mut().unwrap().remove("listen_fd");
        assert!(decode(&value.to_string()).unwrap_err().to_string().contains("listen_fd"));
    }

    #[test]
    fn an_upgrade_hand_off_reads_back_and_tolerates_additions() {
        let up = Upgrade {
            version: VERSION,
            parent: 42,
            report_fd: 7,
            listeners: vec![Inherited { fd: 5, addr: "127.0.0.1:8000".into(), shared: true }],
        };
        let mut value = serde_json::to_value(&up).unwrap();
        value["later"] = serde_json::json!([1, 2]);
        let back = decode_upgrade(&value.to_string()).unwrap();
        assert_eq!((back.parent, back.report_fd, back.listeners[0].fd, back.listeners[0].shared), (42, 7, 5, true));
        let minimal = decode_upgrade(r#"{"parent":1,"report_fd":3}"#).unwrap();
        assert!(minimal.listeners.is_empty() && minimal.version == 0);
        assert!(decode_upgrade(r#"{"version":99,"parent":1,"report_fd":3}"#).unwrap_err().contains("version 99"));
    }
}
