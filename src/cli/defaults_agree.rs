//! Tests that every flag's default is one value wherever it is read: the const in `config`, what
//! clap applies and `--help` shows, what `--check-config` prints (and reads back through `-c`),
//! and what serde fills in for a hand-off that lacks the field (an older supervisor's, the
//! fixture of the previous release among them). A default changed in one place only fails here.
//!
//! Test-only; it must not change anything it reads.

use std::time::Duration;

use clap::ArgAction;
use clap::Parser;
use serde_json::Value;

use super::Cli;
use super::check::render;
use super::load::{Invocation, Loaded, Origin, command};
use super::values::{allowed_cpus, seconds_text};
use crate::bind::Bind;
use crate::config::Config;
use crate::config::api::{DEFAULT_CORS_ORIGINS, DEFAULT_COUNTER_TTL, Mode};
use crate::config::defaults::*;
use crate::config::https::MinVersion;
use crate::config::limits::{DEFAULT_FIELD_SIZE, DEFAULT_FIELDS, DEFAULT_REQUEST_LINE};
use crate::config::redis_url::DEFAULT_URL;
use crate::logjson::LogFormat;

/// Every flag left at its default (and so read from no `HITCORE_*` variable).
fn defaults() -> Loaded {
    Invocation::new(["hitcore"]).load().expect("the defaults load")
}

fn json(config: &Config) -> Value {
    serde_json::to_value(config).expect("a configuration serialises")
}

/// Each flag with a default: its long name, the const's text as the flag takes it, and whether
/// the validated configuration holds the const.
fn table(c: &Config) -> Vec<(&'static str, String, bool)> {
    let cli = Cli::try_parse_from(["hitcore"]).expect("the defaults parse");
    let secs = seconds_text;
    vec![
        ("workers", allowed_cpus().len().to_string(), c.cpus.len() == allowed_cpus().len()),
        ("bind", DEFAULT_BIND.into(), c.binds == [Bind::parse(DEFAULT_BIND).unwrap()]),
        ("redis", DEFAULT_URL.into(), c.redis.to_string() == DEFAULT_URL),
        ("key", DEFAULT_KEY.into(), c.key == DEFAULT_KEY),
        ("keep-alive", secs(DEFAULT_KEEP_ALIVE), c.keep_alive == DEFAULT_KEEP_ALIVE),
        ("header-timeout", secs(DEFAULT_HEADER_TIMEOUT), c.header_timeout == DEFAULT_HEADER_TIMEOUT),
        ("evict-after", secs(DEFAULT_EVICT_AFTER), c.evict_after == DEFAULT_EVICT_AFTER),
        ("write-timeout", secs(DEFAULT_WRITE_TIMEOUT), c.write_timeout == DEFAULT_WRITE_TIMEOUT),
        ("backlog", DEFAULT_BACKLOG.to_string(), c.backlog == DEFAULT_BACKLOG),
        (
            "worker-connections",
            DEFAULT_WORKER_CONNECTIONS.to_string(),
            c.worker_connections == DEFAULT_WORKER_CONNECTIONS,
        ),
        ("limit-request-line", DEFAULT_REQUEST_LINE.to_string(), c.limits.request_line == DEFAULT_REQUEST_LINE),
        ("limit-request-fields", DEFAULT_FIELDS.to_string(), c.limits.fields == DEFAULT_FIELDS),
        ("limit-request-field-size", DEFAULT_FIELD_SIZE.to_string(), c.limits.field_size == DEFAULT_FIELD_SIZE),
        ("timeout", secs(DEFAULT_TIMEOUT), c.timeout == DEFAULT_TIMEOUT),
        ("graceful-timeout", secs(DEFAULT_GRACEFUL_TIMEOUT), c.graceful_timeout == DEFAULT_GRACEFUL_TIMEOUT),
        ("upgrade-timeout", secs(DEFAULT_UPGRADE_TIMEOUT), c.upgrade_timeout == DEFAULT_UPGRADE_TIMEOUT),
        ("redis-timeout", secs(DEFAULT_REDIS_TIMEOUT), c.redis_timeout == DEFAULT_REDIS_TIMEOUT),
        ("wait-replicas", DEFAULT_WAIT_REPLICAS.to_string(), c.wait_replicas == DEFAULT_WAIT_REPLICAS),
        (
            "wait-timeout",
            DEFAULT_WAIT_TIMEOUT_MS.to_string(),
            c.wait_timeout == Duration::from_millis(DEFAULT_WAIT_TIMEOUT_MS),
        ),
        ("error-logfile", DEFAULT_ERROR_LOGFILE.into(), c.error_log == crate::logging::LogTarget::Stderr),
        ("log-level", "info".into(), c.log_level == DEFAULT_LOG_LEVEL),
        ("health-path", DEFAULT_HEALTH_PATH.into(), c.observe.health_path == DEFAULT_HEALTH_PATH),
        (
            "access-logformat",
            DEFAULT_ACCESS_LOG_FORMAT.into(),
            c.observe.access_log_format == DEFAULT_ACCESS_LOG_FORMAT,
        ),
        ("forwarded-allow-ips", DEFAULT_TRUSTED_PEERS.into(), c.observe.forwarded_allow_ips == DEFAULT_TRUSTED_PEERS),
        ("log-format", "text".into(), c.observe.log_format == LogFormat::default()),
        ("proxy-allow-from", DEFAULT_TRUSTED_PEERS.into(), c.observe.proxy_allow_from == DEFAULT_TRUSTED_PEERS),
        ("ssl-min-version", MinVersion::default().to_string(), cli.https.ssl_min_version == MinVersion::default()),
        ("api-mode", "open".into(), c.api.mode == Mode::default()),
        ("counter-ttl", DEFAULT_COUNTER_TTL.to_string(), c.api.counter_ttl == DEFAULT_COUNTER_TTL),
        ("cors-origins", DEFAULT_CORS_ORIGINS.into(), c.api.cors_origins == [DEFAULT_CORS_ORIGINS]),
    ]
}

/// The value of `long` in `--check-config`'s output, as the text a flag would take.
fn printed(rendered: &str, long: &str) -> Option<(String, String)> {
    let line = rendered.lines().find(|l| l.starts_with(&format!("{long} = ")))?;
    let (assignment, origin) = line.rsplit_once("  # ")?;
    let table: toml::Table = assignment.parse().ok()?;
    let text = match table.get(long)? {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) if items.len() == 1 => items[0].as_str()?.to_string(),
        other => other.to_string(),
    };
    Some((text, origin.to_string()))
}

#[test]
fn every_default_is_one_value_for_clap_the_configuration_and_check_config() {
    let loaded = defaults();
    let rendered = render(&loaded);
    let table = table(&loaded.config);
    let cmd = command();
    let mut missing = Vec::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let shown: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
        // A boolean's default is clap's own `false`; the others are this test's subject.
        if shown.is_empty() || matches!(arg.get_action(), ArgAction::SetTrue) {
            continue;
        }
        let Some((_, text, holds)) = table.iter().find(|(l, ..)| *l == long) else {
            missing.push(long.to_string());
            continue;
        };
        assert_eq!(shown, std::slice::from_ref(text), "--{long}: clap's default is not the const's");
        assert!(holds, "--{long}: the configuration does not hold the const ({text})");
        let setting = loaded.settings.iter().find(|s| s.long == long).expect("every flag has a setting");
        assert_eq!((&setting.values, &setting.origin), (&vec![text.clone()], &Origin::Default), "--{long}");
        if arg.is_hide_default_value_set() && long != "workers" {
            // Its help says the default in words, which must still be the const.
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            assert!(help.contains(&format!("[default: {text}")), "--{long}'s help does not say {text}: {help}");
        }
        if long != "redis" {
            // --redis is printed from the parsed target (masked), checked below through -c.
            assert_eq!(printed(&rendered, long), Some((text.clone(), "default".into())), "--{long} in:\n{rendered}");
        }
    }
    assert!(missing.is_empty(), "flags with a default this test does not know: {missing:?}");
    assert!(table.len() >= 30, "the table lost rows");
}

#[test]
fn check_configs_output_read_back_with_c_is_the_same_configuration() {
    let loaded = defaults();
    let dir = std::env::temp_dir().join(format!("hitcore-defaults-agree-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("printed.toml");
    std::fs::write(&file, render(&loaded)).unwrap();
    let again = Invocation::new(["hitcore".into(), "-c".into(), file.clone().into_os_string()]).load();
    std::fs::remove_dir_all(&dir).unwrap();
    let again = again.expect("--check-config's output is a file -c reads");
    assert_eq!(json(&again.config), json(&loaded.config));
}

/// Removes `path` (one key, or `parent.key`) from the hand-off's JSON.
fn without(full: &Value, parent: Option<&str>, key: &str) -> Value {
    let mut value = full.clone();
    let object = match parent {
        None => value.as_object_mut(),
        Some(p) => value.get_mut(p).and_then(Value::as_object_mut),
    };
    object.expect("an object").remove(key);
    value
}

/// The keys (`parent.key` one level down) whose values differ, with both values, for a message
/// that shows the drift rather than two whole configurations.
fn differences(read: &Value, full: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in full.as_object().unwrap() {
        match (value.as_object(), read.get(key)) {
            (Some(inner), Some(other)) if other.is_object() => {
                for (k, v) in inner {
                    if other.get(k) != Some(v) {
                        out.push(format!("{key}.{k}: {:?} read, {v} by the flags", other.get(k)));
                    }
                }
            }
            (_, other) if other != Some(value) => out.push(format!("{key}: {other:?} read, {value} by the flags")),
            _ => {}
        }
    }
    out
}

#[test]
fn every_serde_default_of_a_hand_off_is_the_flags_default() {
    let config = defaults().config;
    let full = json(&config);
    let mut defaulted = Vec::new();
    let mut paths: Vec<(Option<String>, String)> = Vec::new();
    for (key, value) in full.as_object().unwrap() {
        paths.push((None, key.clone()));
        if let Some(inner) = value.as_object() {
            paths.extend(inner.keys().map(|k| (Some(key.clone()), k.clone())));
        }
    }
    for (parent, key) in &paths {
        let name = parent.as_ref().map_or(key.clone(), |p| format!("{p}.{key}"));
        // A field without a serde default is required in every hand-off: nothing to drift.
        let Ok(read) = serde_json::from_value::<Config>(without(&full, parent.as_deref(), key)) else { continue };
        defaulted.push(name.clone());
        if name == "binds" {
            // An older supervisor sent only `bind`: its one address, which is -b's default.
            assert!(read.binds.is_empty());
            assert_eq!(config.binds, [Bind::Tcp(read.bind)]);
            continue;
        }
        let read = json(&read);
        assert!(read == full, "{name}: the serde default is not the flag's default: {:?}", differences(&read, &full));
    }
    for name in ["pin", "evict_after", "upgrade_timeout", "wait_timeout", "wait_replicas", "observe.health_path"] {
        assert!(defaulted.iter().any(|d| d == name), "{name} has no serde default: {defaulted:?}");
    }
    for name in ["api.counter_ttl", "api.cors_origins", "observe.log_format", "api.mode"] {
        assert!(defaulted.iter().any(|d| d == name), "{name} has no serde default: {defaulted:?}");
    }
}

#[test]
fn the_previous_release_hand_off_reads_as_todays_defaults() {
    let handoff: Value = serde_json::from_str(include_str!("../../tests/fixtures/handoff-e5955ed.json")).unwrap();
    let old = handoff["config"].clone();
    let read: Config = serde_json::from_value(old.clone()).expect("the previous release's hand-off reads");
    let today = json(&defaults().config);
    let read = json(&read);
    let mut absent = Vec::new();
    for (key, value) in today.as_object().unwrap() {
        if old.get(key).is_some() || key == "binds" {
            continue;
        }
        absent.push(key.as_str());
        assert_eq!(&read[key], value, "{key}, absent from the previous release's hand-off");
    }
    assert!(absent.contains(&"evict_after") && absent.contains(&"upgrade_timeout"), "{absent:?}");
}

/// The README's flag table as (long flag, default cell), one row per flag.
fn readme_rows() -> Vec<(String, String)> {
    let readme = include_str!("../../README.md");
    let mut rows = Vec::new();
    for line in readme.lines().filter(|l| l.starts_with("| `-")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let Some(at) = cells[0].find("`--") else { continue };
        let long: String = cells[0][at + 3..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        rows.push((long, cells.get(1).map_or("", |c| c.trim()).to_string()));
    }
    rows
}

/// Whether a README cell shows `value`: as its first word, or as one of its `code` spans.
fn shows(cell: &str, value: &str) -> bool {
    let first = cell.split([' ', '(']).next().unwrap_or_default().trim_matches('`');
    first == value || cell.split('`').skip(1).step_by(2).any(|span| span == value)
}

#[test]
fn the_readme_flag_table_lists_every_flag_with_the_same_default() {
    let rows = readme_rows();
    let mut wrong = Vec::new();
    for arg in command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let Some((_, cell)) = rows.iter().find(|(l, _)| l == long) else {
            wrong.push(format!("--{long}: no row in the README's flag table"));
            continue;
        };
        let default: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
        let ok = match (arg.get_action(), default.as_slice()) {
            // --check-config is an action: its row says so in words.
            _ if long == "check-config" => true,
            (ArgAction::SetTrue, _) => cell.starts_with("off"),
            // --workers' default is found at start (the CPUs this process may use).
            _ if long == "workers" => cell.contains("CPUs"),
            (_, [value]) => shows(cell, value),
            _ => !cell.is_empty(),
        };
        if !ok {
            wrong.push(format!("--{long}: the README says '{cell}', clap's default is {default:?}"));
        }
    }
    assert!(wrong.is_empty(), "README.md's flag table:\n{}", wrong.join("\n"));
    assert!(rows.len() >= 50, "the README's table was not found: {rows:?}");
}
