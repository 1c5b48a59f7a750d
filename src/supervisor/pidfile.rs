//! `-p/--pid`: the supervisor's pid file, as gunicorn's `pidfile.py` keeps it.
//!
//! It owns creating the file (refusing to start over a live process), writing it atomically
//! (temporary file, then rename, mode 0644) and removing it on exit, but only if it still holds our
//! pid; a supervisor started by USR2 that gives up puts the old supervisor's pid back instead. It
//! must not signal or wait on any process.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A pid file this process wrote; removed when dropped.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    pid: u32,
    /// USR2, until the hand-over completes: the old supervisor's pid, written back on drop.
    hand_back: Option<u32>,
}

/// Why the pid file could not be created.
#[derive(Debug, thiserror::Error)]
pub enum PidfileError {
    /// The file names a live process.
    #[error("Already running on PID {pid} (or pid file '{path}' is stale)")]
    Running {
        /// The live pid.
        pid: i32,
        /// The file.
        path: String,
    },
    /// The file could not be read or written.
    #[error("cannot write pid file '{path}': {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: io::Error,
    },
}

impl Pidfile {
    /// Writes our pid to `path`, unless it already names another live process.
    pub fn create(path: &Path) -> Result<Pidfile, PidfileError> {
        Self::take_over(path, None)
    }

    /// As [`Pidfile::create`], also replacing `from` (the supervisor handing over on USR2, which then
    /// leaves the file alone: it no longer holds its pid). Until [`Pidfile::keep`], dropping it writes
    /// `from` back: the old supervisor carries on when the new one gives up.
    pub fn take_over(path: &Path, from: Option<u32>) -> Result<Pidfile, PidfileError> {
        let shown = path.display().to_string();
        let io_err = |source| PidfileError::Io { path: shown.clone(), source };
        let pid = std::process::id();
        if let Ok(text) = fs::read_to_string(path) {
            if let Ok(old) = text.trim().parse::<i32>() {
                // kill(pid, 0) probes for existence; EPERM also means it exists (another user's).
                // SAFETY: signal 0 sends nothing.
                let alive = old > 0
                    && old as u32 != pid
                    && Some(old as u32) != from
                    && (unsafe { libc::kill(old, 0) } == 0
                        || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM));
                if alive {
                    return Err(PidfileError::Running { pid: old, path: shown });
                }
            }
        }
        write_atomically(path, pid).map_err(io_err)?;
        Ok(Pidfile { path: path.to_path_buf(), pid, hand_back: from })
    }

    /// After a failed USR2 in the old supervisor: the file names this process again, whatever the
    /// new supervisor left in it (it may have died by a signal, with no chance to write it back).
    pub fn restore(&self) {
        let ours = fs::read_to_string(&self.path).is_ok_and(|t| t.trim() == self.pid.to_string());
        if !ours {
            if let Err(e) = write_atomically(&self.path, self.pid) {
                tracing::error!("cannot write pid file '{}' back: {e}", self.path.display());
            }
        }
    }

    /// The USR2 hand-over is complete: the file is ours for good.
    pub fn keep(&mut self) {
        self.hand_back = None;
    }
}

/// Writes `pid` to a temporary file beside `path`, then renames it over `path`.
fn write_atomically(path: &Path, pid: u32) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp =
        dir.join(format!(".{}.{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("pid"), std::process::id()));
    let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?;
    writeln!(file, "{pid}")?;
    drop(file);
    fs::rename(&tmp, path)
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        let ours = fs::read_to_string(&self.path).is_ok_and(|t| t.trim() == self.pid.to_string());
        if ours {
            let _ = match self.hand_back {
                Some(old) => write_atomically(&self.path, old),
                None => fs::remove_file(&self.path),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_live_pid_and_replaces_a_stale_one() {
        let dir = std::env::temp_dir().join(format!("hitcore-pidfile-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hitcore.pid");
        // PID 1 is always alive.
        fs::write(&path, "1\n").unwrap();
        assert!(matches!(Pidfile::create(&path), Err(PidfileError::Running { pid: 1, .. })));
        // A pid that cannot exist is stale.
        fs::write(&path, "2147483646\n").unwrap();
        let pidfile = Pidfile::create(&path).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{}\n", std::process::id()));
        drop(pidfile);
        assert!(!path.exists());
        // Taken over from a live pid on USR2, and given back when dropped before `keep`.
        fs::write(&path, "1\n").unwrap();
        let pidfile = Pidfile::take_over(&path, Some(1)).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{}\n", std::process::id()));
        drop(pidfile);
        assert_eq!(fs::read_to_string(&path).unwrap(), "1\n");
        let mut pidfile = Pidfile::take_over(&path, Some(1)).unwrap();
        // A new supervisor that died by a signal left its pid: the old one writes its own back.
        fs::write(&path, "2147483646\n").unwrap();
        pidfile.restore();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{}\n", std::process::id()));
        pidfile.keep();
        drop(pidfile);
        assert!(!path.exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
