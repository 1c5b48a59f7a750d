//! What the Debian package ships agrees with what docs/deploy.md and docs/observability.md say:
//! the socket unit outlives the service (no `PartOf=`, checked with `systemd-analyze verify` on the
//! units as shipped), the package's upgrade step is USR2 (HUP would leave the old supervisor
//! running), and the Grafana dashboard loads by file provisioning (a data source variable, no
//! `__inputs`) with an `instance` variable every query honours. scripts/check-deb checks the built
//! package itself.

use std::path::Path;
use std::process::Command;

const SOCKET: &str = include_str!("../../deploy/systemd/hitcore.socket");
const SERVICE: &str = include_str!("../../deploy/systemd/hitcore.service");
const POSTINST: &str = include_str!("../../deploy/debian/postinst");
const DEPLOY: &str = include_str!("../../docs/deploy.md");

/// The `Key=` lines of a unit (comments and sections left out).
fn directives(unit: &str) -> Vec<(&str, &str)> {
    unit.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && l.contains('='))
        .filter_map(|l| l.split_once('='))
        .collect()
}

#[test]
fn the_socket_outlives_a_service_restart_as_the_docs_say() {
    let socket = directives(SOCKET);
    for relation in ["PartOf", "BindsTo", "Requires", "StopWhenUnneeded"] {
        assert!(
            !socket.iter().any(|(k, _)| *k == relation),
            "hitcore.socket has {relation}=: stopping or restarting hitcore.service would take the socket with it"
        );
    }
    assert!(socket.contains(&("ListenStream", "127.0.0.1:8000")), "{socket:?}");
    assert!(DEPLOY.contains("systemd holds the socket across restarts"), "docs/deploy.md no longer says so");
    assert!(DEPLOY.contains("not `PartOf=` the service"), "docs/deploy.md does not name the relation");

    // The units as shipped pass systemd's own checks (ExecStart pointed at this build's binary,
    // since /usr/bin/hitcore exists only once the package is installed).
    let dir = crate::common::scratch_dir("units");
    std::fs::write(dir.join("hitcore.service"), SERVICE.replace("/usr/bin/hitcore", env!("CARGO_BIN_EXE_hitcore")))
        .unwrap();
    std::fs::write(dir.join("hitcore.socket"), SOCKET).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "hitcore.service", "hitcore.socket"])
        .current_dir(&dir)
        .output()
        .expect("systemd-analyze (Debian's systemd package; scripts/test installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_package_upgrade_moves_the_supervisor_with_usr2() {
    let code: Vec<&str> = POSTINST.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    let code = code.join("\n");
    assert!(code.contains("systemctl kill --kill-whom=main --signal=USR2 hitcore.service"), "{code}");
    assert!(
        !code.contains("reload hitcore") && !code.contains("HUP"),
        "an upgrade by HUP keeps the old supervisor: {code}"
    );
    let row = DEPLOY.lines().find(|l| l.starts_with("| **USR2**")).expect("docs/deploy.md's USR2 row");
    assert!(row.contains("postinst"), "docs/deploy.md's upgrade table does not say the postinst sends USR2: {row}");
    let hup = DEPLOY.lines().find(|l| l.starts_with("| **HUP**")).expect("docs/deploy.md's HUP row");
    assert!(!hup.contains("postinst does this"), "{hup}");
    // The script is valid POSIX shell.
    let out = Command::new("sh").args(["-n", "deploy/debian/postinst"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_dashboard_loads_by_file_provisioning_and_selects_instances() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/hitcore.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dashboard.get("__inputs").is_none(), "file provisioning cannot fill __inputs");
    assert!(!text.contains("${DS_"), "an import-time data source placeholder is left");
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    let names: Vec<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["datasource", "job", "instance"]);
    assert_eq!(vars[0]["type"], "datasource");
    assert_eq!(vars[0]["query"], "prometheus");
    // Every data source reference is the variable; every query filters on job and instance.
    fn walk<'a>(v: &'a serde_json::Value, sources: &mut Vec<&'a serde_json::Value>, exprs: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("datasource", serde_json::Value::Object(_)) => sources.push(v),
                        ("expr", serde_json::Value::String(s)) => exprs.push(s),
                        _ => walk(v, sources, exprs),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, sources, exprs)),
            _ => {}
        }
    }
    let (mut sources, mut exprs) = (Vec::new(), Vec::new());
    walk(&dashboard["panels"], &mut sources, &mut exprs);
    walk(&vars[1], &mut sources, &mut exprs);
    walk(&vars[2], &mut sources, &mut exprs);
    assert!(sources.len() >= 10 && exprs.len() >= 10, "{sources:?} {exprs:?}");
    for s in sources {
        assert_eq!(s["uid"], "${datasource}", "{s}");
    }
    for e in exprs {
        assert!(e.contains("job=~\"$job\", instance=~\"$instance\""), "a query ignores $instance: {e}");
    }
    assert!(vars[2]["query"].as_str().unwrap().contains("instance)"), "{}", vars[2]);
}
