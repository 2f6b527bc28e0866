//! `bulletin subscribers import` with hostile files, through the real binary:
//! a 20 MB field is quoted cut, and 200 000 bad rows are reported as they are
//! found (not gathered until the end) while every good row lands.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, TestDb};

fn write_config(dir: &Path, database_url: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        "[database]\nurl = \"{database_url}\"\n[mail]\ntransport = \"file\"\nfile_dir = \"{}\"\n",
        dir.join("outbox").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn import(config: &Path, file: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bulletin"));
    command
        .arg("--config")
        .arg(config)
        .args(["subscribers", "import", "--newsletter", "morning-briefing", "--confirmed", file])
        .env_remove("BULLETIN_CONFIG")
        .env("RUST_LOG", "warn");
    command
}

/// The largest resident size the process reached, in KiB (VmHWM), while it runs.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn a_huge_bad_field_is_quoted_cut(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db.url);
    let csv = dir.path().join("huge.csv");
    let huge = "x".repeat(20 * 1024 * 1024);
    std::fs::write(&csv, format!("email\nfirst@example.org\n{huge}\nlast@example.org\n")).unwrap();
    let out = import(&config, csv.to_str().unwrap()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", &stderr[..stderr.len().min(2000)]);
    assert!(stderr.len() < 1000, "the 20 MB field is not echoed whole: {} bytes on stderr", stderr.len());
    let expected = format!("line 3: skipped: \"{}…\": ", "x".repeat(60));
    assert!(stderr.contains(&expected), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 confirmed") && stdout.contains("1 bad row(s) skipped"), "{stdout}");
}

async fn bad_rows_are_reported_as_found(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db.url);

    // Through a pipe: the first bad row is reported while the input is still open.
    let mut child =
        import(&config, "-").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "email\nnot-an-address").unwrap();
    stdin.flush().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let (seen, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
            let _ = seen.send(std::mem::take(&mut line));
        }
    });
    let first = lines.recv_timeout(Duration::from_secs(20)).expect("a bad row is reported before the input ends");
    assert!(first.starts_with("line 2: skipped: \"not-an-address\""), "{first}");

    // 200 000 bad rows (each with a 200-character value) among 2 000 good ones.
    let started = Instant::now();
    let value = "y".repeat(200);
    let mut rss = 0;
    for i in 0..200_000 {
        writeln!(stdin, "bad-{i}-{value}").unwrap();
        if i % 100 == 0 {
            writeln!(stdin, "reader{}@example.org", i / 100).unwrap();
        }
        if i % 20_000 == 0 {
            rss = rss.max(peak_rss_kib(child.id()).unwrap_or(0));
        }
    }
    rss = rss.max(peak_rss_kib(child.id()).unwrap_or(0));
    drop(stdin);
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let status = child.wait().unwrap();
    let reported: Vec<String> = lines.try_iter().collect();
    eprintln!(
        "200 000 bad rows: {:.1} s, peak RSS {} MiB (before the end of input)",
        started.elapsed().as_secs_f64(),
        rss / 1024
    );
    assert!(status.success(), "{stdout} {:?}", reported.last());
    assert_eq!(reported.iter().filter(|l| l.contains(": skipped: ")).count(), 200_000, "each bad row, as it was found");
    assert!(stdout.contains("2000 confirmed") && stdout.contains("200001 bad row(s) skipped"), "{stdout}");
    assert!(rss < 60 * 1024, "bad rows are not kept: peak RSS {} MiB", rss / 1024);
    let store = bulletin::store::Store::connect(&db.url, 1).await.unwrap();
    assert_eq!(store.subscription_counts().await.unwrap().values().sum::<i64>(), 2000, "every good row landed");
    store.close().await;
}

on_both_backends!(a_huge_bad_field_is_quoted_cut, bad_rows_are_reported_as_found);
