//! A small tmpfs for full-disk tests, mounted on a temp dir and unmounted
//! (lazily, so a file a failed test left open does not keep it) when dropped.

use std::path::Path;
use std::process::Command;

pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`2m`, `16k`). `None` (the test is skipped,
    /// saying why) where mounting is impossible, e.g. without root, unless
    /// `BULLETIN_TEST_REQUIRE_TMPFS=1`, where that is a failure.
    pub fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        let reason = match out {
            Ok(out) if out.status.success() => return Some(Self { dir }),
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        };
        if std::env::var("BULLETIN_TEST_REQUIRE_TMPFS").is_ok_and(|v| v == "1") {
            panic!("a tmpfs is required (BULLETIN_TEST_REQUIRE_TMPFS=1) but mounting one failed: {reason}");
        }
        eprintln!("skipping: cannot mount a tmpfs for a full-disk test (needs root): {reason}");
        None
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}
