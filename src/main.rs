//! The `hitcore` binary: one executable for the supervisor and its shards.
//!
//! Run by a user, it parses the flags and becomes the supervisor. Run by the supervisor with a
//! shard hand-off named in its environment (`handoff`: a memfd, or the JSON itself from a previous
//! release), it becomes that shard; one it cannot read is
//! reported in the error log and ends it with the boot-error status. It must stay this thin: everything else
//! lives in the library.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::process::ExitCode;

use hitcore::cli::{self, Invocation};
use hitcore::handoff::{self, SPEC_ENV};
use hitcore::{logging, shard, supervisor, uring};

fn main() -> ExitCode {
    if let Some(text) = std::env::var_os(SPEC_ENV) {
        // SAFETY: single-threaded at this point; nothing else reads the environment concurrently.
        unsafe { std::env::remove_var(SPEC_ENV) };
        // This release's supervisor names a sealed memfd (read once and closed here); a previous
        // release's put the JSON itself in the variable.
        let text = match handoff::open(&text.to_string_lossy()) {
            Ok(text) => text,
            Err(e) => {
                handoff::report_unreadable("", &e);
                return ExitCode::from(shard::BOOT_ERROR as u8);
            }
        };
        return match handoff::decode(&text) {
            Ok(spec) => ExitCode::from(shard::run(spec) as u8),
            Err(e) => {
                handoff::report_unreadable(&text, &e);
                ExitCode::from(shard::BOOT_ERROR as u8)
            }
        };
    }
    // Started on USR2: the secret variables come from the old supervisor's memfd, not the
    // environment, and must be back before the configuration is loaded.
    if let Err(e) = handoff::restore_secrets() {
        eprintln!("hitcore: {e}");
        return ExitCode::FAILURE;
    }
    // Kept for HUP, which loads the configuration again the same way (`Invocation::reload`).
    let invocation = Invocation::from_env();
    let loaded = match invocation.load() {
        Ok(loaded) => loaded,
        Err(e) => e.exit(),
    };
    if loaded.check_only {
        return cli::check::main(&loaded);
    }
    let config = loaded.config;
    if let Err(e) = logging::init_with(&config.error_log, config.log_level, config.observe.log_format) {
        eprintln!("hitcore: cannot open the error log: {e}");
        return ExitCode::FAILURE;
    }
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    // Before anything is bound: a machine without io_uring gets one line naming the cause and fix.
    match uring::check() {
        Ok(None) => {}
        Ok(Some(limit)) => {
            tracing::info!("Raised the locked-memory limit (RLIMIT_MEMLOCK) to {}", uring::limit_text(limit))
        }
        Err(why) => {
            tracing::error!("{why}");
            // As when a shard fails to boot: systemd's RestartPreventExitStatus= stops a restart loop.
            return ExitCode::from(shard::BOOT_ERROR as u8);
        }
    }
    ExitCode::from(supervisor::run(config, Some(invocation)) as u8)
}

/// mimalloc instead of glibc's malloc: a connection's life allocates and frees the same few sizes
/// (its task, its poll sources, its buffers) from many connections at once, which overflows glibc's
/// per-thread caches into its slow paths. Measured with callgrind over 10,000 ab connections on one
/// shard: 167 M instructions with glibc (27 % in malloc and free), 139 M with mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
