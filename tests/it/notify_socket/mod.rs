//! A NOTIFY_SOCKET of the test's own: a real AF_UNIX datagram socket, every message kept.

#![allow(dead_code)]

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{DEADLINE, temp_path, wait_until};

/// Every datagram received on a socket of the test's own, with the time it came.
pub struct NotifySocket {
    pub path: std::path::PathBuf,
    pub messages: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    pub fn bind() -> NotifySocket {
        let path = temp_path("hitcore-test-notify", ".sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let seen = messages.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            // Ends when the test is done with it.
            while Arc::strong_count(&seen) > 1 {
                if let Ok(n) = socket.recv(&mut buf) {
                    seen.lock().unwrap().push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
                }
            }
        });
        NotifySocket { path, messages }
    }

    /// The messages so far, without the watchdog's and the periodic STATUS-only ones.
    pub fn states(&self) -> Vec<String> {
        self.all().into_iter().filter(|m| m != "WATCHDOG=1\n" && !m.starts_with("STATUS=")).collect()
    }

    pub fn all(&self) -> Vec<String> {
        self.messages.lock().unwrap().iter().map(|(_, m)| m.clone()).collect()
    }

    /// Waits until some message satisfies `check`; returns it.
    pub fn wait_for(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let mut found = None;
        wait_until(what, DEADLINE, || {
            found = self.all().into_iter().find(|m| check(m));
            found.is_some()
        });
        found.unwrap()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
