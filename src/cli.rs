//! The command line: gunicorn-like flags (clap) and their validation into a [`Config`](crate::config::Config).
//!
//! It owns flag names, defaults, help text and every check that can be made before anything is
//! bound or spawned. Each refusal names the flag it is about. It must not open sockets: the only
//! outside facts it reads are the CPU affinity mask, name resolution for `-b` (never for
//! `--redis`: shards resolve that at every connect), the passwd and group databases (`-u`, `-g`),
//! and the files a configuration names (`-c`, the password files, the `--redis-tls-*` and HTTPS
//! files, read once to refuse a bad one at start).
//!
//! Every flag lives in a group (a struct flattened into the one [`Cli`] struct) that validates it
//! into its part of the configuration; a new flag is one more field in its group and is at once
//! settable from the environment (`HITCORE_<FLAG>`) and from the `-c` file ([`load`] derives both
//! from the clap definition). Every default is a const in `config` (`config::defaults`, or the
//! part's own file), which clap and the hand-off's serde defaults both read.
//!
//! - [`flags`]: the [`Cli`] struct (clap), its groups in `--help` order, and the checks that span
//!   groups.
//! - [`shards`]: `-w`, `--cpus`, `--share-cpus`, `--pin`: the CPU of each shard.
//! - [`listen`]: `-b`, `--bind-mode` and systemd's sockets.
//! - [`redis`]: the Redis URL, its credentials and TLS files, the key; the reply timeouts and WAIT.
//! - [`connections`]: keep-alive, request and write timeouts, backlog, connection cap, head limits.
//! - [`supervise`]: the supervisor's timeouts, its pid file, the shards' user and group.
//! - [`logs`]: where the error and access logs go, and the level.
//! - [`observe`]: the observability flags, a group with its own validation.
//! - [`error`]: [`FlagError`], the one refusal every part returns.
//! - [`load`]: the layers (command line > environment > file > defaults), and HUP's re-load.
//! - [`env`]: gunicorn's platform variables (`PORT`, `WEB_CONCURRENCY`) and unknown `HITCORE_*` names.
//! - [`file`]: the TOML file, checked key by key against the flags.
//! - [`https`]: the HTTPS flags and their files.
//! - [`api`]: the counting API's flags.
//! - [`check`]: `--check-config`: the extra checks and the effective configuration, masked.
//! - [`values`]: CPU lists, users and groups, file modes, seconds.
//! - `secrets`: the password files and the systemd credentials they default to.

pub mod api;
pub mod check;
pub mod connections;
#[cfg(test)]
mod defaults_agree;
pub mod env;
pub mod error;
pub mod file;
pub mod flags;
pub mod https;
pub mod listen;
pub mod load;
pub mod logs;
pub mod observe;
pub mod redis;
mod secrets;
pub mod shards;
pub mod supervise;
pub mod values;

pub use self::error::FlagError;
pub use self::flags::Cli;
pub use self::load::{Invocation, LoadError, Loaded};
pub use self::observe::ObserveFlags;
pub use self::secrets::{PASSWORD_CREDENTIAL, SENTINEL_CREDENTIAL};
pub use self::values::{allowed_cpus, format_cpu_list, parse_cpu_list};
