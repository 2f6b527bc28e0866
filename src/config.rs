//! Settings: `config.toml`, then `BULLETIN_<SECTION>__<KEY>` environment overrides.
//!
//! Every setting has a default here equal to the one in the shipped
//! `config.toml` (a test keeps them equal), unknown keys are an error that
//! names the key, and values are checked once, at load.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::NewsletterSlug;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub mail: MailSettings,
    pub signup: SignupSettings,
    pub sending: SendingSettings,
    pub bounces: BounceSettings,
    pub webhooks: WebhookSettings,
    pub newsletters: Vec<NewsletterSettings>,
}

/// `[bounces]`: what Bulletin does with bounces and complaints that come back
/// after the SMTP reply (DSNs, ARF reports, provider webhooks).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BounceSettings {
    /// The envelope sender (Return-Path) with VERP: `bounces@example.com` makes each
    /// message's `bounces+<signed delivery id>@example.com`. Empty: `mail.from`'s address, no VERP.
    pub return_path: String,
    /// Soft bounces (4.x.x: mailbox full, greylisted for days) within `soft_bounce_days`
    /// after which an address is suppressed as bounced.
    pub soft_bounce_limit: u32,
    pub soft_bounce_days: u32,
    /// An issue pauses itself when complaints / delivered passes this fraction
    /// (0.003 = 0.3 %, Gmail's and Yahoo's ceiling); 0 disables.
    pub pause_complaint_rate: f64,
    /// ...and it has at least this many complaints, so one complaint on a small list does not pause it.
    pub pause_min_complaints: u32,
    /// A receiving domain that refuses this share of what it is sent for the
    /// sender's reasons (blocklist, policy, SPF/DKIM/DMARC, content) is named
    /// in a warning: in the log while an issue sends, in `issue status`.
    pub sender_refusal_warning_share: f64,
    /// ...once it has refused at least this many, so 1 of 2 is no warning.
    pub sender_refusal_warning_min: u32,
}

impl BounceSettings {
    /// When a receiving domain's refusals for the sender's reasons are worth a warning.
    pub fn refusal_warning(&self) -> crate::domain::RefusalWarning {
        crate::domain::RefusalWarning { share: self.sender_refusal_warning_share, min: self.sender_refusal_warning_min }
    }
}

impl Default for BounceSettings {
    fn default() -> Self {
        Self {
            return_path: String::new(),
            soft_bounce_limit: 3,
            soft_bounce_days: 30,
            pause_complaint_rate: 0.003,
            pause_min_complaints: 3,
            sender_refusal_warning_share: 0.05,
            sender_refusal_warning_min: 10,
        }
    }
}

/// `[webhooks]`: who may post bounce and complaint notifications to
/// `POST /webhooks/{provider}`. Nothing configured: every webhook route is 404.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// A secret path part: providers post to `/webhooks/{provider}/{token}`. Empty: off.
    #[serde(serialize_with = "serialize_secret")]
    pub token: SecretString,
    /// `user:password` for HTTP basic auth on `/webhooks/{provider}`. Empty: off.
    #[serde(serialize_with = "serialize_secret")]
    pub basic_auth: SecretString,
    /// Amazon SNS topic ARNs whose notifications are taken. Empty: any topic whose message verifies.
    pub ses_topic_arns: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub public_url: String,
    pub trusted_proxies: Vec<IpNet>,
    /// The news sites (origins) that may frame the embeddable signup boxes and
    /// call the JSON API from their pages (CORS).
    pub allowed_origins: Vec<String>,
    /// The name `allowed_origins` had before the boxes came: still read, and
    /// added to it at load. Never written back.
    #[serde(skip_serializing)]
    pub api_allowed_origins: Vec<String>,
    /// Signs unsubscribe and preference links. Empty: generated once and kept in the database.
    #[serde(serialize_with = "serialize_secret")]
    pub secret: SecretString,
    /// Old secrets that still verify links after a rotation.
    #[serde(serialize_with = "serialize_secrets")]
    pub previous_secrets: Vec<SecretString>,
    /// A client must send a request's head within this long (slowloris).
    pub header_read_timeout_seconds: u64,
    /// A client must send a request's body within this long.
    pub body_read_timeout_seconds: u64,
    /// A keep-alive connection with no request for this long is closed.
    pub keepalive_idle_seconds: u64,
    /// Connections served at once; beyond it new ones wait in the kernel's backlog.
    pub max_connections: u32,
    /// Bearer tokens that may call `POST /api/items` (a CMS adding stories). Empty: the route answers 404.
    #[serde(serialize_with = "serialize_secrets")]
    pub api_tokens: Vec<SecretString>,
    /// Where `GET /metrics` (Prometheus) is served: its own address, so it is
    /// never public by accident. None: no metrics endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    #[serde(serialize_with = "serialize_secret")]
    pub url: SecretString,
    pub max_connections: u32,
    /// Opening a connection (TCP, TLS, log-in) must finish within this long.
    pub connect_timeout_seconds: u64,
    /// PostgreSQL: a statement waits this long at most for a lock another
    /// session holds (`lock_timeout`).
    pub lock_timeout_seconds: u64,
    /// PostgreSQL: a statement runs this long at most (`statement_timeout`);
    /// migrations are exempt.
    pub statement_timeout_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    File,
    Smtp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailSettings {
    pub from: String,
    pub transport: TransportKind,
    pub file_dir: PathBuf,
    #[serde(serialize_with = "serialize_secret")]
    pub smtp_url: SecretString,
    /// Seconds an SMTP connection may stay unused before it is closed.
    pub smtp_idle_seconds: u64,
    /// The name given in EHLO. Empty: this host's name if fully qualified, else the domain of `from`.
    pub helo_name: String,
    /// A PEM file of CA certificates trusted besides the system's and the webpki roots. Empty: none.
    pub tls_ca_file: String,
    /// An https:// image shown at the top of every issue and digest. Empty: none.
    pub logo_url: String,
    /// The sender's postal address, in the footer of every issue and digest
    /// (CAN-SPAM requires one on commercial mail). Empty: none.
    pub postal_address: String,
    /// DKIM signing; off unless configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dkim: Option<DkimSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DkimSettings {
    pub selector: String,
    pub domain: String,
    /// PEM file with the RSA private key.
    pub key_file: PathBuf,
}

/// How fast and how hard the delivery engine sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendingSettings {
    pub rate_per_second: u32,
    pub concurrency: u32,
    pub max_attempts: u32,
    pub retry_base_seconds: u64,
    pub lease_seconds: u64,
    pub pause_after_policy_failures: u32,
}

impl Default for SendingSettings {
    fn default() -> Self {
        Self {
            rate_per_second: 0,
            concurrency: 8,
            max_attempts: 8,
            retry_base_seconds: 30,
            lease_seconds: 60,
            pause_after_policy_failures: 3,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignupSettings {
    pub per_ip_per_minute: u32,
    pub confirm_ttl_hours: u32,
    pub confirm_mail_interval_minutes: u32,
    pub confirm_mails_per_day: u32,
    pub min_submit_seconds: u64,
    pub max_form_age_hours: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NewsletterSettings {
    pub slug: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Makes the newsletter a digest of stories (README, "Digests").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestSettings>,
}

/// `[newsletters.digest]`: when a digest goes out and where its stories come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DigestSettings {
    /// A cron expression in `timezone`. None: no automatic runs, one period per local day (`digest run` from cron).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA time zone name.
    pub timezone: String,
    /// RSS or Atom feeds, fetched every `fetch_interval_minutes` and before each run.
    pub feeds: Vec<String>,
    pub max_items: u32,
    /// No mail when nothing is new.
    pub skip_if_empty: bool,
    /// A scheduled run due longer ago than this (the box was down) is skipped, not sent late.
    pub max_lateness_minutes: u32,
    pub fetch_interval_minutes: u32,
    /// `{newsletter}` and `{date}` are filled in.
    pub subject: String,
    /// What readers may choose ("immediate", "daily", "weekly"); the first is the default.
    /// Empty: one rhythm for all, by `schedule`.
    pub rhythms: Vec<String>,
    /// Local hour (0–23, in each reader's zone) of daily and weekly digests.
    pub send_hour: u32,
    /// Day of weekly digests: mon, tue, wed, thu, fri, sat or sun.
    pub weekly_day: String,
    /// Stories arriving within this many minutes go to immediate readers in one mail.
    pub immediate_grouping_minutes: u32,
}

impl Default for DigestSettings {
    fn default() -> Self {
        Self {
            schedule: None,
            timezone: "UTC".into(),
            feeds: vec![],
            max_items: 20,
            skip_if_empty: true,
            max_lateness_minutes: 120,
            fetch_interval_minutes: 10,
            subject: "{newsletter} — {date}".into(),
            rhythms: vec![],
            send_hour: 7,
            weekly_day: "mon".into(),
            immediate_grouping_minutes: 5,
        }
    }
}

fn serialize_secret<S: serde::Serializer>(s: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
    use secrecy::ExposeSecret;
    ser.serialize_str(s.expose_secret())
}

fn serialize_secrets<S: serde::Serializer>(s: &[SecretString], ser: S) -> Result<S::Ok, S::Error> {
    use secrecy::ExposeSecret;
    ser.collect_seq(s.iter().map(|s| s.expose_secret().to_owned()))
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid"),
            public_url: "http://127.0.0.1:8080".into(),
            trusted_proxies: vec![],
            allowed_origins: vec![],
            api_allowed_origins: vec![],
            secret: SecretString::from(""),
            previous_secrets: vec![],
            header_read_timeout_seconds: 10,
            body_read_timeout_seconds: 30,
            keepalive_idle_seconds: 60,
            max_connections: 1024,
            api_tokens: vec![],
            metrics_listen: None,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("sqlite://data/bulletin.db"),
            max_connections: 8,
            connect_timeout_seconds: 10,
            lock_timeout_seconds: 10,
            statement_timeout_seconds: 600,
        }
    }
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            from: "Bulletin <newsletters@example.com>".into(),
            transport: TransportKind::File,
            file_dir: "data/outbox".into(),
            smtp_url: SecretString::from("smtp://127.0.0.1:25"),
            smtp_idle_seconds: 10,
            helo_name: String::new(),
            tls_ca_file: String::new(),
            logo_url: String::new(),
            postal_address: String::new(),
            dkim: None,
        }
    }
}

impl Default for SignupSettings {
    fn default() -> Self {
        Self {
            per_ip_per_minute: 20,
            confirm_ttl_hours: 72,
            confirm_mail_interval_minutes: 15,
            confirm_mails_per_day: 3,
            min_submit_seconds: 2,
            max_form_age_hours: 24,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        let newsletter = |slug: &str, name: &str, description: &str| NewsletterSettings {
            slug: slug.into(),
            name: name.into(),
            description: description.into(),
            digest: None,
        };
        Self {
            server: ServerSettings::default(),
            database: DatabaseSettings::default(),
            mail: MailSettings::default(),
            signup: SignupSettings::default(),
            sending: SendingSettings::default(),
            bounces: BounceSettings::default(),
            webhooks: WebhookSettings::default(),
            newsletters: vec![
                newsletter(
                    "morning-briefing",
                    "Morning Briefing",
                    "The stories you need to know, every weekday at 7am.",
                ),
                newsletter(
                    "explaining-ukraine",
                    "Explaining Ukraine",
                    "Our correspondents on the war, its causes and its consequences. Weekly.",
                ),
                newsletter(
                    "weekend-reads",
                    "Weekend Reads",
                    "Long reads and the week's best journalism, every Saturday.",
                ),
            ],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    Missing(PathBuf),
    #[error("{0}")]
    Load(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads `path` (which must exist) under environment overrides.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::Missing(path.to_owned()));
        }
        let figment = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file_exact(path))
            // Only BULLETIN_<SECTION>__<KEY> is a setting; other BULLETIN_* variables
            // (BULLETIN_CONFIG, the test harness's) are not ours to parse.
            .merge(Env::prefixed("BULLETIN_").filter(|key| key.as_str().contains("__")).split("__"));
        let mut settings: Settings = figment.extract().map_err(Box::new)?;
        let old_name = std::mem::take(&mut settings.server.api_allowed_origins);
        settings.server.allowed_origins.extend(old_name);
        settings.validate()?;
        let dir = std::path::absolute(path).ok().and_then(|p| p.parent().map(Path::to_owned)).unwrap_or_default();
        settings.anchor_paths(&dir);
        Ok(settings)
    }

    /// Makes the relative paths of the file (`sqlite://data/bulletin.db`,
    /// `mail.file_dir`) relative to the config file's directory, not to
    /// wherever the command happens to run: a cron job started elsewhere
    /// would otherwise open a new, empty database and "send" to nobody.
    pub fn anchor_paths(&mut self, dir: &Path) {
        let url = self.database.url.expose_secret();
        if let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let (file, query) = rest.split_once('?').map_or((rest, None), |(f, q)| (f, Some(q)));
            if !file.is_empty() && !file.starts_with(":memory:") && Path::new(file).is_relative() {
                let anchored = format!(
                    "sqlite://{}{}",
                    dir.join(file).display(),
                    query.map(|q| format!("?{q}")).unwrap_or_default()
                );
                self.database.url = SecretString::from(anchored);
            }
        }
        if self.mail.file_dir.is_relative() {
            self.mail.file_dir = dir.join(&self.mail.file_dir);
        }
    }

    /// Checks what serde cannot: cross-field rules and parseable strings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let url = self.server.public_url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return invalid(format!("server.public_url must start with http:// or https://, got {url:?}"));
        }
        let logo = &self.mail.logo_url;
        let usable = logo.is_empty() || (logo.starts_with("https://") && url::Url::parse(logo).is_ok());
        if !usable {
            return invalid(format!(
                "mail.logo_url: {logo:?} is not an https:// address (mail clients block images over plain http)"
            ));
        }
        for origin in &self.server.allowed_origins {
            let ok = (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin.ends_with('/')
                && axum::http::HeaderValue::from_str(origin).is_ok();
            if !ok {
                return invalid(format!(
                    "server.allowed_origins: {origin:?} is not an origin like \"https://news.example.org\""
                ));
            }
        }
        for (key, secs) in [
            ("server.header_read_timeout_seconds", self.server.header_read_timeout_seconds),
            ("server.body_read_timeout_seconds", self.server.body_read_timeout_seconds),
            ("server.keepalive_idle_seconds", self.server.keepalive_idle_seconds),
            ("database.connect_timeout_seconds", self.database.connect_timeout_seconds),
            ("database.lock_timeout_seconds", self.database.lock_timeout_seconds),
            ("database.statement_timeout_seconds", self.database.statement_timeout_seconds),
        ] {
            if secs == 0 {
                return invalid(format!("{key} must be at least 1"));
            }
        }
        if self.server.api_tokens.iter().any(|t| secrecy::ExposeSecret::expose_secret(t).trim().len() < 16) {
            return invalid(
                "server.api_tokens: each token must be at least 16 characters (make one with `openssl rand -hex 24`)"
                    .into(),
            );
        }
        if self.server.max_connections == 0 {
            return invalid("server.max_connections must be at least 1".into());
        }
        if self.mail.from.parse::<lettre::message::Mailbox>().is_err() {
            return invalid(format!(
                "mail.from is not a valid mailbox: {:?} (expected \"Name <address@example.com>\")",
                self.mail.from
            ));
        }
        if self.sending.max_attempts == 0 {
            return invalid("sending.max_attempts must be at least 1".into());
        }
        if self.sending.concurrency == 0 {
            return invalid("sending.concurrency must be at least 1".into());
        }
        if self.sending.lease_seconds < 5 {
            return invalid("sending.lease_seconds must be at least 5".into());
        }
        if self.signup.confirm_ttl_hours == 0 {
            return invalid("signup.confirm_ttl_hours must be at least 1".into());
        }
        let bounces = &self.bounces;
        if !bounces.return_path.is_empty() && bounces.return_path.parse::<lettre::Address>().is_err() {
            return invalid(format!(
                "bounces.return_path is not an address: {:?} (expected \"bounces@example.com\")",
                bounces.return_path
            ));
        }
        // `local+<delivery id>-<16 hex>` must fit the 64 characters of a local part.
        if bounces.return_path.split_once('@').is_some_and(|(local, _)| local.len() > 64 - 37) {
            return invalid("bounces.return_path: the part before @ may have at most 27 characters".into());
        }
        if !(0.0..1.0).contains(&bounces.pause_complaint_rate) {
            return invalid(
                "bounces.pause_complaint_rate must be a fraction from 0 up to 1, like 0.003 for 0.3 %".into(),
            );
        }
        let share = bounces.sender_refusal_warning_share;
        if !(share > 0.0 && share <= 1.0) {
            return invalid(format!(
                "bounces.sender_refusal_warning_share must be a fraction above 0 and at most 1, like 0.05 for 5 % (got {share})"
            ));
        }
        if bounces.sender_refusal_warning_min == 0 {
            return invalid("bounces.sender_refusal_warning_min must be at least 1".into());
        }
        if bounces.soft_bounce_limit == 0 || bounces.soft_bounce_days == 0 {
            return invalid("bounces.soft_bounce_limit and bounces.soft_bounce_days must be at least 1".into());
        }
        let token = self.webhooks.token.expose_secret();
        if !token.is_empty()
            && (token.len() < 24 || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return invalid(
                "webhooks.token must be at least 24 letters, digits, '-' or '_' (make one with `openssl rand -hex 24`)"
                    .into(),
            );
        }
        let basic = self.webhooks.basic_auth.expose_secret();
        if !basic.is_empty() && !basic.split_once(':').is_some_and(|(u, p)| !u.is_empty() && p.len() >= 16) {
            return invalid(
                "webhooks.basic_auth must be \"user:password\" with a password of at least 16 characters".into(),
            );
        }
        if let Some(metrics) = self.server.metrics_listen
            && metrics == self.server.listen
        {
            return invalid(
                "server.metrics_listen must differ from server.listen: metrics are served on their own address".into(),
            );
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections must be at least 1".into());
        }
        let mut seen = std::collections::HashSet::new();
        for n in &self.newsletters {
            if let Err(e) = NewsletterSlug::parse(&n.slug) {
                return invalid(format!("newsletters: {:?}: {e}", n.slug));
            }
            if !seen.insert(&n.slug) {
                return invalid(format!("newsletters: slug {:?} is declared twice", n.slug));
            }
            if n.name.trim().is_empty() {
                return invalid(format!("newsletters: {:?} needs a name", n.slug));
            }
            if let Some(digest) = &n.digest
                && let Err(e) = crate::digest::DigestPlan::from_settings(digest)
            {
                return invalid(format!("newsletters.{}.digest.{e}", n.slug));
            }
        }
        Ok(())
    }

    /// Why `public_url` will not do for real readers, if it will not: RFC 8058
    /// one-click unsubscribe needs HTTPS (Gmail ignores it over plain HTTP),
    /// so anything but a loopback test address wants `https://`.
    pub fn public_url_warning(&self) -> Option<String> {
        let url = url::Url::parse(self.public_url()).ok()?;
        let loopback = match url.host()? {
            url::Host::Domain(name) => name == "localhost" || name.ends_with(".localhost"),
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
        };
        (url.scheme() != "https" && !loopback).then(|| {
            format!(
                "server.public_url is {:?}: links in mail should use https://, because one-click unsubscribe \
                 (RFC 8058) requires it and Gmail ignores it otherwise; put Bulletin behind a TLS proxy and set \
                 public_url to its https:// address",
                self.public_url()
            )
        })
    }

    /// `public_url` without a trailing slash, ready to have paths appended.
    pub fn public_url(&self) -> &str {
        self.server.public_url.trim_end_matches('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Loading reads the process environment, which the Jail tests change:
    /// every test that loads runs inside a Jail, which serializes them.
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn isolated(test: impl FnOnce()) {
        figment::Jail::expect_with(|_| {
            test();
            Ok(())
        });
    }

    #[test]
    fn shipped_config_equals_defaults() {
        isolated(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
            let shipped = Settings::load(&dir.join("config.toml")).expect("config.toml loads");
            let mut defaults = Settings::default();
            defaults.anchor_paths(dir);
            assert_eq!(serde_json::to_value(&shipped).unwrap(), serde_json::to_value(&defaults).unwrap());
        });
    }

    #[test]
    fn unknown_keys_are_named() {
        isolated(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = write(dir.path(), "[server]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n");
            let err = Settings::load(&path).unwrap_err().to_string();
            assert!(err.contains("listne"), "{err}");
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "[database]\nurl = \"sqlite://a.db\"\n");
        figment::Jail::expect_with(|jail| {
            jail.set_env("BULLETIN_DATABASE__URL", "postgres://postgres@127.0.0.1/x");
            jail.set_env("BULLETIN_SIGNUP__PER_IP_PER_MINUTE", "5");
            jail.set_env("BULLETIN_SOMETHING_ELSE", "not a setting");
            let s = Settings::load(&path).expect("loads");
            assert_eq!(s.database.url.expose_secret(), "postgres://postgres@127.0.0.1/x");
            assert_eq!(s.signup.per_ip_per_minute, 5);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn unknown_environment_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "");
        figment::Jail::expect_with(|jail| {
            jail.set_env("BULLETIN_SIGNUP__PER_IP_PER_MINIT", "5");
            let err = Settings::load(&path).unwrap_err().to_string();
            assert!(err.contains("per_ip_per_minit"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_explained() {
        isolated(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = write(dir.path(), "[[newsletters]]\nslug = \"Bad Slug\"\nname = \"x\"\n");
            let err = Settings::load(&path).unwrap_err().to_string();
            assert!(err.contains("Bad Slug"), "{err}");
            let path = write(dir.path(), "[mail]\nfrom = \"not a mailbox\"\n");
            let err = Settings::load(&path).unwrap_err().to_string();
            assert!(err.contains("mail.from"), "{err}");
            let path = write(dir.path(), "[mail]\nlogo_url = \"http://news.example.org/logo.png\"\n");
            let err = Settings::load(&path).unwrap_err().to_string();
            assert!(err.contains("mail.logo_url"), "{err}");
            let path = write(dir.path(), "[server]\nkeepalive_idle_seconds = 0\n");
            let err = Settings::load(&path).unwrap_err().to_string();
            assert!(err.contains("server.keepalive_idle_seconds"), "{err}");
            let path = write(dir.path(), "[bounces]\nreturn_path = \"a-very-long-bounce-mailbox-name@example.com\"\n");
            let err = Settings::load(&path).unwrap_err().to_string();
            assert!(err.contains("bounces.return_path") && err.contains("27"), "{err}");
            for bad in [
                "sender_refusal_warning_share = 0.0",
                "sender_refusal_warning_share = 5",
                "sender_refusal_warning_min = 0",
            ] {
                let path = write(dir.path(), &format!("[bounces]\n{bad}\n"));
                let err = Settings::load(&path).unwrap_err().to_string();
                let key = bad.split(' ').next().unwrap();
                assert!(err.contains(&format!("bounces.{key}")), "{bad}: {err}");
            }
        });
    }

    #[test]
    fn relative_paths_are_the_config_files() {
        isolated(|| {
            let dir = tempfile::tempdir().unwrap();
            let path =
                write(dir.path(), "[database]\nurl = \"sqlite://data/b.db?mode=rwc\"\n[mail]\nfile_dir = \"out\"\n");
            let s = Settings::load(&path).unwrap();
            let db = format!("sqlite://{}?mode=rwc", dir.path().join("data/b.db").display());
            assert_eq!(s.database.url.expose_secret(), db);
            assert_eq!(s.mail.file_dir, dir.path().join("out"));
            for kept in ["sqlite:///var/lib/bulletin/b.db", "sqlite::memory:", "postgres://u@db/bulletin"] {
                let path = write(dir.path(), &format!("[database]\nurl = \"{kept}\"\n"));
                assert_eq!(Settings::load(&path).unwrap().database.url.expose_secret(), kept);
            }
        });
    }

    #[test]
    fn the_old_origins_key_is_still_read() {
        isolated(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = write(dir.path(), "[server]\napi_allowed_origins = [\"https://news.example.org\"]\n");
            let s = Settings::load(&path).expect("loads");
            assert_eq!(s.server.allowed_origins, ["https://news.example.org"]);
            let path = write(dir.path(), "[server]\nallowed_origins = [\"https://news.example.org/\"]\n");
            let err = Settings::load(&path).unwrap_err().to_string();
            assert!(err.contains("server.allowed_origins"), "{err}");
        });
    }

    #[test]
    fn plain_http_public_urls_are_warned_about_unless_loopback() {
        let mut s = Settings::default();
        for (url, warned) in [
            ("http://127.0.0.1:8080", false),
            ("http://localhost:8080/", false),
            ("http://[::1]:8080", false),
            ("https://news.example.org/newsletters", false),
            ("http://news.example.org", true),
            ("http://192.0.2.10:8080", true),
        ] {
            s.server.public_url = url.into();
            assert_eq!(s.public_url_warning().is_some(), warned, "{url}");
        }
    }

    #[test]
    fn digest_settings_are_checked_at_load() {
        isolated(|| {
            let dir = tempfile::tempdir().unwrap();
            let digest = |table: &str| {
                format!("[[newsletters]]\nslug = \"morning\"\nname = \"Morning\"\n[newsletters.digest]\n{table}\n")
            };
            for (table, key) in [
                ("schedule = \"every morning\"", "newsletters.morning.digest.schedule: \"every morning\""),
                ("timezone = \"Europe/Kiev2\"", "newsletters.morning.digest.timezone: \"Europe/Kiev2\""),
                ("feeds = [\"ftp://news.example.org/rss\"]", "newsletters.morning.digest.feeds: \"ftp://"),
                ("feeds = [\"/rss.xml\"]", "newsletters.morning.digest.feeds: \"/rss.xml\""),
                ("max_items = 0", "newsletters.morning.digest.max_items"),
                ("shedule = \"0 7 * * *\"", "shedule"),
            ] {
                let err = Settings::load(&write(dir.path(), &digest(table))).unwrap_err().to_string();
                assert!(err.contains(key), "{table}: {err}");
            }
            let ok = Settings::load(&write(
                dir.path(),
                &digest("schedule = \"0 7 * * 1-5\"\ntimezone = \"Europe/Kyiv\"\nfeeds = [\"https://news.example.org/rss/\"]"),
            ))
            .expect("a valid digest loads");
            assert_eq!(ok.newsletters[0].digest.as_ref().unwrap().max_items, 20);
            let err =
                Settings::load(&write(dir.path(), "[server]\napi_tokens = [\"short\"]\n")).unwrap_err().to_string();
            assert!(err.contains("server.api_tokens"), "{err}");
        });
    }
}
