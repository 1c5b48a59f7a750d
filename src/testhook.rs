//! Test builds only (the `test-hooks` feature, which only the tests enable): a shard's boot misbehaves on request, so end-to-end tests (the fault
//! schedule, tests/it/fault_schedule.rs) can model a release whose shards crash or boot slowly
//! without building one.
//!
//! `HITCORE_TEST_BOOT_FILE=PATH` names a file read at every shard's start: empty or missing, the
//! shard boots normally; `kill` makes it die by SIGKILL (as the OOM killer would), `exit N` exit
//! with status N, `sleep SECS` sleep that long before it boots. Like the binary on disk, it applies
//! to every shard started while the file says so, whichever supervisor starts it.
//! `HITCORE_TEST_REFUSE_DEEP_RINGS` makes a shard's deeper io_uring rings count as refused. It must not be
//! compiled into the product (lib.rs gates it on the `test-hooks` feature) and touches nothing else.

/// The variable that names the file.
pub const BOOT_FILE_ENV: &str = "HITCORE_TEST_BOOT_FILE";

/// Set (to anything), a shard's executor build treats io_uring rings deeper than glommio's
/// default as refused, as a kernel that counts ring memory against a small `RLIMIT_MEMLOCK`
/// does (`crate::executor::build`'s fallback).
pub const REFUSE_DEEP_RINGS_ENV: &str = "HITCORE_TEST_REFUSE_DEEP_RINGS";

/// Whether [`REFUSE_DEEP_RINGS_ENV`] is set.
pub fn refuse_deep_rings() -> bool {
    std::env::var_os(REFUSE_DEEP_RINGS_ENV).is_some()
}

/// Called first thing in a shard process.
pub fn at_shard_boot() {
    let Some(path) = std::env::var_os(BOOT_FILE_ENV) else { return };
    let Ok(text) = std::fs::read_to_string(path) else { return };
    let mut words = text.split_whitespace();
    match (words.next(), words.next().and_then(|w| w.parse::<f64>().ok())) {
        (Some("kill"), _) => {
            // SAFETY: kill(2) on this very process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        (Some("exit"), Some(code)) => std::process::exit(code as i32),
        (Some("sleep"), Some(secs)) => std::thread::sleep(std::time::Duration::from_secs_f64(secs)),
        _ => {}
    }
}
