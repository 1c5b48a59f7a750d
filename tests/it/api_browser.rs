//! The counting API where it is used: a real browser (headless Chromium) loads a page served from
//! another origin (another port), whose script calls `/hit` with `fetch()` (CORS), inlines and
//! embeds the counter's `/shield` badge, reads it by JSONP, and creates and updates a counter with
//! preflighted requests (`Content-Type: application/json`, `Authorization: Bearer`); the rendered
//! DOM's numbers are checked against Redis. A second test lists origins with `--cors-origins` and
//! shows what the browser then allows and what it does not; a third embeds `/hit/:HOST:/:PATH:`
//! badges and shows which counter each referrer policy counts; a fourth follows `/stream` with an
//! `EventSource` (over plain HTTP and over HTTPS), and a fifth reads a 429's `Retry-After`. Owns only the pages and their tiny HTTP
//! server; starts hitcore and redis-server through tests/common.
//!
//! Needs Chromium (`apt-get install --no-install-recommends chromium`): without one on `PATH` the
//! tests print `skipped: ...` and return, unless `HITCORE_REQUIRE_BROWSER` is set (`.ci/run` sets
//! it), in which case they fail.

use crate::common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::https::Pki;
use common::*;

/// The page, the same on every port: the API's address and the name of the counter it creates come
/// from its query (`?api=http://...&owned=NAME`). Its steps run one after another, so that every
/// value it shows is determined; each writes its own element, an error included, and the last one
/// writes `done`.
const PAGE: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>counted</title></head><body>
<p id="count">pending</p><div id="badge"></div><p id="img">pending</p>
<p id="jsonp">pending</p><p id="owned">pending</p><p id="done">pending</p>
<img id="shield" alt="views">
<script>
const query = new URLSearchParams(location.search);
const api = query.get("api");
const show = (id, text) => { document.getElementById(id).textContent = text; };
const img = document.getElementById("shield");
img.addEventListener("load", () => show("img", "img=" + img.naturalWidth + "x" + img.naturalHeight));
img.addEventListener("error", () => show("img", "img=error"));
img.src = api + "/get/browser/page/shield?text=views";
async function run() {
  try {
    const d = await (await fetch(api + "/hit/browser/page")).json();
    show("count", "value=" + d.value);
    const svg = await (await fetch(api + "/get/browser/page/shield?text=views")).text();
    document.getElementById("badge").innerHTML = svg;
  } catch (e) { show("count", "error=" + e.name); }
  try {
    await new Promise((ok, fail) => {
      window.counted = (d) => { show("jsonp", "jsonp=" + d.value); ok(); };
      const s = document.createElement("script");
      s.src = api + "/get/browser/page?callback=counted";
      s.onerror = () => fail(new Error("the script did not load"));
      document.head.appendChild(s);
    });
  } catch (e) { show("jsonp", "error=" + e.message); }
  try {
    const owned = api + "/create/browser/" + query.get("owned") + "?initializer=10";
    const made = await fetch(owned, { method: "POST", headers: { "Content-Type": "application/json" } });
    const key = (await made.json()).admin_key;
    const bearer = { Authorization: "Bearer " + key };
    const up = api + "/update/browser/" + query.get("owned") + "?value=5";
    const r = await fetch(up, { method: "POST", headers: bearer });
    show("owned", "owned=" + made.status + "," + r.status + "," + (await r.json()).value);
  } catch (e) { show("owned", "error=" + e.name); }
  show("done", "done");
}
run();
</script></body></html>"#;

/// Serves one page on a free port until dropped: every `GET` but Chromium's `/favicon.ico` gets it.
struct PageServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl PageServer {
    fn start(body: String) -> PageServer {
        let body: Arc<str> = body.into();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                // One thread per connection: a connection Chromium opens ahead and leaves idle must
                // not hold up the page's.
                if let Ok(s) = conn {
                    let body = body.clone();
                    thread::spawn(move || serve(s, &body));
                }
            }
        });
        PageServer { port, stop, thread: Some(thread) }
    }

    fn url(&self, api: &str, owned: &str) -> String {
        format!("http://127.0.0.1:{}/?api={}&owned={owned}", self.port, percent(api))
    }
}

fn serve(mut s: TcpStream, page: &str) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let found = head.starts_with(b"GET /") && !head.starts_with(b"GET /favicon.ico ");
    let (status, text) = if found { ("200 OK", page) } else { ("404 Not Found", "") };
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{text}",
        text.len()
    );
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The Chromium binary on `PATH`, or `None` when there is none and `HITCORE_REQUIRE_BROWSER` is
/// unset (the caller then skips, saying so).
fn chromium() -> Option<PathBuf> {
    let names = ["chromium", "chromium-browser", "google-chrome", "chrome-headless-shell"];
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).flat_map(|dir| names.map(|n| dir.join(n))).find(|p| p.is_file());
    if found.is_none() {
        let why = "no chromium, chromium-browser, google-chrome or chrome-headless-shell on PATH";
        assert!(std::env::var_os("HITCORE_REQUIRE_BROWSER").is_none(), "HITCORE_REQUIRE_BROWSER is set but {why}");
        eprintln!("skipped: {why} (apt-get install --no-install-recommends chromium)");
    }
    found
}

/// Runs headless Chromium on `url` and returns the DOM once the page's work is done: with a virtual
/// time budget, Chromium advances the page's clock only while no request is in flight, so the dump
/// comes after every fetch, script and image has answered. Killed after a wall-clock deadline.
fn rendered_dom(browser: &Path, url: &str) -> String {
    rendered_dom_with(browser, url, &[])
}

/// As [`rendered_dom`], with more Chromium flags.
fn rendered_dom_with(browser: &Path, url: &str, flags: &[&str]) -> String {
    let profile = temp_path("hitcore-chromium", "");
    let mut child = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--virtual-time-budget=15000"])
        // A container's /dev/shm is often 64 MiB, too small for Chromium's renderer.
        .arg("--disable-dev-shm-usage")
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let read = |mut from: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut out = String::new();
            let _ = from.read_to_string(&mut out);
            out
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let _ = std::fs::remove_dir_all(&profile);
    let (dom, err) = (stdout.join().unwrap(), stderr.join().unwrap());
    let tail: String = err.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    match status {
        None => panic!("chromium did not finish within 90 s; its stderr ends:\n{tail}"),
        Some(s) => assert!(s.success() && dom.contains("</html>"), "chromium {s}, DOM {dom:?}; stderr ends:\n{tail}"),
    }
    dom
}

/// The text between `start` and the next `end` in the DOM.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).unwrap_or_else(|| panic!("no {start:?} in the DOM:\n{text}")) + start.len();
    &text[from..from + text[from..].find(end).unwrap()]
}

/// The text of the page's element `<p id="ID">`.
fn shown<'a>(dom: &'a str, id: &str) -> &'a str {
    between(dom, &format!("<p id=\"{id}\">"), "<")
}

/// Asserts the `<img>` badge loaded: the browser decoded hitcore's SVG at the badge's size.
fn assert_badge_image(dom: &str) {
    let img = shown(dom, "img");
    let (w, h) = img.strip_prefix("img=").and_then(|s| s.split_once('x')).unwrap_or_else(|| panic!("{img}"));
    assert!(w.parse::<u32>().unwrap() > 40 && h.parse::<u32>().unwrap() == 20, "{img}");
}

#[test]
fn a_page_on_another_origin_counts_and_shows_the_badge() {
    let Some(browser) = chromium() else { return };
    let redis = TestRedis::start();
    let server = TestServer::start(&["-w", "2", "--share-cpus", "--redis", &redis.url(0)]);
    server.wait_ready(2);
    redis.cmd(0, &["SET", "K:browser:page", "41"]);
    let api = format!("http://{}", server.addr);
    let pages = PageServer::start(PAGE.into());

    let dom = rendered_dom(&browser, &pages.url(&api, "owned"));
    assert_eq!(shown(&dom, "done"), "done", "{dom}");
    let counted = redis.cmd(0, &["GET", "K:browser:page"]);
    assert_eq!(counted, "42", "the page's fetch counted one hit (the <img>, the badge and JSONP only read)");
    assert_eq!(shown(&dom, "count"), "value=42", "the fetch went through CORS:\n{dom}");
    // The inline badge is the SVG hitcore drew for the value Redis holds.
    let badge = between(&dom, "<div id=\"badge\">", "</div>");
    assert!(badge.contains("<svg"), "{dom}");
    assert!(badge.contains(">views</text>") && badge.contains(&format!(">{counted}</text>")), "{badge}");
    assert_badge_image(&dom);
    assert_eq!(shown(&dom, "jsonp"), "jsonp=42", "the JSONP script ran its callback:\n{dom}");
    // Both preflights passed: the counter was created at 10 (201) and its owner added 5 (200).
    assert_eq!(shown(&dom, "owned"), "owned=201,200,15", "{dom}");
    assert_eq!(redis.cmd(0, &["GET", "K:browser:owned"]), "15");
    assert_ne!(redis.cmd(0, &["STRLEN", "A:browser:owned"]), "0", "/create stored the admin key");
}

#[test]
fn listed_origins_read_the_api_and_badges_load_anywhere() {
    let Some(browser) = chromium() else { return };
    let (listed, other) = (PageServer::start(PAGE.into()), PageServer::start(PAGE.into()));
    let origins = format!("http://127.0.0.1:{},https://elsewhere.example", listed.port);
    let redis = TestRedis::start();
    let server = TestServer::start(&["-w", "2", "--share-cpus", "--redis", &redis.url(0), "--cors-origins", &origins]);
    server.wait_ready(2);
    redis.cmd(0, &["SET", "K:browser:page", "41"]);
    let api = format!("http://{}", server.addr);

    // A listed origin gets its own origin back and uses every route, preflighted ones included.
    let dom = rendered_dom(&browser, &listed.url(&api, "listed"));
    assert_eq!(shown(&dom, "done"), "done", "{dom}");
    assert_eq!(shown(&dom, "count"), "value=42", "{dom}");
    assert_eq!(shown(&dom, "owned"), "owned=201,200,15", "{dom}");
    assert_eq!(redis.cmd(0, &["GET", "K:browser:listed"]), "15");

    // Another origin: the browser keeps the answers from its script, and never sends a request
    // whose preflight was refused; a simple GET still reaches hitcore and counts, since CORS
    // guards what a page reads, not what it asks. Images and JSONP are not CORS requests.
    let dom = rendered_dom(&browser, &other.url(&api, "other"));
    assert_eq!(shown(&dom, "done"), "done", "{dom}");
    assert_eq!(shown(&dom, "count"), "error=TypeError", "the answer was kept from the page:\n{dom}");
    assert_eq!(redis.cmd(0, &["GET", "K:browser:page"]), "43", "the hidden GET counted");
    assert_eq!(shown(&dom, "owned"), "error=TypeError", "{dom}");
    assert_eq!(redis.cmd(0, &["EXISTS", "K:browser:other", "A:browser:other"]), "0", "no POST was sent");
    assert_badge_image(&dom);
    assert_eq!(shown(&dom, "jsonp"), "jsonp=43", "{dom}");
}

/// Three `<img>` badges on `/hit/:HOST:/...` and a `fetch()` of one, each reporting what it got. No
/// two `src` are the same: Chromium loads an image URL once per document.
fn reserved_page(api: &str) -> String {
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>a post</title></head><body>
<p id="plain">pending</p><p id="full">pending</p><p id="none">pending</p><p id="fetched">pending</p>
<p id="page">pending</p>
<img id="plain-img" src="{api}/hit/:HOST:/:PATH:/shield">
<img id="full-img" referrerpolicy="no-referrer-when-downgrade" src="{api}/hit/:HOST:/:PATH:/shield?text=post">
<img id="none-img" referrerpolicy="no-referrer" src="{api}/hit/:HOST:/no-referrer/shield">
<script>
const show = (id, text) => {{ document.getElementById(id).textContent = text; }};
for (const id of ["plain", "full", "none"]) {{
  const img = document.getElementById(id + "-img");
  const done = () => show(id, img.naturalWidth > 0 ? "loaded" : "error");
  if (img.complete) done(); else {{ img.onload = done; img.onerror = done; }}
}}
fetch("{api}/hit/:HOST:/:PATH:").then((r) => r.json()).then((d) => show("fetched", "value=" + d.value))
  .catch((e) => show("fetched", "error=" + e.name));
// docs/api.md's example: the page's own address as `:PATH:`.
fetch("{api}/hit/:HOST:/:PATH:", {{ referrerPolicy: "no-referrer-when-downgrade" }})
  .then((r) => r.json()).then((d) => show("page", "value=" + d.value))
  .catch((e) => show("page", "error=" + e.name));
</script></body></html>"#
    )
}

#[test]
fn a_badge_on_host_and_path_counts_the_page_that_embeds_it() {
    let Some(browser) = chromium() else { return };
    let redis = TestRedis::start();
    let server = TestServer::start(&["-w", "2", "--share-cpus", "--redis", &redis.url(0)]);
    server.wait_ready(2);
    let page = PageServer::start(reserved_page(&format!("http://{}", server.addr)));
    let site = format!("http://127.0.0.1:{}", page.port);

    let dom = rendered_dom(&browser, &format!("{site}/blog/post.html"));
    // An <img> sends no Origin: `:HOST:` is its Referer's origin. Under Chromium's default policy
    // (strict-origin-when-cross-origin) that Referer is the origin alone, so `:PATH:` is the site,
    // the same counter the fetch() (Origin and the same Referer) counted.
    assert_eq!(shown(&dom, "plain"), "loaded", "{dom}");
    assert!(["value=1", "value=2"].contains(&shown(&dom, "fetched")), "{dom}");
    assert_eq!(redis.cmd(0, &["GET", &format!("K:{site}:{site}/")]), "2");
    // With referrerpolicy="no-referrer-when-downgrade" the Referer is the page: one counter per
    // page, the same for the badge and for a fetch() with that policy.
    assert_eq!(shown(&dom, "full"), "loaded", "{dom}");
    assert!(["value=1", "value=2"].contains(&shown(&dom, "page")), "{dom}");
    assert_eq!(redis.cmd(0, &["GET", &format!("K:{site}:{site}/blog/post.html")]), "2");
    // With no Referer either, `:HOST:` has nothing to name: 400, a broken image, nothing counted.
    assert_eq!(shown(&dom, "none"), "error", "{dom}");
    assert_eq!(redis.cmd(0, &["DBSIZE"]), "2", "only the two counters above exist");
}

/// An `EventSource` on `/stream`: after the first event (the current value) the page counts two
/// hits and closes the stream at the third event, so that the browser goes idle.
fn stream_page(api: &str) -> String {
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>live</title></head><body>
<p id="live">pending</p>
<script>
const show = (text) => {{ document.getElementById("live").textContent = text; }};
const seen = [];
const es = new EventSource("{api}/stream/browser/live");
es.onmessage = async (e) => {{
  seen.push(JSON.parse(e.data).value);
  if (seen.length === 1) {{
    for (let i = 0; i < 2; i++) await fetch("{api}/hit/browser/live");
  }}
  if (seen.length === 3) {{ es.close(); show("seen=" + seen.join(",")); }}
}};
es.onerror = () => {{ es.close(); show("error after [" + seen.join(",") + "]"); }};
</script></body></html>"#
    )
}

#[test]
fn an_event_source_on_another_origin_sees_every_value() {
    let Some(browser) = chromium() else { return };
    let redis = TestRedis::start();
    let server = TestServer::start(&["-w", "2", "--share-cpus", "--redis", &redis.url(0), "--api-stream"]);
    server.wait_ready(2);
    redis.cmd(0, &["SET", "K:browser:live", "7"]);
    let page = PageServer::start(stream_page(&format!("http://{}", server.addr)));

    let dom = rendered_dom(&browser, &format!("http://127.0.0.1:{}/", page.port));
    // The stream's answers passed CORS, the current value came first, then each hit's value.
    assert_eq!(shown(&dom, "live"), "seen=7,8,9", "{dom}");
    assert_eq!(redis.cmd(0, &["GET", "K:browser:live"]), "9");
}

/// Three `fetch()`es of `/hit` in a row, each showing its status and the `Retry-After` the script
/// can read.
fn limited_page(api: &str) -> String {
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>limited</title></head><body>
<p id="tries">pending</p>
<script>
(async () => {{
  const tries = [];
  try {{
    for (let i = 0; i < 3; i++) {{
      const r = await fetch("{api}/hit/browser/limited");
      tries.push(r.status + ":" + r.headers.get("Retry-After"));
    }}
  }} catch (e) {{ tries.push("error=" + e.name); }}
  document.getElementById("tries").textContent = tries.join(",");
}})();
</script></body></html>"#
    )
}

#[test]
fn over_https_an_event_source_sees_every_value() {
    let Some(browser) = chromium() else { return };
    let pki = Pki::new("browser");
    let (crt, key) = pki.server("api", 2020, 2090);
    let redis = TestRedis::start();
    let url = redis.url(0);
    let args = ["-w", "2", "--share-cpus", "--redis", &url, "--api-stream", "--certfile", &crt, "--keyfile", &key];
    let server = TestServer::start(&args);
    server.log.wait_for("Listening at: https://", DEADLINE);
    server.wait_ready(2);
    redis.cmd(0, &["SET", "K:browser:live", "7"]);
    let page = PageServer::start(stream_page(&format!("https://{}", server.addr)));

    // The certificate is signed by this test's own CA, which Chromium does not know.
    let dom =
        rendered_dom_with(&browser, &format!("http://127.0.0.1:{}/", page.port), &["--ignore-certificate-errors"]);
    // The fetch()es and the stream's events went over TLS, through the same CORS.
    assert_eq!(shown(&dom, "live"), "seen=7,8,9", "{dom}");
    assert_eq!(redis.cmd(0, &["GET", "K:browser:live"]), "9");
}

#[test]
fn a_rate_limited_page_reads_when_to_try_again() {
    let Some(browser) = chromium() else { return };
    let redis = TestRedis::start();
    let server = TestServer::start(&["-w", "2", "--share-cpus", "--redis", &redis.url(0), "--rate-limit", "2/86400"]);
    server.wait_ready(2);
    let page = PageServer::start(limited_page(&format!("http://{}", server.addr)));

    let dom = rendered_dom(&browser, &format!("http://127.0.0.1:{}/", page.port));
    // The 429 passed CORS, and `Retry-After` is exposed to the script (seconds to the window's end;
    // a day-long window, so that the three requests all but surely fall in one).
    let tries: Vec<&str> = shown(&dom, "tries").split(',').collect();
    assert_eq!(tries[..2], ["200:null", "200:null"], "{dom}");
    let retry = tries[2].strip_prefix("429:").unwrap_or_else(|| panic!("{dom}"));
    let secs: u32 = retry.parse().unwrap_or_else(|_| panic!("the page could not read Retry-After: {dom}"));
    assert!((1..=86400).contains(&secs), "{dom}");
    assert_eq!(redis.cmd(0, &["GET", "K:browser:limited"]), "2", "the refused hit counted nothing");
}
