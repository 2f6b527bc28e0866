//! Running the `bulletin` binary from a test, and reading the ledger the way
//! an operator's SQL would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Runs `bulletin --config CONFIG ARGS` with `stdin` (a bounce, as Postfix's
/// pipe hands it over) and the log at `log` (`error`, or `warn` for what an
/// operator sees).
pub fn bulletin_with_stdin(config: &Path, args: &[&str], stdin: &str, log: &str) -> Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_bulletin"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("BULLETIN_CONFIG")
        .env("RUST_LOG", log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bulletin");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// What a run that must succeed printed.
pub fn stdout_of(out: &Output) -> String {
    assert!(out.status.success(), "failed ({:?}): {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

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

/// `bulletin serve` as an operator runs it: its own process on a free port of
/// 127.0.0.1, over `db_url`, writing mail to files, with `extra` config lines
/// (whole tables, e.g. `[webhooks]`). Its log is drained into memory so a
/// chatty server never blocks on a full pipe; killed when dropped.
pub struct Serve {
    pub process: KillOnDrop,
    pub base: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    drain: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Serve {
    pub async fn start(db_url: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.path().join("config.toml");
        let text = format!(
            "[server]\nsecret = \"{}\"\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
             [database]\nurl = \"{db_url}\"\n[mail]\ntransport = \"file\"\nfile_dir = \"{}\"\n{extra}\n",
            super::TEST_SECRET,
            dir.path().join("outbox").display()
        );
        std::fs::write(&config, text).unwrap();
        let mut process = KillOnDrop::start(&config, "serve", &[]);
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = process.stderr.take().unwrap();
        let kept = log.clone();
        let drain = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = kept.lock().unwrap();
                if log.len() < 1 << 20 {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while http.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(std::time::Instant::now() < deadline, "serve did not come up: {}", log.lock().unwrap());
            assert!(process.try_wait().unwrap().is_none(), "serve exited: {}", log.lock().unwrap());
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Self { process, base, log, drain: Some(drain), _dir: dir }
    }

    /// Stops the server as an operator would (SIGTERM), waits for it to exit
    /// (at most 10 s), and returns all it logged.
    pub async fn stop(mut self) -> String {
        Command::new("kill").arg("-TERM").arg(self.process.id().to_string()).status().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.process.try_wait().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "serve did not stop");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // The pipe is closed: the drain ends once it has read the last line.
        self.drain.take().unwrap().join().unwrap();
        self.log()
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The server's (resident, peak resident) memory in KiB, from /proc.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.id())).expect("/proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in /proc status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// Sends a request head for `path` with `headers` (each "Name: value"),
/// declaring a body of `length` bytes, then only `sent` of it; returns the
/// answer's status and body, which must come within `within` (the body
/// timeout is far longer: an answer this early was given without the body).
pub async fn declare_body(
    base: &str,
    path: &str,
    headers: &[String],
    length: usize,
    sent: &[u8],
    within: std::time::Duration,
) -> (u16, String) {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let head = format!("POST {path} HTTP/1.1\r\nHost: bulletin\r\n{extra}Content-Length: {length}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(sent).await.unwrap();
    tokio::time::timeout(within, read_response(&mut stream))
        .await
        .unwrap_or_else(|_| panic!("POST {path} not answered within {within:?}"))
}

/// Reads one response off a connection: its status and body.
pub async fn read_response(stream: &mut tokio::net::TcpStream) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_string();
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .map_or(0, |v| v.parse::<usize>().expect("content-length"));
            if data.len() >= end + 4 + length {
                let status = head[9..12].parse().expect("status");
                return (status, String::from_utf8_lossy(&data[end + 4..end + 4 + length]).to_string());
            }
        }
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed mid-response: {:?}", String::from_utf8_lossy(&data));
        data.extend_from_slice(&chunk[..n]);
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
