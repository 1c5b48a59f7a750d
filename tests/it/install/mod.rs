//! A copy of the hitcore binary in a directory of the test's own, replaced the way an upgrade
//! replaces a file (a new file renamed over it).

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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
    pub fn replace(&self, contents: &[u8]) {
        let tmp = self.dir.join(".hitcore.new");
        std::fs::write(&tmp, contents).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
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
