//! Running the `bulletin` binary from a test, and reading the ledger the way
//! an operator's SQL would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
