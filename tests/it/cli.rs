//! The command line: help lists every flag with its default; a bad flag is refused with a message
//! that names it, a non-zero exit, and no secret echoed back.

use std::process::{Command, Output};

fn hitcore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hitcore")).args(args).env_remove("REDIS_URL").output().unwrap()
}

fn refused(args: &[&str], flag: &str) -> String {
    let out = hitcore(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?} should be refused: {stderr}");
    assert!(stderr.contains(flag), "{args:?}: message should name {flag}: {stderr}");
    stderr
}

#[test]
fn help_lists_flags_with_defaults() {
    let out = hitcore(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--workers",
        "--cpus",
        "--bind",
        "--redis",
        "--key",
        "--keep-alive",
        "--header-timeout",
        "--write-timeout",
        "--evict-after",
        "--backlog",
        "--worker-connections",
        "--limit-request-line",
        "--limit-request-fields",
        "--limit-request-field-size",
        "--timeout",
        "--graceful-timeout",
        "--error-logfile",
        "--access-logfile",
        "--log-level",
        "--no-coalesce",
        "--pid",
    ] {
        assert!(help.contains(flag), "help lacks {flag}:\n{help}");
    }
    for default in
        ["[default: 127.0.0.1:8000]", "[default: hit]", "[default: 2048]", "[default: 10000]", "[default: 4094]"]
    {
        assert!(help.contains(default), "help lacks {default}:\n{help}");
    }
}

#[test]
fn bad_flags_are_named() {
    refused(&["--workers", "0"], "--workers");
    refused(&["-w", "4096"], "--share-cpus");
    refused(&["-w", "lots"], "--workers");
    refused(&["--cpus", "4000"], "--cpus");
    refused(&["--cpus", "3-1"], "--cpus");
    refused(&["--bind", "unix:"], "--bind");
    refused(&["--bind", "fd://1"], "--bind");
    refused(&["-b", "127.0.0.1:1", "-b", "127.0.0.1:1"], "twice");
    refused(&["--bind-mode", "660"], "--bind-mode");
    refused(&["--redis", "ftp://example.com"], "--redis");
    refused(&["--keep-alive", "-1"], "--keep-alive");
    refused(&["--evict-after", "-0.5"], "--evict-after");
    refused(&["--limit-request-line", "9000"], "--limit-request-line");
    refused(&["--log-level", "loud"], "--log-level");
    refused(&["--no-such-flag"], "--no-such-flag");
    refused(&["--user", "no-such-user-here"], "--user");
    refused(&["--user", "4000000000"], "-g");
    refused(&["--group", "no-such-group-here"], "--group");
}

#[test]
fn a_password_that_starts_with_dashes_is_a_value_not_a_flag() {
    let out = hitcore(&["--check-config", "--redis", "redis+sentinel://h/svc", "--sentinel-password", "--Secret9"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("Secret9") && text.contains("sentinel password set (masked)"), "{text}");
    let out = hitcore(&["--check-config", "--redis", "--Secret9@h"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("--redis") && !stderr.contains("Secret9"), "{stderr}");
}

#[test]
fn a_refused_redis_url_never_echoes_its_password() {
    for url in
        ["redis://:hunter2@127.0.0.1:notaport/0", "redis://:hunter2@127.0.0.1:6379/x", "redis://:hunter2@127.0.0.1:0/0"]
    {
        let stderr = refused(&["--redis", url], "--redis");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

/// A password of printable ASCII with a letter, rich in the characters that break URLs and TOML.
fn password() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let special = prop::sample::select(&['/', '?', '#', '@', ':', '%', '"', '\\', ' ', ',', '&', '='][..]);
    let letter = prop::char::range('a', 'z').prop_union(prop::char::range('A', 'Z'));
    (prop::collection::vec(prop_oneof![3 => prop::char::range(' ', '~'), 2 => special], 3..14), letter, 0usize..14)
        .prop_map(|(mut chars, letter, at)| {
            chars.insert(at.min(chars.len()), letter);
            chars.into_iter().collect()
        })
}

/// The letters rotated (rot13): the same shape, so the same parse, other text.
fn rotated(password: &str) -> String {
    // Hex letters rotate among themselves so that a `%XX` escape stays one (the same parse); see
    // `config::redis_url::tests::rotated`.
    let within = |c: u8, first: u8, len: u8, by: u8| (first + (c - first + by) % len) as char;
    password
        .chars()
        .map(|c| match c {
            'a'..='f' => within(c as u8, b'a', 6, 3),
            'A'..='F' => within(c as u8, b'A', 6, 3),
            'g'..='z' => within(c as u8, b'g', 20, 10),
            'G'..='Z' => within(c as u8, b'G', 20, 10),
            c => c,
        })
        .collect()
}

/// The 3-character pieces of `password` in `out` and not in `baseline` (the same run with the
/// rotated password): pieces of the password, not of the text around it.
fn leaked(password: &str, out: &str, baseline: &str) -> Vec<String> {
    let (out, baseline) = (out.to_lowercase(), baseline.to_lowercase());
    let chars: Vec<char> = password.to_lowercase().chars().collect();
    let pieces = chars.windows(3).map(|w| w.iter().collect::<String>());
    pieces.filter(|w| out.contains(w.as_str()) && !baseline.contains(w.as_str())).collect()
}

/// The URL forms, the password written raw; every address refuses connections at once (port 1 on
/// loopback, a socket path that does not exist), so a started server says so without waiting.
fn forms(password: &str) -> Vec<String> {
    vec![
        format!("redis://app:{password}@127.0.0.1:1/0"),
        format!("redis+sentinel://app:{password}@127.0.0.1:1,127.0.0.1:2/mymaster/0"),
        format!("redis+cluster://app:{password}@127.0.0.1:1,127.0.0.1:2"),
        format!("unix:///nonexistent-hitcore-dir/redis.sock?db=0&password={password}"),
    ]
}

/// A shard's line saying it cannot reach Redis (it names the target, redacted).
fn cannot_reach(line: &str) -> bool {
    line.contains("Cannot reach Redis at") || line.contains("Cannot use Redis at")
}

/// A real start with `url`: everything it writes until its shard reports that it cannot use Redis
/// (or it exits, when the URL is refused), then it is stopped by its pid.
fn started(url: &str) -> String {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hitcore"))
        .args(["-w", "1", "-b", "127.0.0.1:0", "--redis", url])
        .env_remove("REDIS_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut shown = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
        shown += &line;
        shown.push('\n');
        if cannot_reach(&line) {
            break;
        }
    }
    // SAFETY: the server this test started; its shard follows its supervisor out.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    shown.extend(rx.try_iter().map(|l| l + "\n"));
    shown
}

/// The host of a one-host URL: after the scheme and any `user:password@`, before a port or path.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    &host[..host.find([':', ',']).unwrap_or(host.len())]
}

/// Everything the binary shows for `url`: `--check-config` given it as a flag and in a `-c` file
/// (written raw, so a `"` or `\` breaks the TOML), and a real start (refused, or serving 503s).
fn everything_shown(url: &str, dir: &std::path::Path) -> String {
    let text = |o: &Output| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let mut shown = String::new();
    let flag = hitcore(&["--check-config", "-w", "1", "--redis", url]);
    shown += &text(&flag);
    let file = dir.join("hitcore.toml");
    let body = format!("workers = 1\nredis = \"{url}\"\n");
    std::fs::write(&file, &body).unwrap();
    let from_file = text(&hitcore(&["--check-config", "-c", file.to_str().unwrap()]));
    // A `"` then a `#` in the password end the TOML string and comment out the rest: the file
    // then holds a shorter, valid URL whose host may be the password's next characters (`@aA"#`
    // gives `redis://app:@aA`, host `aA`). What hitcore shows of that host is the host it would
    // dial, not a secret, so it is left out of the comparison; everything else still counts.
    let read = toml::from_str::<toml::Table>(&body).ok().and_then(|t| Some(t.get("redis")?.as_str()?.to_string()));
    shown += &match read.as_deref().and_then(|r| (r != url).then(|| host_of(r))) {
        // Lowercased as the comparison is (a Cluster URL's hosts are shown lowercased).
        Some(host) if !host.is_empty() => from_file.to_lowercase().replace(&host.to_lowercase(), ""),
        _ => from_file,
    };
    let start = started(url);
    if flag.status.success() {
        assert!(start.lines().any(cannot_reach), "{url}: {start}");
    } else {
        assert!(start.contains("invalid value for '--redis'"), "{url}: {start}");
    }
    shown + &start
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]
    /// However a password breaks the URL or the file, neither `--check-config` nor a start (refused,
    /// or running and failing to reach Redis) shows a 3-character piece of it.
    #[test]
    fn no_piece_of_a_password_reaches_the_binarys_output(password in password()) {
        let dir = crate::common::scratch_dir("secret");
        for (url, base) in forms(&password).iter().zip(forms(&rotated(&password))) {
            let (out, baseline) = (everything_shown(url, &dir), everything_shown(&base, &dir));
            let leaks = leaked(&password, &out, &baseline);
            proptest::prop_assert!(leaks.is_empty(), "{url} -> {out} shows {leaks:?}");
        }
        // As two arguments: a password that starts with '-' must not read as a flag clap quotes.
        let sentinel = |p: &str| {
            let out = hitcore(&[
                "--check-config", "-w", "1", "--redis", "redis+sentinel://10.0.0.1/mymaster", "--sentinel-password", p,
            ]);
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        };
        let (out, baseline) = (sentinel(&password), sentinel(&rotated(&password)));
        let leaks = leaked(&password, &out, &baseline);
        proptest::prop_assert!(leaks.is_empty(), "--sentinel-password shows {leaks:?}: {out}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
