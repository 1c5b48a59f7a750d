//! A shard's standard error, relayed: every line a shard process writes to stderr is passed on to
//! the supervisor's own stderr as it comes, and the last few are kept, so that when a shard exits
//! before it booted the supervisor can say why in its own words, whatever the binary on disk was (a
//! hitcore of any release, or anything else an upgrade put there).
//!
//! It owns the relay thread of each shard and the choice of the line that explains a failure. It
//! must not parse anything else out of a shard's output.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Lines of a shard's stderr kept for explaining its exit.
const KEPT: usize = 8;
/// The longest line relayed or kept, in bytes, after escaping (a gunicorn-format line is far
/// shorter); the rest of a longer one is counted, not relayed.
const LINE: usize = 1024;

/// What a shard has written to stderr lately.
#[derive(Debug, Default)]
pub struct Output {
    state: Mutex<Tail>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct Tail {
    lines: VecDeque<String>,
    closed: bool,
}

impl Output {
    /// Relays `stream` (a shard's stderr) to this process's stderr on a thread of its own, until
    /// the shard and everything it started have closed it.
    pub fn relay(stream: impl Read + Send + 'static, name: String) -> Arc<Output> {
        let output = Arc::new(Output::default());
        let shared = output.clone();
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            while let Some(text) = next_line(&mut reader, &mut line) {
                // One write per line, so relayed lines never interleave with the supervisor's own.
                let _ = std::io::stderr().lock().write_all(format!("{text}\n").as_bytes());
                let mut tail = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                if tail.lines.len() == KEPT {
                    tail.lines.pop_front();
                }
                tail.lines.push_back(text);
            }
            shared.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
            shared.done.notify_all();
        });
        if let Err(e) = spawned {
            tracing::warn!("cannot relay a shard's stderr: {e}");
            output.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        }
        output
    }

    /// The shard's own explanation of its exit: its last error line, or else its last line. Waits
    /// up to `within` for the relay to read the shard's last words (it has exited; its stderr
    /// closes unless a child of its own keeps it open).
    pub fn reason(&self, within: Duration) -> Option<String> {
        let tail = self.wait_closed(within);
        explain(tail.lines.iter().map(String::as_str))
    }

    /// Waits up to `within` for the relay to have passed on everything the shard wrote (its stderr
    /// closed), so a supervisor about to exit does not take a shard's last lines with it.
    pub fn flush(&self, within: Duration) {
        drop(self.wait_closed(within));
    }

    fn wait_closed(&self, within: Duration) -> std::sync::MutexGuard<'_, Tail> {
        let tail = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tail, _) = self.done.wait_timeout_while(tail, within, |t| !t.closed).unwrap_or_else(|e| e.into_inner());
        tail
    }
}

/// Reads the next line of a shard's stderr, escaped and at most [`LINE`] bytes (the rest of a
/// longer line is read and counted, not kept), or `None` at the end. Whatever the binary printed,
/// no raw control byte and no more than a line's worth of text reaches a log line.
fn next_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> Option<String> {
    line.clear();
    let n = reader.by_ref().take(LINE as u64).read_until(b'\n', line).ok()?;
    if n == 0 {
        return None;
    }
    let mut rest = 0;
    if !line.ends_with(b"\n") && n == LINE {
        // Skip (and count) the rest of an overlong line.
        while let Ok(buf) = reader.fill_buf() {
            if buf.is_empty() {
                break;
            }
            let (used, ended) = buf.iter().position(|&b| b == b'\n').map_or((buf.len(), false), |i| (i + 1, true));
            rest += used - usize::from(ended);
            reader.consume(used);
            if ended {
                break;
            }
        }
    }
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let mut text = String::new();
    rest += crate::logging::escape_relayed_into(&mut text, body, LINE);
    if rest > 0 {
        text.push_str(&format!(" ... ({rest} bytes more)"));
    }
    Some(text.trim_end().to_string())
}

/// Picks the line that explains a failure from a shard's last lines: the last ERROR or CRITICAL
/// line, else the last non-empty one; a gunicorn-format prefix (`[time] [pid] [LEVEL] `) is dropped.
fn explain<'a>(lines: impl DoubleEndedIterator<Item = &'a str> + Clone) -> Option<String> {
    let mut nonempty = lines.filter(|l| !l.trim().is_empty());
    let chosen = nonempty
        .clone()
        .rev()
        .find(|l| l.contains("] [ERROR] ") || l.contains("] [CRITICAL] "))
        .or_else(|| nonempty.next_back())?;
    let message = ["] [ERROR] ", "] [CRITICAL] ", "] [WARNING] ", "] [INFO] "]
        .iter()
        .find_map(|tag| chosen.split_once(tag).map(|(_, m)| m))
        .unwrap_or(chosen);
    Some(message.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_explanation_is_the_last_error_line_without_its_prefix() {
        let lines = [
            "[2026-12-02 04:35:46 +0000] [7] [INFO] Booting worker with pid: 7 (shard 0, cpu 0)",
            "[2026-12-02 04:35:46 +0000] [7] [ERROR] Worker failed to boot: shard 0: no io_uring",
            "[2026-12-02 04:35:46 +0000] [7] [INFO] something after",
            "",
        ];
        assert_eq!(explain(lines.into_iter()).unwrap(), "Worker failed to boot: shard 0: no io_uring");
        // Anything else: its last words as they are.
        assert_eq!(explain(["starting", "bad magic: cannot run", " "].into_iter()).unwrap(), "bad magic: cannot run");
        assert_eq!(explain(std::iter::empty()), None);
    }

    #[test]
    fn binary_garbage_is_escaped_and_bounded() {
        let mut garbage: Vec<u8> = b"[x] [1] [ERROR] bad \x1b[31m".to_vec();
        garbage.extend((0..20_000u32).map(|i| (i * 13 % 256) as u8).filter(|&b| b != b'\n'));
        garbage.extend(b"\nnext\x00line\n");
        let out = Output::relay(std::io::Cursor::new(garbage), "test-relay".into());
        // The ERROR line explains the exit: escaped, a line's worth, and saying how much was left out.
        let reason = out.reason(Duration::from_secs(5)).unwrap();
        assert!(reason.starts_with("bad \\x1b[31m"), "{reason}");
        assert!(reason.len() < LINE + 40, "{} bytes", reason.len());
        assert!(reason.chars().all(|c| !c.is_control()), "{reason}");
        let tail = out.state.lock().unwrap();
        assert_eq!(tail.lines[1], "next\\x00line", "lines stay apart");
        let first = &tail.lines[0];
        assert!(first.ends_with(" bytes more)"), "{first}");
    }

    proptest::proptest! {
        /// Whatever a binary prints, every relayed line is printable and at most a line's worth,
        /// and as many lines come out as went in.
        #[test]
        fn any_output_relays_as_bounded_printable_lines(
            lines in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000), 1..6),
        ) {
            let lines: Vec<Vec<u8>> = lines.into_iter().map(|l| l.into_iter().filter(|&b| b != b'\n').collect()).collect();
            let mut input = lines.join(&b'\n');
            input.push(b'\n');
            let mut reader = std::io::Cursor::new(input);
            let mut buf = Vec::new();
            let mut n = 0;
            while let Some(text) = next_line(&mut reader, &mut buf) {
                proptest::prop_assert!(text.len() <= LINE + 32, "{} bytes", text.len());
                proptest::prop_assert!(text.chars().all(|c| !c.is_control()), "{:?}", text);
                n += 1;
            }
            proptest::prop_assert_eq!(n, lines.len());
        }
    }

    #[test]
    fn relayed_lines_are_kept_until_the_stream_closes() {
        let out = Output::relay(&b"one\n[x] [1] [ERROR] two\nthree"[..], "test-relay".into());
        assert_eq!(out.reason(Duration::from_secs(5)).as_deref(), Some("two"));
    }
}
