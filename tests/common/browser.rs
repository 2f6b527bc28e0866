//! Headless Chromium for end-to-end tests, driven over WebDriver with
//! fantoccini. Debian's `chromedriver` runs on a free loopback port as a child
//! in a process group of its own, so the Chromium it starts (which inherits
//! the group) dies with it: `close` ends the session and then the group, and
//! checks that no process still uses the browser's profile; `Drop` kills the
//! group on the way out of a failed test. Each browser gets a fresh profile
//! in a temp dir. Skipped with a reason where Chromium is missing, unless
//! `BULLETIN_TEST_REQUIRE_CHROMIUM=1`.
//!
//! Also [`NewsSite`]: a news site's page on a second local origin, the page
//! that embeds Bulletin's signup boxes.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::postfix::free_port;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long any one wait for the page may take.
pub const WAIT: Duration = Duration::from_secs(10);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(50);

/// The browser's viewport in CSS pixels, and whether it plays a phone.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub width: u32,
    pub height: u32,
    /// A phone's screen (Chromium's device emulation: a desktop window is at least 500 wide).
    pub phone: bool,
}

/// A desktop browser.
pub const DESKTOP: Window = Window { width: 1280, height: 900, phone: false };
/// A phone held upright.
pub const PHONE: Window = Window { width: 390, height: 844, phone: true };

/// A Chromium session with its chromedriver; derefs to the fantoccini [`Client`].
pub struct Browser {
    client: Client,
    driver: Driver,
}

/// chromedriver as a child leading its own process group, with the browser's profile dir.
struct Driver {
    child: Child,
    dir: tempfile::TempDir,
}

impl std::ops::Deref for Browser {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Browser {
    /// A browser with JavaScript on; `None` (with the reason printed) where Chromium cannot run and is not required.
    pub async fn start(window: Window) -> Option<Self> {
        Self::launch(window, true).await
    }

    /// A browser whose reader turned JavaScript off (the content setting, as a policy would).
    pub async fn without_javascript(window: Window) -> Option<Self> {
        Self::launch(window, false).await
    }

    async fn launch(window: Window, javascript: bool) -> Option<Self> {
        let required = std::env::var("BULLETIN_TEST_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1");
        for (path, package) in [(CHROMEDRIVER, "chromium-driver"), (CHROMIUM, "chromium")] {
            if !Path::new(path).exists() {
                let why = format!("{path} is missing (Debian package {package})");
                assert!(!required, "Chromium is required (BULLETIN_TEST_REQUIRE_CHROMIUM=1): {why}");
                eprintln!("skipping: headless Chromium cannot run here: {why}");
                return None;
            }
        }
        let port = free_port();
        let mut driver = Driver::start(port);
        driver.wait_until_listening(port);
        let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities(&driver.profile(), window, javascript));
        let webdriver = format!("http://127.0.0.1:{port}");
        let client = tokio::time::timeout(WAIT * 3, builder.connect(&webdriver))
            .await
            .unwrap_or_else(|_| panic!("Chromium did not start within {:?}:\n{}", WAIT * 3, driver.log()))
            .unwrap_or_else(|e| panic!("Chromium did not start: {e}\n{}", driver.log()));
        Some(Self { client, driver })
    }

    /// The first element matching `css`, waiting (bounded) for it to appear.
    pub async fn element(&self, css: &str) -> Element {
        match self.client.wait().at_most(WAIT).every(POLL).for_element(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => {
                let url = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
                panic!("no {css} within {WAIT:?} on {url}: {e}")
            }
        }
    }

    /// Whether an element matches `css` now (no waiting: ask only after something else showed the page is there).
    pub async fn has(&self, css: &str) -> bool {
        !self.client.find_all(Locator::Css(css)).await.expect("find").is_empty()
    }

    /// Waits (bounded) until `check` gives `Ok(Ok(found))`, looking again while it gives
    /// `Ok(Err(what it saw))` or a WebDriver error; `what` names the condition in the failure.
    pub async fn wait_until<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<Result<T, String>, CmdError>>,
    {
        let deadline = Instant::now() + WAIT;
        loop {
            let last = match check(self.client.clone()).await {
                Ok(Ok(found)) => return found,
                Ok(Err(saw)) => format!("(saw {saw})"),
                Err(e) => format!("(last error: {e})"),
            };
            if Instant::now() >= deadline {
                let url = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
                panic!("timed out after {WAIT:?} waiting for {what} on {url} {last}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the element matching `css` shows text containing `needle`; returns its whole text.
    pub async fn text_containing(&self, css: &str, needle: &str) -> String {
        self.wait_until(&format!("{css} to read {needle:?}"), |client| async move {
            let text = client.find(Locator::Css(css)).await?.text().await?;
            Ok(if text.contains(needle) { Ok(text) } else { Err(format!("{text:?}")) })
        })
        .await
    }

    /// Waits until the document's title satisfies `accept`; returns it.
    pub async fn title_where(&self, what: &str, accept: impl Fn(&str) -> bool) -> String {
        let accept = &accept;
        self.wait_until(what, |client| async move {
            let title = client.title().await?;
            Ok(if accept(&title) { Ok(title) } else { Err(format!("title {title:?}")) })
        })
        .await
    }

    /// Runs `script` in the page (a function body: `return …`) and gives its value.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Writes a PNG of the whole page (up to 2400 pixels down), as wide as the viewport.
    pub async fn screenshot_page(&self, path: &Path) {
        let metrics = self.devtools("Page.getLayoutMetrics", json!({})).await;
        let width = metrics["cssLayoutViewport"]["clientWidth"].as_f64().expect("viewport width");
        let height = metrics["cssContentSize"]["height"].as_f64().expect("content height").min(2400.0);
        let clip = json!({ "x": 0, "y": 0, "width": width, "height": height, "scale": 1 });
        let shot = self
            .devtools("Page.captureScreenshot", json!({ "format": "png", "clip": clip, "captureBeyondViewport": true }))
            .await;
        use base64::Engine;
        let png =
            base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().expect("png data")).expect("base64");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Makes the page's clock read in `zone` (an IANA name), as a reader who lives there sees it.
    pub async fn set_time_zone(&self, zone: &str) {
        self.devtools("Emulation.setTimezoneOverride", json!({ "timezoneId": zone })).await;
    }

    /// Sends one Chrome DevTools Protocol command through chromedriver and gives its result.
    async fn devtools(&self, method: &'static str, params: Value) -> Value {
        self.client
            .issue_cmd(DevTools { method, params })
            .await
            .unwrap_or_else(|e| panic!("DevTools {method} failed: {e}"))
    }

    /// Ends the session, stops chromedriver, and fails if any process still names this browser's dir
    /// (its profile, or its HOME) on its command line.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(WAIT, self.client.clone().close()).await;
        self.driver.stop();
        let dir = self.driver.dir.path().to_owned();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = processes_using(&dir);
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "processes still use {}: {left:?}", dir.display());
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Driver {
    fn start(port: u16) -> Self {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("browser dir");
        let log = std::fs::File::create(dir.path().join("chromedriver.log")).expect("driver log");
        let home = dir.path().join("home");
        std::fs::create_dir(&home).expect("home dir");
        // Chromium's crash handler leaves the process group; with HOME here its
        // command line (`--database=…`) names this dir, so `close` sees it too.
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .env("HOME", &home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_CACHE_HOME")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("driver log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        Self { child, dir }
    }

    /// Waits (bounded) until chromedriver accepts connections, failing early if it died.
    fn wait_until_listening(&mut self, port: u16) {
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = self.child.try_wait().expect("driver status") {
                panic!("chromedriver exited ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "chromedriver did not answer on port {port}:\n{}", self.log());
            std::thread::sleep(POLL);
        }
    }

    /// Chromium's `--user-data-dir`.
    fn profile(&self) -> PathBuf {
        self.dir.path().join("profile")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// Kills the process group (chromedriver and the Chromium it started) and reaps chromedriver.
    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let group = self.child.id() as i32;
        // SAFETY: the group is chromedriver's own: process_group(0) made its PID the group's ID.
        unsafe { kill(-group, 9) };
        let _ = self.child.wait();
        let deadline = Instant::now() + WAIT;
        // SAFETY: signal 0 only asks whether a process of the group is left.
        while unsafe { kill(-group, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Processes whose command line names `dir` (Chromium's with `--user-data-dir=`, its crash handler's), by PID.
pub fn processes_using(dir: &Path) -> Vec<i32> {
    let needle = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else { return vec![] };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains(&needle))
        })
        .collect()
}

fn capabilities(profile: &Path, window: Window, javascript: bool) -> fantoccini::wd::Capabilities {
    let mut args = vec![
        "--headless".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-quic".into(),
        "--disable-dev-shm-usage".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    if !window.phone {
        args.push(format!("--window-size={},{}", window.width, window.height));
    }
    let mut chrome = json!({ "binary": CHROMIUM, "args": args });
    if window.phone {
        chrome["mobileEmulation"] = json!({ "deviceMetrics": {
            "width": window.width, "height": window.height, "pixelRatio": 1.0, "mobile": true,
            // Touch emulation with JavaScript off hangs chromedriver's clicks (it awaits a timer that never fires).
            "touch": false
        } });
    }
    if !javascript {
        chrome["prefs"] = json!({ "profile.managed_default_content_settings.javascript": 2 });
    }
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": chrome,
        "timeouts": { "pageLoad": WAIT.as_millis() as u64, "script": WAIT.as_millis() as u64, "implicit": 0 },
    });
    match caps {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

/// chromedriver's own endpoint for a Chrome DevTools Protocol command.
#[derive(Debug)]
struct DevTools {
    method: &'static str,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for DevTools {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/goog/cdp/execute", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(json!({ "cmd": self.method, "params": self.params }).to_string()))
    }
}

/// A news site's page on its own loopback origin: serves whatever HTML it was last given at `/`.
pub struct NewsSite {
    /// `http://127.0.0.1:PORT`, the origin to list (or not) in `allowed_origins`.
    pub origin: String,
    page: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl NewsSite {
    /// Starts the site with an empty page; its origin is known before Bulletin starts.
    pub async fn start() -> Self {
        use axum::response::Html;
        let page = Arc::new(Mutex::new(String::new()));
        let shown = page.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let shown = shown.clone();
                async move { Html(shown.lock().unwrap().clone()) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind news site");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { origin, page, task }
    }

    /// Puts `body` in a plain article page as the site's `/`.
    pub fn publish(&self, body: &str) {
        *self.page.lock().unwrap() = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>The Daily Test</title>\
             <style>body{{font-family:sans-serif;max-width:44rem;margin:1rem auto;padding:0 1rem}}\
             iframe{{width:100%;height:16rem;border:0}}</style></head>\
             <body><h1>The Daily Test</h1><p>Today's stories, and our newsletters.</p>{body}</body></html>"
        );
    }

    pub fn url(&self) -> String {
        format!("{}/", self.origin)
    }
}

impl Drop for NewsSite {
    fn drop(&mut self) {
        self.task.abort();
    }
}

unsafe extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}
