//! Postfix's `smtp-sink` as a test server: started on a free loopback
//! port, stopped (by PID) when dropped, restartable on the same port.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Postfix's smtp-sink, writing each message it accepts to a file
/// (`dir/mail/`) and its session counters to `dir/counters`.
pub struct PostfixSink {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl PostfixSink {
    /// Starts on a free loopback port with `extra` options; `None` where smtp-sink is missing and not required.
    pub fn start(extra: &[&str]) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mail")).unwrap();
        // smtp-sink drops to `nobody` before it writes.
        std::fs::set_permissions(dir.path().join("mail"), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = spawn_sink(&addr, dir.path(), extra)?;
        Some(Self { child, addr, dir })
    }

    /// Stops the server (its connections die with it) and starts it again on the same port.
    pub fn restart(&mut self, extra: &[&str]) {
        self.stop();
        self.child = spawn_sink(&self.addr, self.dir.path(), extra).expect("smtp-sink starts again");
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Messages received for `to` (one file each, its envelope in `X-Rcpt-Args`).
    pub fn mails_to(&self, to: &str) -> usize {
        let line = format!("X-Rcpt-Args: <{to}>");
        std::fs::read_dir(self.dir.path().join("mail"))
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
            .filter(|text| text.lines().any(|l| l.trim_end() == line))
            .count()
    }

    /// Messages received whose content includes `marker` (a transaction cut
    /// off before DATA leaves a file with the envelope only).
    pub fn complete_mails_to(&self, to: &str, marker: &str) -> usize {
        let line = format!("X-Rcpt-Args: <{to}>");
        std::fs::read_dir(self.dir.path().join("mail"))
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
            .filter(|text| text.contains(marker) && text.lines().any(|l| l.trim_end() == line))
            .count()
    }

    /// Connections to the server that are open now, from the kernel's table
    /// (`/proc/net/tcp`: local address the server's port, state ESTABLISHED).
    pub fn open_connections(&self) -> usize {
        let port = self.addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        let local = format!("0100007F:{port:04X}");
        std::fs::read_to_string("/proc/net/tcp")
            .unwrap_or_default()
            .lines()
            .filter(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"01")
            })
            .count()
    }

    /// Messages received so far, complete or not.
    pub fn count(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("mail")).unwrap().count()
    }

    /// Sessions the client ended with QUIT, from smtp-sink's `-c` counters (`sess=2 quit=1 mesg=1`).
    pub fn quits(&self) -> usize {
        let counters = std::fs::read_to_string(self.dir.path().join("counters")).unwrap_or_default();
        let last = counters.rsplit(['\r', '\n']).find(|l| l.contains("quit=")).unwrap_or("");
        last.split_whitespace().find_map(|f| f.strip_prefix("quit=")).map_or(0, |n| n.parse().unwrap())
    }
}

impl Drop for PostfixSink {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_sink(addr: &str, dir: &Path, extra: &[&str]) -> Option<Child> {
    let required = std::env::var("BULLETIN_TEST_REQUIRE_SMTP_SINK").is_ok_and(|v| v == "1");
    let template = format!("{}/mail/%M.", dir.display());
    let mut args = vec!["-u", "nobody", "-c", "-d", &template];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[addr, "128"]);
    let counters = std::fs::File::create(dir.join("counters")).unwrap();
    let child = match Command::new("smtp-sink").args(&args).stdout(counters).stderr(Stdio::null()).spawn() {
        Ok(child) => child,
        Err(e) if !required => {
            eprintln!("skipping: smtp-sink (Debian package postfix) is not installed: {e}");
            return None;
        }
        Err(e) => panic!("smtp-sink is required (BULLETIN_TEST_REQUIRE_SMTP_SINK=1): {e}"),
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "smtp-sink did not start on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
