//! A real Postfix `smtpd`, as an operator's relay would run it: a private
//! instance (its own `config_directory`, `queue_directory` and
//! `data_directory` in a temp dir) listening on a free loopback port and
//! delivering `@example.org` to one virtual Maildir. Started with
//! `postfix -c DIR start`, stopped with `postfix -c DIR stop` (and by the
//! master's PID if need be) when dropped. Needs root and Debian's `postfix`;
//! skipped with a reason unless `BULLETIN_TEST_REQUIRE_POSTFIX=1`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::postfix::free_port;

/// What the instance is told beyond the basics (one line of main.cf each).
#[derive(Default)]
pub struct SmtpdOptions {
    /// `main.cf` lines, e.g. `smtpd_timeout = 2s`.
    pub main_cf: Vec<String>,
    /// A certificate chain and key (PEM) offered with STARTTLS.
    pub tls: Option<(String, String)>,
    /// TLS from the first byte (`smtps://`, port 465's way) instead of STARTTLS; needs `tls`.
    pub implicit_tls: bool,
    /// Further `master.cf` services (a `pipe` transport, say), as written there.
    pub master_cf: Vec<String>,
}

pub struct PostfixSmtpd {
    dir: tempfile::TempDir,
    port: u16,
}

impl PostfixSmtpd {
    /// Starts an instance; `None` (with the reason printed) where Postfix cannot run and is not required.
    pub fn start(options: SmtpdOptions) -> Option<Self> {
        let required = std::env::var("BULLETIN_TEST_REQUIRE_POSTFIX").is_ok_and(|v| v == "1");
        let skip = |why: String| {
            assert!(!required, "Postfix smtpd is required (BULLETIN_TEST_REQUIRE_POSTFIX=1): {why}");
            eprintln!("skipping: Postfix smtpd cannot run here: {why}");
            None
        };
        if !Path::new("/usr/sbin/postfix").exists() || !Path::new("/etc/postfix/master.cf").exists() {
            return skip("Debian's postfix package is not installed".into());
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { geteuid() } != 0 {
            return skip("a private Postfix instance needs root".into());
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Postfix's daemons run as `postfix` and `nobody`: they must reach into the temp dir.
        set_mode(root, 0o755);
        for sub in ["etc", "queue", "data", "mail"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        set_mode(&root.join("mail"), 0o777);
        chown(&root.join("data"), "postfix");
        let port = free_port();
        let r = root.display();
        let mut main_cf = format!(
            "compatibility_level = 3.6\n\
             myhostname = relay.test\n\
             mydomain = relay.test\n\
             mydestination =\n\
             relayhost =\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             queue_directory = {r}/queue\n\
             data_directory = {r}/data\n\
             maillog_file_prefixes = {r}\n\
             maillog_file = {r}/maillog\n\
             virtual_mailbox_domains = example.org\n\
             virtual_mailbox_base = {r}/mail\n\
             virtual_mailbox_maps = regexp:{r}/etc/vmailbox\n\
             virtual_uid_maps = static:65534\n\
             virtual_gid_maps = static:65534\n\
             alias_maps =\n\
             alias_database =\n\
             smtpd_helo_required = yes\n\
             smtpd_helo_restrictions = reject_non_fqdn_helo_hostname\n"
        );
        if let Some((cert, key)) = &options.tls {
            std::fs::write(root.join("etc/cert.pem"), cert).unwrap();
            std::fs::write(root.join("etc/key.pem"), key).unwrap();
            main_cf.push_str(&format!(
                "smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {r}/etc/cert.pem\nsmtpd_tls_key_file = {r}/etc/key.pem\n"
            ));
        }
        for line in &options.main_cf {
            main_cf.push_str(line);
            main_cf.push('\n');
        }
        std::fs::write(root.join("etc/main.cf"), main_cf).unwrap();
        // Every address of example.org but nosuch* has a mailbox: the one Maildir `all/`.
        std::fs::write(root.join("etc/vmailbox"), "if !/^nosuch/\n/^[^@]+@example\\.org$/\texample.org/all/\nendif\n")
            .unwrap();
        let services = options.master_cf.iter().map(|s| format!("{s}\n")).collect::<String>();
        std::fs::write(root.join("etc/master.cf"), master_cf(port, options.implicit_tls) + &services).unwrap();

        let smtpd = Self { dir, port };
        let started = smtpd.postfix("start");
        if !started.status.success() {
            let why = format!("postfix start failed: {}\n{}", String::from_utf8_lossy(&started.stderr), smtpd.log());
            return skip(why);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        // The master opens its listeners before it logs that it started; a plain
        // greeting cannot be read where TLS comes first.
        let ready = |smtpd: &Self| {
            if options.implicit_tls { smtpd.log().contains("daemon started") } else { smtpd.greets() }
        };
        while !ready(&smtpd) {
            if Instant::now() > deadline {
                return skip(format!("smtpd never answered on {}:\n{}", smtpd.addr(), smtpd.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(smtpd)
    }

    /// Whether smtpd answers with its greeting; says QUIT, so the log shows no lost connection.
    fn greets(&self) -> bool {
        use std::io::{BufRead, Write};
        let Ok(stream) = std::net::TcpStream::connect(self.addr()) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = std::io::BufReader::new(&stream);
        let mut greeting = String::new();
        if reader.read_line(&mut greeting).is_err() || !greeting.starts_with("220") {
            return false;
        }
        let _ = (&stream).write_all(b"QUIT\r\n");
        let mut bye = String::new();
        let _ = reader.read_line(&mut bye);
        true
    }

    fn postfix(&self, command: &str) -> std::process::Output {
        Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(self.dir.path().join("etc"))
            .arg(command)
            .output()
            .expect("run postfix")
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Postfix's log of this instance so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Messages delivered to `to` (the virtual agent adds `Delivered-To`).
    pub fn mails_to(&self, to: &str) -> Vec<String> {
        let line = format!("Delivered-To: {to}");
        let Ok(entries) = std::fs::read_dir(self.maildir()) else { return vec![] };
        entries
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
            .filter(|text| text.lines().any(|l| l.trim_end() == line))
            .collect()
    }

    /// Waits (up to 20 s) until `n` messages reached `to`.
    pub async fn wait_for(&self, to: &str, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mails = self.mails_to(to);
            if mails.len() >= n {
                return mails;
            }
            assert!(Instant::now() < deadline, "expected {n} mail(s) to {to}, got {}:\n{}", mails.len(), self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to 20 s) until the log has a line containing `text`.
    pub async fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log().contains(text) {
            assert!(Instant::now() < deadline, "no {text:?} in Postfix's log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn maildir(&self) -> PathBuf {
        self.mailbox("example.org/all/new")
    }

    /// A path under `virtual_mailbox_base`, where `virtual_mailbox_maps` values point.
    pub fn mailbox(&self, relative: &str) -> PathBuf {
        self.dir.path().join("mail").join(relative)
    }
}

impl Drop for PostfixSmtpd {
    fn drop(&mut self) {
        let _ = self.postfix("stop");
        let pid_file = self.dir.path().join("queue/pid/master.pid");
        if let Some(pid) = std::fs::read_to_string(pid_file).ok().and_then(|p| p.trim().parse::<i32>().ok()) {
            let deadline = Instant::now() + Duration::from_secs(5);
            // SAFETY: kill with signal 0 only asks whether the process exists.
            while unsafe { kill(pid, 0) } == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: the PID is this instance's master, read from its own pid file.
            unsafe { kill(pid, 9) };
        }
    }
}

/// Debian's master.cf with smtpd on `127.0.0.1:port` instead of port 25 and no chroot (the temp queue has no /etc).
fn master_cf(port: u16, implicit_tls: bool) -> String {
    let shipped = std::fs::read_to_string("/etc/postfix/master.cf").unwrap();
    shipped
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if line.starts_with('#') || line.starts_with([' ', '\t']) || fields.len() < 8 {
                return line.to_owned();
            }
            let mut fields: Vec<String> = fields.into_iter().map(str::to_owned).collect();
            if fields[0] == "smtp" && fields[1] == "inet" {
                fields[0] = format!("127.0.0.1:{port}");
                if implicit_tls {
                    fields.push("-o smtpd_tls_wrappermode=yes".into());
                }
            }
            fields[4] = "n".into();
            fields.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

fn chown(path: &Path, user: &str) {
    let done = Command::new("chown").arg(user).arg(path).status().expect("run chown");
    assert!(done.success(), "chown {user} {}", path.display());
}

unsafe extern "C" {
    fn geteuid() -> u32;
    fn kill(pid: i32, signal: i32) -> i32;
}
