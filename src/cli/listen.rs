//! The listener flags (`-b/--bind`, `--bind-mode`) and systemd's sockets, a group flattened into
//! [`super::Cli`], with their validation into [`Listen`]: the addresses to serve.
//!
//! It parses addresses ([`Bind::parse`]); it must not open sockets (the supervisor binds).
//! `--backlog` is with the connection flags (`super::connections`), where `--help` lists it.

use super::error::{FlagError, refuse};
use super::values::octal_mode;
use crate::bind::Bind;
use crate::config::defaults::DEFAULT_BIND;

/// Where to listen.
#[derive(Debug, clap::Args)]
pub struct ListenFlags {
    /// Address to listen on: HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N; repeat for several.
    /// Port 0 picks a free port (the log says which). Without it, the sockets systemd passes
    /// (socket activation) when there are any, else 0.0.0.0:$PORT when PORT is set (as gunicorn)
    #[arg(short = 'b', long, value_name = "ADDRESS", default_value = DEFAULT_BIND, action = clap::ArgAction::Append)]
    pub bind: Vec<String>,

    /// Permissions of unix: sockets, in octal (e.g. 660) [default: 666 less the umask]
    #[arg(long = "bind-mode", value_name = "MODE", value_parser = octal_mode)]
    pub bind_mode: Option<u32>,

    /// The sockets systemd passed, set by the loader when no `-b` was given (not a flag).
    #[arg(skip)]
    pub activated: Vec<Bind>,
}

/// The listener part of [`crate::config::Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// The address every shard gets a listener of its own for (`served`).
    pub bind: std::net::SocketAddr,
    /// Every address, in order (`-b`, or systemd's sockets).
    pub binds: Vec<Bind>,
    /// `--bind-mode`.
    pub bind_mode: Option<u32>,
}

impl ListenFlags {
    /// Parses every address (or takes systemd's), refusing repeats and a `--bind-mode` with no
    /// `unix:` address to apply to.
    pub fn into_listen(self) -> Result<Listen, FlagError> {
        let binds = if self.activated.is_empty() {
            let binds = self.bind.iter().map(|b| Bind::parse(b)).collect::<Result<Vec<_>, _>>();
            binds.map_err(|m| refuse("--bind", m))?
        } else {
            self.activated
        };
        if let Some(twice) = binds.iter().enumerate().find_map(|(i, b)| binds[..i].contains(b).then_some(b)) {
            return Err(refuse("--bind", format!("{twice} is given twice")));
        }
        if self.bind_mode.is_some() && !binds.iter().any(|b| matches!(b, Bind::Unix(_))) {
            return Err(refuse("--bind-mode", "there is no unix: address to apply it to"));
        }
        Ok(Listen { bind: served(&binds)?, binds, bind_mode: self.bind_mode })
    }
}

/// The address every shard gets a listener of its own for: the first bind when it is TCP. When it
/// is not, shards share their main listener and this placeholder (port 0 on no address) is unused.
fn served(binds: &[Bind]) -> Result<std::net::SocketAddr, FlagError> {
    match binds.first() {
        Some(Bind::Tcp(addr)) => Ok(*addr),
        Some(_) => Ok(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
        None => Err(refuse("--bind", "no address to listen on")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    fn listen(args: &[&str]) -> Result<Listen, FlagError> {
        Cli::try_parse_from([&["hitcore"], args].concat()).unwrap().listen.into_listen()
    }

    #[test]
    fn binds_are_parsed_once_each_and_the_first_tcp_one_is_served() {
        let l = listen(&["-b", "127.0.0.1:0", "-b", "unix:/tmp/l.sock", "--bind-mode", "600"]).unwrap();
        assert_eq!((l.bind, l.binds.len(), l.bind_mode), ("127.0.0.1:0".parse().unwrap(), 2, Some(0o600)));
        let shared = listen(&["-b", "unix:/tmp/l.sock"]).unwrap();
        assert_eq!(shared.bind, std::net::SocketAddr::from(([0, 0, 0, 0], 0)), "the placeholder");
        assert_eq!(listen(&["-b", "127.0.0.1:1", "-b", "127.0.0.1:1"]).unwrap_err().flag, "--bind");
        assert_eq!(listen(&["--bind-mode", "600"]).unwrap_err().flag, "--bind-mode");
        assert_eq!(listen(&[]).unwrap().binds, [Bind::parse(DEFAULT_BIND).unwrap()]);
    }
}
