//! Generates what the Debian package ships besides the binary: the man page (clap_mangen) and the
//! bash, zsh and fish completions (clap_complete), all from the same clap definition as `--help`
//! (`hitcore::cli::load::command()`, so the `HITCORE_*` variables are listed too).
//!
//! An example rather than a subcommand so the server binary carries neither crate. build.rs runs it
//! (`cargo run --example assets -- target/deb/assets`) when the package is built with the `deb`
//! profile, so a plain `cargo deb` ships pages that match the flags.
//! It must only write files under the directory it is given.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use clap_complete::Shell;
use clap_mangen::roff::{Roff, bold, roman};

/// Sections the flags cannot give: signals, files, environment, exit status.
const EXTRA: &[(&str, &[&str])] = &[
    (
        "SIGNALS",
        &[
            "TERM: graceful stop: every shard serves what is queued and in flight, then exits (at most --graceful-timeout).",
            "INT, QUIT: quick stop.",
            "HUP: reload: the configuration (command line, environment, -c file) is read again and every shard is replaced, one at a time, by one running the binary on disk; no request fails.",
            "USR1: reopen the log files (logrotate).",
            "USR2: upgrade the supervisor itself onto the binary on disk, keeping its listeners.",
            "TTIN, TTOU: one shard more, one shard fewer.",
        ],
    ),
    (
        "ENVIRONMENT",
        &[
            "HITCORE_<FLAG>: every flag, e.g. HITCORE_WORKERS=4, HITCORE_WORKER_CONNECTIONS=2000, HITCORE_NO_COALESCE=1. The command line wins over the environment, which wins over the -c file.",
            "REDIS_URL: --redis, when neither --redis nor HITCORE_REDIS is given.",
            "PORT: as gunicorn, the default bind becomes 0.0.0.0:$PORT (below -b, HITCORE_BIND, the -c file and socket activation).",
            "WEB_CONCURRENCY: as gunicorn, the default --workers (below -w, HITCORE_WORKERS and the -c file).",
            "FORWARDED_ALLOW_IPS: --forwarded-allow-ips, below HITCORE_FORWARDED_ALLOW_IPS and the -c file.",
            "Other HITCORE_*: a variable that names no flag is reported in a WARNING at start and by --check-config.",
            "CREDENTIALS_DIRECTORY: with no password in the Redis URL and no --redis-password-file, the password is read from $CREDENTIALS_DIRECTORY/redis-password (systemd's LoadCredential=); an empty file means none.",
            "LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES: systemd socket activation.",
            "NOTIFY_SOCKET, WATCHDOG_USEC: systemd readiness and watchdog.",
        ],
    ),
    (
        "FILES",
        &[
            "/etc/hitcore/hitcore.toml: the configuration the packaged service reads (keys are the long flags).",
            "/etc/hitcore/redis-password: the Redis password, passed to the service as a credential.",
            "/usr/lib/systemd/system/hitcore.service, hitcore.socket: the units.",
            "/usr/share/doc/hitcore/deploy.md: installing and running it as a service.",
        ],
    ),
    (
        "EXIT STATUS",
        &[
            "0: stopped on request, or --check-config found the configuration valid.",
            "2: the configuration is invalid (a flag, a variable, the -c file).",
            "3: a shard failed to boot at start-up, or io_uring is unavailable here (seccomp, kernel.io_uring_disabled, an old kernel, RLIMIT_MEMLOCK): the ERROR line says which and how to fix it.",
        ],
    ),
];

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "target/assets".into()));
    fs::create_dir_all(out.join("completions"))?;
    let cmd = hitcore::cli::load::command();

    let man = clap_mangen::Man::new(cmd.clone()).date(env!("CARGO_PKG_VERSION"));
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    for (title, items) in EXTRA {
        let mut roff = Roff::new();
        roff.control("SH", [*title]);
        for item in *items {
            let (head, body) = item.split_once(": ").unwrap_or((item, ""));
            roff.control("TP", []).text([bold(head)]).text([roman(body)]);
        }
        roff.to_writer(&mut page)?;
    }
    let mut see_also = Roff::new();
    see_also.control("SH", ["SEE ALSO"]).text([roman("systemd.service(5), systemd.socket(5), redis-server(1)")]);
    see_also.to_writer(&mut page)?;
    man.render_version_section(&mut page)?;
    fs::File::create(out.join("hitcore.1"))?.write_all(&page)?;

    for (shell, name) in [(Shell::Bash, "hitcore.bash"), (Shell::Zsh, "_hitcore"), (Shell::Fish, "hitcore.fish")] {
        let mut file = fs::File::create(out.join("completions").join(name))?;
        clap_complete::generate(shell, &mut cmd.clone(), "hitcore", &mut file);
    }
    println!("{}", out.display());
    Ok(())
}
