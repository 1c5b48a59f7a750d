//! The counting API where it is used: a real browser (headless Chromium) loads a page served from
//! another origin (another port), whose script calls `/hit` with `fetch()` (CORS) and embeds the
//! counter's `/shield` badge, both as an `<img>` and inline; the rendered DOM's numbers are checked
//! against Redis. Needs `chromium` (`apt-get install chromium`).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// The page: counts one hit, shows the value, then shows the badge of the value it read back.
fn page(api: &str) -> String {
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>counted</title></head><body>
<p id="count">pending</p><p id="img">pending</p><div id="badge"></div>
<img id="shield" src="{api}/get/browser/page/shield?text=views&amp;cache=1" alt="views">
<script>
fetch("{api}/hit/browser/page")
  .then((r) => r.json())
  .then((d) => {{
    document.getElementById("count").textContent = "value=" + d.value;
    return fetch("{api}/get/browser/page/shield?text=views");
  }})
  .then((r) => r.text())
  .then((svg) => {{ document.getElementById("badge").innerHTML = svg; }})
  .catch((e) => {{ document.getElementById("count").textContent = "error=" + e; }});
const img = document.getElementById("shield");
const shown = () => {{ document.getElementById("img").textContent = "img=" + img.naturalWidth + "x" + img.naturalHeight; }};
if (img.complete) shown(); else img.addEventListener("load", shown);
img.addEventListener("error", () => {{ document.getElementById("img").textContent = "img=error"; }});
</script></body></html>"#
    )
}

/// Serves `body` as text/html to every request until dropped.
struct PageServer {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl PageServer {
    fn start(body: String) -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(10));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let found = head.starts_with(b"GET / ");
                let (status, text) = if found { ("200 OK", body.as_str()) } else { ("404 Not Found", "") };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        PageServer { port, stop }
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Runs headless Chromium on `url` and returns the DOM once its scripts are done (virtual time:
/// the browser waits for the page's network requests), killing it after a deadline.
fn rendered_dom(url: &str) -> String {
    let profile = std::env::temp_dir().join(format!("hitcore-chromium-{}-{}", std::process::id(), free_port()));
    let mut child = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--virtual-time-budget=15000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium must be installed (apt-get install chromium)");
    let mut stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&profile);
    reader.join().unwrap()
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).unwrap_or_else(|| panic!("no {start:?} in the DOM:\n{text}")) + start.len();
    &text[from..from + text[from..].find(end).unwrap()]
}

#[test]
fn a_page_on_another_origin_counts_and_shows_the_badge() {
    let redis = TestRedis::start();
    let server = TestServer::start(&["-w", "2", "--share-cpus", "--redis", &redis.url(0)]);
    server.wait_ready(2);
    redis.cmd(0, &["SET", "K:browser:page", "41"]);
    let api = format!("http://{}", server.addr);
    let pages = PageServer::start(page(&api));

    let dom = rendered_dom(&format!("http://127.0.0.1:{}/", pages.port));
    let counted = redis.cmd(0, &["GET", "K:browser:page"]);
    assert_eq!(counted, "42", "the page's fetch counted one hit (the <img> and the inline badge read)");
    assert_eq!(between(&dom, "<p id=\"count\">", "<"), "value=42", "the fetch went through CORS:\n{dom}");
    // The inline badge is the SVG hitcore drew for the value Redis holds.
    let badge = between(&dom, "<div id=\"badge\">", "</div>");
    assert!(badge.contains("<svg"), "{dom}");
    assert!(badge.contains(">views</text>") && badge.contains(&format!(">{counted}</text>")), "{badge}");
    // The <img> loaded: the browser decoded hitcore's SVG into an image of the badge's size.
    let img = between(&dom, "<p id=\"img\">", "<");
    let (w, h) = img.strip_prefix("img=").and_then(|s| s.split_once('x')).unwrap_or_else(|| panic!("{img}"));
    assert!(w.parse::<u32>().unwrap() > 40 && h.parse::<u32>().unwrap() == 20, "{img}");
}
