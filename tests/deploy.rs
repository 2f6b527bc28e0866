//! The systemd units in `deploy/` are what an operator installs: they must
//! pass `systemd-analyze verify` and call commands the binary really has.
//!
//! `verify` checks that ExecStart's program exists, so each unit is checked
//! from a temporary copy that names the binary this build made instead of
//! /usr/local/bin/bulletin. Without systemd-analyze the test says so and
//! passes, unless BULLETIN_TEST_REQUIRE_SYSTEMD=1 (as `.ci/run` sets).

use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALLED: &str = "/usr/local/bin/bulletin";
const UNITS: &[&str] =
    &["bulletin.service", "bulletin-worker.service", "bulletin-backup.service", "bulletin-backup.timer"];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// The `bulletin` argument lists the units run: the words after the binary in each Exec line.
fn bulletin_commands(unit: &str) -> Vec<Vec<String>> {
    unit.lines()
        .filter(|l| l.starts_with("Exec"))
        .filter_map(|l| {
            let rest = &l[l.find(INSTALLED)? + INSTALLED.len()..];
            let words = rest.split_whitespace().take_while(|w| !w.starts_with('"'));
            Some(words.map(str::to_owned).collect())
        })
        .collect()
}

#[test]
fn units_call_commands_the_binary_has() {
    let mut seen = 0;
    for name in UNITS.iter().filter(|n| n.ends_with(".service")) {
        let unit = std::fs::read_to_string(deploy_dir().join(name)).unwrap();
        for args in bulletin_commands(&unit) {
            seen += 1;
            assert_eq!(args[..2], ["--config", "/etc/bulletin/config.toml"], "{name}: {args:?}");
            let out = Command::new(env!("CARGO_BIN_EXE_bulletin")).args(&args).arg("--help").output().unwrap();
            assert!(out.status.success(), "{name}: bulletin {args:?} --help: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    assert_eq!(seen, 3, "serve, worker and backup");
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        assert!(
            std::env::var("BULLETIN_TEST_REQUIRE_SYSTEMD").as_deref() != Ok("1"),
            "systemd-analyze is required (BULLETIN_TEST_REQUIRE_SYSTEMD=1) but /usr/bin/systemd-analyze is missing"
        );
        eprintln!("skipping: /usr/bin/systemd-analyze is missing (Debian package systemd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut paths = vec![];
    for name in UNITS {
        let unit = std::fs::read_to_string(deploy_dir().join(name)).unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, unit.replace(INSTALLED, env!("CARGO_BIN_EXE_bulletin"))).unwrap();
        paths.push(path);
    }
    let out = Command::new(analyze).arg("verify").arg("--man=no").args(&paths).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{stderr}");
    // Unknown keys and bad values are only warnings: any line about our units fails the test.
    let ours: Vec<&str> = stderr.lines().filter(|l| UNITS.iter().any(|u| l.contains(u))).collect();
    assert!(ours.is_empty(), "systemd-analyze verify warned:\n{}", ours.join("\n"));
}
