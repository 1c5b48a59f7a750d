//! A copy of the hitcore binary in a directory of the test's own, replaced the way an upgrade
//! replaces a file (a new file renamed over it).

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::temp_path;

/// A directory of the test's own with a copy of the hitcore binary in it.
pub struct Install {
    pub dir: PathBuf,
    pub exe: PathBuf,
}

impl Install {
    pub fn new() -> Install {
        let dir = temp_path("hitcore-test-install", "");
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("hitcore");
        let install = Install { dir, exe };
        install.replace_with_file(env!("CARGO_BIN_EXE_hitcore").as_ref());
        install
    }

    /// Puts `contents` in place of the binary as an upgrade does: a new file, renamed over it.
    ///
    /// A child process writes the file, never this one: a descriptor open for writing here is
    /// inherited by every child another test thread forks meanwhile, until that child execs, and
    /// exec of the file fails with "Text file busy" (ETXTBSY) while any process holds one
    /// (rust-lang/rust#114554). The fault schedule once failed that way starting its copy.
    pub fn replace(&self, contents: &[u8]) {
        let tmp = self.dir.join(".hitcore.new");
        let mut writer = Command::new("sh")
            .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
            .arg(&tmp)
            .stdin(Stdio::piped())
            .spawn()
            .expect("sh");
        writer.stdin.take().unwrap().write_all(contents).unwrap();
        assert!(writer.wait().unwrap().success(), "writing {}", tmp.display());
        std::fs::rename(&tmp, &self.exe).unwrap();
    }

    pub fn replace_with_file(&self, from: &Path) {
        self.replace(&std::fs::read(from).unwrap());
    }
}

impl Drop for Install {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A script that says why it cannot start and exits 3, as a broken build would.
pub const BROKEN: &[u8] = b"#!/bin/sh\necho 'broken build: cannot start (exit 3)' >&2\nexit 3\n";
