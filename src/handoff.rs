//! The hand-offs across a re-exec: the [`Spec`] a supervisor passes to each shard process it
//! spawns, and the [`Upgrade`] a supervisor passes to the new supervisor it starts on USR2 (JSON in
//! `HITCORE_UPGRADE`), and reading them back.
//!
//! Secrets never sit in a child's environment, where any process of the same user reads them in
//! `/proc/PID/environ`: a shard's [`Spec`] (the whole configuration, passwords included) is written
//! to a sealed memfd ([`seal`]) that the shard inherits, reads once and closes
//! ([`open`]); `HITCORE_SHARD` holds only `{"version":2,"spec_fd":N}`. The variables that hold
//! secrets ([`secret_env`]) are removed from every child's environment, and the new supervisor on
//! USR2 gets their values through a memfd of the same kind ([`seal_secrets`], [`restore_secrets`]).
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
//!   a release before versioning (version 0), read as it is. Version 2 moved the spec and the
//!   secrets into descriptors: a version-1 binary refuses both hand-offs rather than start without
//!   its configuration or its passwords.
//!
//! It must not hold anything but the encoding: spawning is the supervisor's, running the shard's.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::logging::{LogLevel, LogTarget};

/// The environment variable that carries a shard's hand-off from the supervisor: from version 2 the
/// descriptor of the sealed memfd holding its [`Spec`], before that the spec itself. Its presence
/// is what makes the binary run as a shard.
pub const SPEC_ENV: &str = "HITCORE_SHARD";

/// The hand-off version this release writes, and the newest it reads.
pub const VERSION: u32 = 2;

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
    /// A sealed memfd holding the secret variables the old supervisor had ([`seal_secrets`]), which
    /// its environment no longer carries; `None` when it had none (and from a previous release,
    /// whose new supervisor inherited them in its environment).
    #[serde(default)]
    pub secrets_fd: Option<RawFd>,
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
    /// The descriptor `HITCORE_SHARD` names cannot be read.
    #[error("cannot read the supervisor's hand-off from descriptor {fd} ({SPEC_ENV}): {source}")]
    Descriptor {
        /// The descriptor named.
        fd: RawFd,
        /// The OS error.
        source: std::io::Error,
    },
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

/// Encodes a spec as JSON: what the memfd holds (a previous release put it in [`SPEC_ENV`]).
pub fn encode(spec: &Spec) -> Result<String, serde_json::Error> {
    serde_json::to_string(spec)
}

/// What `HITCORE_SHARD` holds from version 2 on: where the spec is, and nothing secret.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    version: u32,
    spec_fd: RawFd,
}

/// A hand-off written to a sealed memfd, ready for a child to inherit.
#[derive(Debug)]
pub struct Sealed {
    /// The memfd, close-on-exec: the spawn site clears that flag in the child only, and drops this
    /// once the child has started.
    pub fd: OwnedFd,
    /// The value of [`SPEC_ENV`] naming it (for [`seal`]; empty for [`seal_secrets`]).
    pub env: String,
}

/// Writes `bytes` to a new memfd, sealed against any change, positioned at its start.
fn sealed_memfd(name: &std::ffi::CStr, bytes: &[u8]) -> std::io::Result<OwnedFd> {
    // SAFETY: memfd_create with a valid C string; the descriptor is owned at once below.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just created and owned by nothing else.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(bytes)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on the descriptor `file` owns.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(OwnedFd::from(file))
}

/// Writes `spec` to a sealed memfd for the shard about to be spawned, with the [`SPEC_ENV`] value
/// that names it (the descriptor keeps its number in the child).
pub fn seal(spec: &Spec) -> std::io::Result<Sealed> {
    let json = encode(spec).map_err(std::io::Error::other)?;
    let fd = sealed_memfd(c"hitcore-shard-spec", json.as_bytes())?;
    let envelope = Envelope { version: VERSION, spec_fd: fd.as_raw_fd() };
    let env = serde_json::to_string(&envelope).map_err(std::io::Error::other)?;
    Ok(Sealed { fd, env })
}

/// Reads the whole of an inherited descriptor from its start, then closes it.
fn read_descriptor(fd: RawFd) -> std::io::Result<String> {
    // SAFETY: fcntl(F_GETFD) only checks that the number is open.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: the parent left this descriptor open for this process alone to read once; owning it
    // here closes it after the read, so nothing else in this process can use its number.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.seek(SeekFrom::Start(0))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// In a shard: the hand-off as JSON, from the value of [`SPEC_ENV`]. This release's supervisor
/// names a descriptor, which is read and closed; a previous release's put the JSON itself there.
pub fn open(env: &str) -> Result<String, HandoffError> {
    match serde_json::from_str::<Envelope>(env) {
        Ok(Envelope { spec_fd, .. }) => {
            read_descriptor(spec_fd).map_err(|source| HandoffError::Descriptor { fd: spec_fd, source })
        }
        Err(_) => Ok(env.to_string()),
    }
}

/// The environment variables that can hold a secret, which no child inherits: every flag's
/// variable whose value is hidden (`HITCORE_REDIS`, `HITCORE_SENTINEL_PASSWORD`), and `REDIS_URL`.
pub fn secret_env() -> Vec<String> {
    let command = crate::cli::load::command();
    let hidden = command.get_arguments().filter(|a| a.is_hide_env_values_set());
    let mut names: Vec<String> = hidden.filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()).collect();
    names.push(crate::cli::load::REDIS_URL_ENV.to_string());
    names
}

/// The secret variables this process has, written to a sealed memfd for the supervisor started on
/// USR2 (which must load the same configuration), or `None` when there are none.
pub fn seal_secrets() -> std::io::Result<Option<Sealed>> {
    let present: std::collections::BTreeMap<String, String> =
        secret_env().into_iter().filter_map(|name| std::env::var(&name).ok().map(|v| (name, v))).collect();
    if present.is_empty() {
        return Ok(None);
    }
    let json = serde_json::to_vec(&present).map_err(std::io::Error::other)?;
    Ok(Some(Sealed { fd: sealed_memfd(c"hitcore-secrets", &json)?, env: String::new() }))
}

/// In a supervisor started on USR2: puts back into this process's environment the secret variables
/// the old supervisor sealed (see [`seal_secrets`]), so that the configuration loads as it did
/// there, and HUP reloads it the same way. They are set in this process's memory, not in what
/// `/proc/PID/environ` shows. Must run first in `main`, while the process has one thread.
pub fn restore_secrets() -> Result<(), String> {
    let Some(text) = std::env::var_os(UPGRADE_ENV) else { return Ok(()) };
    let Ok(Upgrade { secrets_fd: Some(fd), .. }) = serde_json::from_str::<Upgrade>(&text.to_string_lossy()) else {
        return Ok(());
    };
    let json =
        read_descriptor(fd).map_err(|e| format!("cannot read the old supervisor's secrets (descriptor {fd}): {e}"))?;
    let vars: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&json).map_err(|e| format!("cannot read the old supervisor's secrets: {e}"))?;
    for (name, value) in vars {
        // SAFETY: called first in main, before any other thread exists.
        unsafe { std::env::set_var(name, value) };
    }
    Ok(())
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
        assert_eq!(spec.config.evict_after, defaults.connections.evict_after);
        // The old supervisor always pinned; a shard of this release it spawns after an upgrade
        // takes this release's default placement, as a restarted server would.
        assert_eq!(spec.config.pin, defaults.shards.pin);
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
    fn a_sealed_spec_reads_back_once_and_cannot_be_changed() {
        let spec = decode(PREVIOUS_RELEASE).unwrap();
        let sealed = seal(&Spec { version: VERSION, ..spec }).unwrap();
        let fd = sealed.fd.as_raw_fd();
        assert_eq!(sealed.env, format!("{{\"version\":{VERSION},\"spec_fd\":{fd}}}"), "no secret in the variable");
        // A version-1 shard (the release before the memfd) refuses it as too new instead of booting
        // without its spec; the previous release's rule is `version > 1`.
        const { assert!(VERSION > 1) };
        // SAFETY: fcntl(F_GET_SEALS) on a descriptor `sealed` owns.
        let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
        assert_eq!(seals & libc::F_SEAL_WRITE, libc::F_SEAL_WRITE);
        assert!((&File::from(sealed.fd.try_clone().unwrap())).write_all(b"x").is_err(), "sealed against writes");
        // `open` takes the descriptor over and closes it once read, as a shard does.
        let _ = std::mem::ManuallyDrop::new(sealed.fd);
        let back = decode(&open(&sealed.env).unwrap()).unwrap();
        assert_eq!((back.version, back.config.key.as_str()), (VERSION, "hit"));
        // A previous release's variable is the JSON itself.
        assert_eq!(open(PREVIOUS_RELEASE).unwrap(), PREVIOUS_RELEASE);
    }

    #[test]
    fn an_upgrade_hand_off_reads_back_and_tolerates_additions() {
        let up = Upgrade {
            version: VERSION,
            parent: 42,
            report_fd: 7,
            listeners: vec![Inherited { fd: 5, addr: "127.0.0.1:8000".into(), shared: true }],
            secrets_fd: Some(9),
        };
        let mut value = serde_json::to_value(&up).unwrap();
        value["later"] = serde_json::json!([1, 2]);
        let back = decode_upgrade(&value.to_string()).unwrap();
        assert_eq!((back.parent, back.report_fd, back.listeners[0].fd, back.listeners[0].shared), (42, 7, 5, true));
        assert_eq!(back.secrets_fd, Some(9));
        let minimal = decode_upgrade(r#"{"parent":1,"report_fd":3}"#).unwrap();
        assert!(minimal.listeners.is_empty() && minimal.version == 0 && minimal.secrets_fd.is_none());
        assert!(decode_upgrade(r#"{"version":99,"parent":1,"report_fd":3}"#).unwrap_err().contains("version 99"));
    }
}
