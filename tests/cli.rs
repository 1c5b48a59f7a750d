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
fn a_refused_redis_url_never_echoes_its_password() {
    for url in
        ["redis://:hunter2@127.0.0.1:notaport/0", "redis://:hunter2@127.0.0.1:6379/x", "redis://:hunter2@127.0.0.1:0/0"]
    {
        let stderr = refused(&["--redis", url], "--redis");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}
