//! Running the `bulletin` binary from a test, and reading the ledger the way
//! an operator's SQL would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Runs `bulletin --config CONFIG ARGS` as an operator would from a script:
/// no terminal on standard input, log lines only for errors.
pub fn bulletin(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bulletin"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("BULLETIN_CONFIG")
        .env("RUST_LOG", "error")
        .output()
        .expect("run bulletin")
}

/// A config file for the `bulletin` binary: the test's database, the test
/// secret, SMTP transport and these further `[mail]` lines.
pub fn write_config(dir: &Path, db: &str, mail: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        "[server]\nsecret = \"{}\"\n[database]\nurl = \"{db}\"\n[mail]\ntransport = \"smtp\"\n{mail}\n",
        super::TEST_SECRET
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// What `bulletin issue status ID` prints.
pub fn issue_status(config: &Path, id: i64) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_bulletin"))
        .arg("--config")
        .arg(config)
        .args(["issue", "status", &id.to_string()])
        .env("RUST_LOG", "error")
        .output()
        .expect("run bulletin issue status");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// (status, attempts) of ledger rows, read straight from the database: `kind`
/// 'issue' rows of issue `issue`, or 'confirmation' rows when `issue` is 0.
pub async fn ledger(db_url: &str, issue: i64) -> Vec<(String, i64)> {
    use sqlx::Connection;
    const SQL: &str = "SELECT status, attempts FROM deliveries \
         WHERE ($1 = 0 AND kind = 'confirmation') OR issue_id = $1 ORDER BY id";
    if db_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(db_url).await.unwrap();
        sqlx::query_as(SQL).bind(issue).fetch_all(&mut conn).await.unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(db_url).await.unwrap();
        sqlx::query_as(SQL).bind(issue).fetch_all(&mut conn).await.unwrap()
    }
}

/// A `bulletin` process that a test started and must not outlive: killed
/// and reaped when dropped, so a failing assertion leaves no server running.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    /// Starts `bulletin --config CONFIG COMMAND` (`serve`, `worker`) in the
    /// background with `env` set, its info log on a pipe at `stderr`.
    pub fn start(config: &Path, command: &str, env: &[(&str, &str)]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_bulletin"))
            .arg("--config")
            .arg(config)
            .arg(command)
            .env_remove("BULLETIN_CONFIG")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start bulletin {command}: {e}"));
        Self(child)
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;

    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `bulletin --config CONFIG ARGS` with `env` set and `stdin` on its
/// standard input; returns its output, or `None` when it was still running
/// after `limit` (it is killed then, so a hang fails the test instead of
/// stalling it).
pub fn bulletin_within(
    config: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
    limit: Duration,
) -> Option<Output> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_bulletin"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("BULLETIN_CONFIG")
        .env("RUST_LOG", "error")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bulletin");
    // A command that exits before reading its input is judged by its output.
    let _ = child.stdin.take().expect("stdin").write_all(stdin.as_bytes());
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait for bulletin").is_some() {
            return Some(child.wait_with_output().expect("read bulletin's output"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server on 127.0.0.1 that accepts TCP connections and never says a
/// word: a database host whose PostgreSQL is frozen, or a proxy with nothing
/// behind it. It holds at most 64 connections open; stopped when dropped.
pub struct SilentServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentServer {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the silent server");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().expect("its address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = vec![];
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) if held.len() < 64 => held.push(stream),
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self { port, stop, thread: Some(thread) }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
