//! Process helpers shared by the supervisor and its shards: the boot-error exit status, the name
//! `ps` and `top` show, and how a CPU list is written in log lines.
//!
//! A leaf: it imports nothing of hitcore, so the supervisor needs nothing from `shard` (nor the shard
//! from `supervisor`). It must not hold state.

/// Exit status of a shard that could not boot; at first start the supervisor halts instead of
/// restarting it (gunicorn's `WORKER_BOOT_ERROR`).
pub const BOOT_ERROR: i32 = 3;

/// Sends `sig` to `pid` (a child not reaped yet); an error (it is gone) changes nothing.
pub fn send_signal(pid: i32, sig: i32) {
    // SAFETY: plain kill(2); the caller names a child it has not reaped, so the pid is not reused.
    unsafe { libc::kill(pid, sig) };
}

/// Sets the thread/process name shown by `ps -o comm` and `top` (15 bytes at most).
pub fn set_process_name(name: &str) {
    let mut bytes = [0u8; 16];
    let n = name.len().min(15);
    bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, bytes.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// Formats CPUs as ranges: `[0, 1, 2, 5]` -> `0-2,5`.
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { sorted[i].to_string() } else { format!("{}-{}", sorted[i], sorted[j]) });
        i = j + 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_lists_are_written_as_ranges() {
        assert_eq!(super::format_cpu_list(&[5, 0, 1, 2, 7, 8]), "0-2,5,7-8");
        assert_eq!(super::format_cpu_list(&[]), "");
    }
}
