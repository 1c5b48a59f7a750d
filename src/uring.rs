//! Whether this machine lets hitcore use io_uring, checked once by the supervisor before it binds or
//! spawns anything, so that a machine where it cannot run says why in one line and exits, instead
//! of every shard failing to boot with glommio's error.
//!
//! It owns the start-up probe (the kernel release, `RLIMIT_MEMLOCK`, one `io_uring_setup` call) and
//! the cause-and-fix text of each way io_uring can be unavailable: a seccomp filter (Docker's and
//! containerd's default profiles), `kernel.io_uring_disabled`, a kernel too old, a locked-memory
//! limit too small. It raises the soft locked-memory limit to the hard one when that is enough
//! (shards inherit it), as the supervisor does for open files. It must not touch the shards'
//! executors: they create their own rings, and a shard that still fails reports it itself.

use std::fmt;
use std::io;

/// The locked-memory limit glommio 0.9 requires of a process before it creates its rings
/// (`MemLockLimit` below 512 KiB).
pub const MIN_MEMLOCK: u64 = 512 * 1024;

/// The oldest kernel release glommio 0.9 supports (its README: the io_uring operations it uses).
pub const MIN_KERNEL: (u32, u32) = (5, 8);

/// Why io_uring cannot be used here, each with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// A seccomp filter refuses `io_uring_setup` (a container's default profile).
    Seccomp,
    /// The `kernel.io_uring_disabled` sysctl: 2 is off for everyone, 1 for processes outside
    /// `kernel.io_uring_group` without CAP_SYS_ADMIN.
    Disabled {
        /// The sysctl's value, 1 or 2.
        value: u32,
    },
    /// The kernel is older than [`MIN_KERNEL`] or was built without io_uring.
    OldKernel {
        /// `uname -r`.
        release: String,
    },
    /// `RLIMIT_MEMLOCK` is below [`MIN_MEMLOCK`] and its hard limit does not allow raising it.
    MemLock {
        /// The soft limit, bytes.
        soft: u64,
        /// The hard limit, bytes.
        hard: u64,
    },
    /// `io_uring_setup` failed for another reason.
    Other(i32),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("io_uring is unavailable: ")?;
        match self {
            Unavailable::Seccomp => f.write_str(
                "a seccomp filter refuses io_uring_setup (Docker's and containerd's default profiles do); run with a \
                 profile that allows io_uring_setup, io_uring_enter and io_uring_register, e.g. docker run \
                 --security-opt seccomp=deploy/container/seccomp.json (docs/deploy.md, \"In a container\")",
            ),
            Unavailable::Disabled { value: 2 } => f.write_str(
                "the sysctl kernel.io_uring_disabled is 2 (off for every process); set it to 0: sysctl -w \
                 kernel.io_uring_disabled=0 (and in /etc/sysctl.d/ to keep it)",
            ),
            Unavailable::Disabled { value } => write!(
                f,
                "the sysctl kernel.io_uring_disabled is {value} (only root and members of the group \
                 kernel.io_uring_group may use it); add this user to that group, or set it to 0: sysctl -w \
                 kernel.io_uring_disabled=0"
            ),
            Unavailable::OldKernel { release } => write!(
                f,
                "Linux {release} is older than {}.{} or built without io_uring (CONFIG_IO_URING); run on Linux {}.{} \
                 or later",
                MIN_KERNEL.0, MIN_KERNEL.1, MIN_KERNEL.0, MIN_KERNEL.1
            ),
            Unavailable::MemLock { soft, hard } => write!(
                f,
                "the locked-memory limit (RLIMIT_MEMLOCK) is {}, hard limit {}, below the {} KiB io_uring needs \
                 here; raise it: ulimit -l {}, LimitMEMLOCK= in a systemd unit, docker run --ulimit memlock=-1",
                limit_text(*soft),
                limit_text(*hard),
                MIN_MEMLOCK / 1024,
                MIN_MEMLOCK / 1024
            ),
            Unavailable::Other(errno) => write!(
                f,
                "io_uring_setup failed: {}; check the kernel and any sandbox this runs in",
                io::Error::from_raw_os_error(*errno)
            ),
        }
    }
}

/// What the probe saw, as plain data, so the decision is testable without the syscalls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// `uname -r`.
    pub release: String,
    /// The soft and hard `RLIMIT_MEMLOCK`, bytes (`u64::MAX` for unlimited).
    pub memlock: (u64, u64),
    /// `io_uring_setup`'s errno, or `None` when it worked.
    pub setup_errno: Option<i32>,
    /// `/proc/sys/kernel/io_uring_disabled` (0 when the file is missing: kernels before 6.6).
    pub disabled: u32,
    /// Whether a seccomp filter is installed (`Seccomp: 2` in /proc/self/status).
    pub seccomp: bool,
}

/// The verdict on `facts`: first the cause that the fix must address first.
pub fn judge(facts: &Facts) -> Result<(), Unavailable> {
    if kernel_version(&facts.release).is_some_and(|v| v < MIN_KERNEL) {
        return Err(Unavailable::OldKernel { release: facts.release.clone() });
    }
    let (soft, hard) = facts.memlock;
    if soft < MIN_MEMLOCK {
        return Err(Unavailable::MemLock { soft, hard });
    }
    let Some(errno) = facts.setup_errno else { return Ok(()) };
    Err(match errno {
        libc::EPERM | libc::EACCES if facts.disabled > 0 => Unavailable::Disabled { value: facts.disabled },
        libc::EPERM | libc::EACCES | libc::ENOSYS if facts.seccomp => Unavailable::Seccomp,
        libc::ENOSYS => Unavailable::OldKernel { release: facts.release.clone() },
        libc::ENOMEM => Unavailable::MemLock { soft, hard },
        other => Unavailable::Other(other),
    })
}

/// A limit as the log shows it: `8192 KiB`, or `unlimited`.
pub fn limit_text(bytes: u64) -> String {
    if bytes == libc::RLIM_INFINITY { "unlimited".into() } else { format!("{} KiB", bytes / 1024) }
}

/// `(major, minor)` of a release such as `6.18.44-fc-v1300`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Checks this process (the supervisor, before it binds): raises the soft locked-memory limit to
/// the hard one if it is below [`MIN_MEMLOCK`] and the hard one allows it, then tries one small
/// ring. Returns the raised limit, if one was raised, for an INFO line.
pub fn check() -> Result<Option<u64>, Unavailable> {
    let (mut soft, hard) = memlock();
    let mut raised = None;
    if soft < MIN_MEMLOCK && hard >= MIN_MEMLOCK {
        let limit = libc::rlimit { rlim_cur: hard, rlim_max: hard };
        // SAFETY: setrlimit reads the struct, which lives across the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } == 0 {
            soft = hard;
            raised = Some(hard);
        }
    }
    let facts = Facts {
        release: release(),
        memlock: (soft, hard),
        setup_errno: setup_errno(),
        disabled: std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        seccomp: std::fs::read_to_string("/proc/self/status")
            .is_ok_and(|s| s.lines().any(|l| l.split_whitespace().eq(["Seccomp:", "2"]))),
    };
    judge(&facts).map(|()| raised)
}

fn memlock() -> (u64, u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct, which lives across the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return (u64::MAX, u64::MAX);
    }
    (limit.rlim_cur, limit.rlim_max)
}

fn release() -> String {
    // SAFETY: utsname is plain bytes; uname fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes the struct, which lives across the call.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return String::new();
    }
    // SAFETY: uname NUL-terminates release within the array.
    unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }.to_string_lossy().into_owned()
}

/// One `io_uring_setup` with 2 entries, closed at once: `None` when it worked.
fn setup_errno() -> Option<i32> {
    // struct io_uring_params is 120 bytes; zeroed asks for the defaults.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup(entries, params) reads and writes the 120-byte params buffer, which
    // lives across the call.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 2u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Some(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
    }
    // SAFETY: fd is the ring just created, owned here and closed once.
    unsafe { libc::close(fd as i32) };
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            release: "6.1.0-28-amd64".into(),
            memlock: (8 << 20, 8 << 20),
            setup_errno: None,
            disabled: 0,
            seccomp: false,
        }
    }

    #[test]
    fn each_cause_is_named_with_its_fix() {
        assert_eq!(judge(&facts()), Ok(()));
        let cases = [
            (Facts { setup_errno: Some(libc::EPERM), seccomp: true, ..facts() }, "seccomp", "seccomp.json"),
            (Facts { setup_errno: Some(libc::ENOSYS), seccomp: true, ..facts() }, "seccomp", "--security-opt"),
            (Facts { setup_errno: Some(libc::EPERM), disabled: 2, ..facts() }, "is 2", "io_uring_disabled=0"),
            (Facts { setup_errno: Some(libc::EPERM), disabled: 1, ..facts() }, "is 1", "io_uring_group"),
            (Facts { setup_errno: Some(libc::ENOSYS), ..facts() }, "CONFIG_IO_URING", "Linux 5.8 or later"),
            (Facts { release: "5.4.0-150-generic".into(), ..facts() }, "Linux 5.4.0-150-generic", "5.8 or later"),
            (Facts { memlock: (64 << 10, 64 << 10), ..facts() }, "64 KiB", "LimitMEMLOCK="),
            (Facts { setup_errno: Some(libc::ENOMEM), ..facts() }, "RLIMIT_MEMLOCK", "ulimit -l"),
            (Facts { setup_errno: Some(libc::EINVAL), ..facts() }, "io_uring_setup failed", "sandbox"),
        ];
        for (facts, cause, fix) in cases {
            let text = judge(&facts).unwrap_err().to_string();
            assert!(text.starts_with("io_uring is unavailable: "), "{text}");
            assert!(text.contains(cause) && text.contains(fix), "{facts:?}: {text}");
            assert!(!text.contains('\n'), "one line: {text}");
        }
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.18.44-fc-v1300"), Some((6, 18)));
        assert_eq!(kernel_version("5.8"), Some((5, 8)));
        assert_eq!(kernel_version("4.19.0+"), Some((4, 19)));
        assert_eq!(kernel_version("weird"), None);
    }
}
