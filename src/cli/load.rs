//! Where a configuration comes from, and how HUP gets it again.
//!
//! Layers, strongest first: the command line, the environment (`HITCORE_<FLAG>` for every flag,
//! plus `REDIS_URL` for `--redis` as before), the `-c` TOML file, gunicorn's platform variables
//! (`PORT`, `WEB_CONCURRENCY`, `FORWARDED_ALLOW_IPS`: [`super::env`]), the defaults. The environment
//! variables are derived from the clap definition ([`command`]), so a flag added to [`Cli`] gets
//! its variable and its file key with no code here. The file's settings are turned into the flags
//! they stand for and parsed by clap like the command line, so a value means the same thing
//! wherever it is written.
//!
//! It owns the layering and the origins of values; it must not validate values itself (clap and
//! [`Cli::into_config`] do), and it binds nothing.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};

use super::env;
use super::error::FlagError;
use super::file::{self, FileError};
use super::flags::Cli;
use crate::config::Config;

pub use super::env::ENV_PREFIX;

/// The environment variable `--redis` also reads, as it always has (weaker than `HITCORE_REDIS`).
pub const REDIS_URL_ENV: &str = "REDIS_URL";

/// The environment variable for a flag's long name.
pub fn env_name(long: &str) -> String {
    format!("{ENV_PREFIX}{}", long.replace('-', "_").to_ascii_uppercase())
}

/// The full command: [`Cli`]'s flags, each also read from its `HITCORE_<FLAG>` variable. Boolean
/// flags read `1/0`, `true/false`, `yes/no`, `on/off` there. The man page and completions are
/// generated from this too, so they list the variables.
pub fn command() -> Command {
    Cli::command().mut_args(|arg| {
        let Some(long) = arg.get_long() else { return arg };
        // --check-config is an action, not a setting: a variable left in a unit's environment
        // must not turn the service into a check that exits.
        if arg.get_env().is_some() || arg.get_id() == "check_config" {
            return arg;
        }
        let name = env_name(long);
        let arg = arg.env(name);
        match arg.get_action() {
            ArgAction::SetTrue => arg.value_parser(clap::builder::BoolishValueParser::new()),
            _ => arg,
        }
    })
}

/// A process's command line, kept so the configuration can be loaded again (on HUP) exactly as it
/// was at start: the same flags, the environment and the file read afresh.
#[derive(Debug, Clone)]
pub struct Invocation {
    args: Vec<OsString>,
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The flag's default.
    Default,
    /// The command line.
    CommandLine,
    /// An environment variable, named.
    Env(String),
    /// The `-c` file.
    File,
}

/// One flag's effective value, for `--check-config`.
#[derive(Debug, Clone)]
pub struct Setting {
    /// The long flag, which is also the file key.
    pub long: String,
    /// The values as given (several for a repeatable flag; none when unset).
    pub values: Vec<String>,
    /// A boolean flag: `values` is `["true"]` or `["false"]`.
    pub boolean: bool,
    /// Whether the value is secret (`hide_env_values` in the definition): printed masked.
    pub secret: bool,
    /// Where it came from.
    pub origin: Origin,
}

/// A loaded configuration.
#[derive(Debug)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// `--check-config` was given: check, print, exit.
    pub check_only: bool,
    /// The `-c` file, if any.
    pub file: Option<PathBuf>,
    /// Every flag's effective value and origin, in `--help` order.
    pub settings: Vec<Setting>,
    /// WARNING lines for the log at start and for `--check-config` (unknown `HITCORE_*` names).
    pub warnings: Vec<String>,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The command line or an environment variable (clap's message, or `--help`/`--version`).
    #[error("{0}")]
    Clap(#[from] clap::Error),
    /// The `-c` file: unreadable, not TOML, an unknown key or a bad value.
    #[error(transparent)]
    File(#[from] FileError),
    /// A value that parses but cannot be used, with where it was set when not on the command line.
    #[error("{error}{}", origin.as_deref().map(|o| format!(" (set {o})")).unwrap_or_default())]
    Flag {
        /// The refusal, naming the flag.
        error: FlagError,
        /// `in /etc/hitcore/hitcore.toml` or `by HITCORE_WORKERS`, when not the command line.
        origin: Option<String>,
    },
}

impl LoadError {
    /// Prints the error as clap does (usage and all) and exits: 0 for `--help`/`--version`, 2
    /// for anything wrong.
    pub fn exit(self) -> ! {
        match self {
            LoadError::Clap(e) => e.exit(),
            other => command().error(clap::error::ErrorKind::ValueValidation, other.to_string()).exit(),
        }
    }

    /// The error on one line, for a log line (a refused HUP).
    pub fn summary(&self) -> String {
        match self {
            LoadError::Clap(e) => {
                let text = e.to_string();
                text.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string()
            }
            other => other.to_string(),
        }
    }
}

impl Invocation {
    /// This process's command line.
    pub fn from_env() -> Invocation {
        Invocation::new(std::env::args_os())
    }

    /// A given command line, program name first.
    pub fn new<I, T>(args: I) -> Invocation
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        if args.is_empty() {
            args.push("hitcore".into());
        }
        Invocation { args }
    }

    /// Loads the configuration: command line, environment, file, defaults, then validation.
    pub fn load(&self) -> Result<Loaded, LoadError> {
        let cmd = command();
        let first = cmd.clone().try_get_matches_from(&self.args)?;
        let from_user =
            |id: &str| matches!(first.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable));

        // Settings below the command line and HITCORE_*: REDIS_URL, then the file. They become
        // flags placed before the user's own, for keys the user did not set.
        let mut injected: Vec<OsString> = Vec::new();
        let mut origins: HashMap<String, Origin> = HashMap::new();
        let redis_url = if from_user("redis") { None } else { std::env::var_os(REDIS_URL_ENV) };
        if let Some(url) = redis_url {
            let mut flag = OsString::from("--redis=");
            flag.push(url);
            injected.push(flag);
            origins.insert("redis".into(), Origin::Env(REDIS_URL_ENV.into()));
        }
        let path = first.get_one::<PathBuf>("config").cloned();
        if let Some(path) = &path {
            for entry in file::read(path, &Cli::command())? {
                if from_user(&entry.id) || origins.contains_key(&entry.id) {
                    continue;
                }
                injected.extend(entry.args);
                origins.insert(entry.id, Origin::File);
            }
        }
        // Below the file: gunicorn's platform variables (PORT, WEB_CONCURRENCY, FORWARDED_ALLOW_IPS).
        let unset = |id: &str| !from_user(id) && !origins.contains_key(id);
        let platform = env::platform(|k| std::env::var_os(k), unset)
            .map_err(|e| LoadError::Flag { error: FlagError { flag: e.flag, message: e.message }, origin: None })?;
        for p in platform {
            injected.push(p.arg);
            origins.insert(p.id.into(), Origin::Env(p.var.into()));
        }
        let mut args = self.args.clone();
        args.splice(1..1, injected);
        let matches = cmd.clone().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        // Socket activation: systemd's sockets are served when no -b was given anywhere (PORT is
        // only a default, so they win over it).
        let port_only = origins.get("bind") == Some(&Origin::Env(env::PORT_ENV.into()));
        if !from_user("bind") && (port_only || !origins.contains_key("bind")) {
            let activated = crate::bind::activated_from_env()
                .map_err(|m| LoadError::Flag { error: FlagError { flag: "--bind", message: m }, origin: None })?;
            if let Some(binds) = activated {
                cli.listen.activated = binds;
                origins.insert("bind".into(), Origin::Env("LISTEN_FDS".into()));
            }
        }
        let check_only = cli.check_config;
        let settings = settings(&cmd, &matches, &origins);
        let config = cli.into_config().map_err(|error| {
            let long = error.flag.trim_start_matches('-');
            let origin = settings.iter().find(|s| s.long == long).and_then(|s| match &s.origin {
                Origin::File => path.as_ref().map(|p| format!("in {}", p.display())),
                Origin::Env(var) => Some(format!("by {var}")),
                Origin::CommandLine | Origin::Default => None,
            });
            LoadError::Flag { error, origin }
        })?;
        let warnings = env::unknown_variables(&cmd, std::env::vars_os().map(|(k, _)| k));
        Ok(Loaded { config, check_only, file: path, settings, warnings })
    }

    /// HUP's entry point: the configuration as a fresh start would load it now (the same command
    /// line, the environment and the `-c` file read again), or why not.
    pub fn reload(&self) -> Result<Config, LoadError> {
        self.load().map(|loaded| loaded.config)
    }
}

/// Every flag's effective value and origin, in definition order.
fn settings(cmd: &Command, matches: &ArgMatches, injected: &HashMap<String, Origin>) -> Vec<Setting> {
    let mut out = Vec::new();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if matches!(id, "config" | "check_config") {
            continue;
        }
        let boolean = matches!(arg.get_action(), ArgAction::SetTrue);
        let values = if boolean {
            vec![matches.get_flag(id).to_string()]
        } else {
            matches.get_raw(id).map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect()).unwrap_or_default()
        };
        let origin = match injected.get(id) {
            Some(origin) => origin.clone(),
            None => match matches.value_source(id) {
                Some(ValueSource::CommandLine) => Origin::CommandLine,
                // The variable clap read: HITCORE_<FLAG>, or one a flag kept from before.
                Some(ValueSource::EnvVariable) => {
                    Origin::Env(arg.get_env().map_or_else(|| env_name(long), |v| v.to_string_lossy().into_owned()))
                }
                _ => Origin::Default,
            },
        };
        out.push(Setting { long: long.to_string(), values, boolean, secret: arg.is_hide_env_values_set(), origin });
    }
    out
}
