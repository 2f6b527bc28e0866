//! Putting the parts together: the same start-up for `bulletin serve` and the tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use rand::RngCore;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::clock::{Clock, Timestamp};
use crate::config::Settings;
use crate::delivery::{Composer, Engine, Pace};
use crate::digest::Digests;
use crate::digest::feed::{FeedFetcher, FetchLimits};
use crate::domain::{LinkKeys, Newsletter, ReturnPath};
use crate::feedback::Feedback;
use crate::feedback::sns::SnsVerifier;
use crate::feedback::webhook::WebhookReceiver;
use crate::mail::{Mailer, Outbound};
use crate::metrics::{Metrics, exposition};
use crate::signup::{Catalog, Links, RhythmOffers, Signup};
use crate::store::{Deadlines, MailCap, Store};
use crate::web::{self, AppState, ConnectionLimits, Shared, client::IpLimiter};

/// Opens the database named by the settings and brings its schema up to date.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    Ok(open_and_migrate(settings).await?.0)
}

/// Opens the database and brings its schema up to date; also returns the
/// migrations applied now, for `bulletin migrate` to say what it did.
pub async fn open_and_migrate(settings: &Settings) -> anyhow::Result<(Store, Vec<String>)> {
    let database = &settings.database;
    let store =
        Store::connect_with(database.url.expose_secret(), database.max_connections, Deadlines::from_settings(database))
            .await
            .context("could not open the database (database.url)")?;
    let applied = store.migrate().await.context("could not migrate the database")?;
    Ok((store, applied))
}

/// The signing keys: the configured secret, or one generated on first run and kept in the database.
async fn link_keys(settings: &Settings, store: &Store) -> anyhow::Result<LinkKeys> {
    let configured = settings.server.secret.expose_secret();
    let current = if configured.is_empty() {
        store
            .setting_or_insert("link_secret", || {
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                base64::engine::general_purpose::STANDARD.encode(bytes)
            })
            .await
            .context("could not read or create the link secret")?
    } else {
        configured.to_owned()
    };
    let previous = settings.server.previous_secrets.iter().map(|s| s.expose_secret().as_bytes().to_vec()).collect();
    Ok(LinkKeys::new(current.into_bytes(), previous))
}

/// The rules for bounces and complaints over the configured database, for
/// `bulletin bounces ingest`: nothing else is started.
pub async fn feedback(settings: &Settings, clock: Clock) -> anyhow::Result<Feedback> {
    let store = open_store(settings).await?;
    let keys = link_keys(settings, &store).await?;
    Ok(Feedback::new(store, keys, clock, settings.bounces.clone())
        .with_message_id_domain(&message_id_domain(settings)?))
}

/// The domain of `mail.from`, which Bulletin's Message-IDs are on.
fn message_id_domain(settings: &Settings) -> anyhow::Result<String> {
    let from: lettre::message::Mailbox = settings.mail.from.parse().context("mail.from is not an address")?;
    Ok(from.email.domain().to_owned())
}

/// Stores the configured newsletters (a newsletter added since another
/// process started is then found by it in the database) and holds the
/// unsent issues of those taken out of the configuration. Returns the
/// configured newsletters in configuration order.
pub async fn sync_newsletters(settings: &Settings, store: &Store, now: Timestamp) -> anyhow::Result<Vec<Newsletter>> {
    let newsletters = store
        .sync_newsletters(&settings.newsletters, now)
        .await
        .context("could not store the configured newsletters")?;
    crate::delivery::hold_unconfigured(store, &newsletters)
        .await
        .context("could not hold the issues of newsletters no longer configured")?;
    Ok(newsletters)
}

/// How often a running instance looks whether its configuration file changed.
const CONFIG_CHECK: Duration = Duration::from_secs(2);

/// Follows the configuration file under a running `serve` or `worker`: when
/// its text changes, or on SIGHUP, its newsletters are stored again and the
/// issues of any taken out are held (see [`sync_newsletters`]), with one log
/// line. Everything else is read once, at start. A file that no longer
/// loads changes nothing and is logged. Ends when `stop` turns true.
pub async fn follow_configuration(path: PathBuf, store: Store, clock: Clock, mut stop: watch::Receiver<bool>) {
    let mut seen = tokio::fs::read(&path).await.ok();
    let mut hangup = Hangup::new();
    let mut every = tokio::time::interval(CONFIG_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let asked = tokio::select! {
            _ = every.tick() => false,
            _ = hangup.recv() => true,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let text = tokio::fs::read(&path).await.ok();
        if !asked && text == seen {
            continue;
        }
        seen = text;
        let stored = match Settings::load(&path) {
            Ok(settings) => sync_newsletters(&settings, &store, clock.now()).await,
            Err(e) => Err(anyhow::Error::from(e)),
        };
        match stored {
            Ok(newsletters) => {
                let slugs: Vec<String> = newsletters.iter().map(|n| n.slug.to_string()).collect();
                tracing::info!(
                    file = %path.display(),
                    newsletters = %slugs.join(","),
                    "configuration read again: its newsletters are stored and the issues of any taken out are held; other settings take effect at restart"
                );
            }
            Err(e) => tracing::error!(
                file = %path.display(),
                error = %format!("{e:#}"),
                "the configuration changed but was not applied; the running one stays until it is fixed"
            ),
        }
    }
}

/// SIGHUP, the usual "read your configuration again" (`systemctl reload`).
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Self {
        #[cfg(unix)]
        let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        Self {
            #[cfg(unix)]
            signal,
        }
    }

    /// The next SIGHUP; never where there is none.
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut()
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending().await
    }
}

/// Everything a running instance is made of, before it listens.
pub struct Services {
    pub store: Store,
    pub signup: Signup,
    pub engine: Engine,
    pub composer: Composer,
    pub digests: Digests,
    /// The rules for bounces and complaints, for `bounces ingest` and the webhooks.
    pub feedback: Feedback,
    pub mail_queued: Arc<Notify>,
    /// This instance's counters, served on `server.metrics_listen` when it is set.
    pub metrics: Metrics,
}

pub async fn services(settings: &Settings, clock: Clock) -> anyhow::Result<Services> {
    let store = open_store(settings).await?;
    let newsletters = sync_newsletters(settings, &store, clock.now()).await?;
    let catalog = Arc::new(Catalog::new(newsletters));
    let links = Links::new(settings.public_url(), link_keys(settings, &store).await?);
    let mailer = Mailer::from_settings(&settings.mail)?;
    let outbound = Outbound::from_settings(&settings.mail)?;
    let mail_queued = Arc::new(Notify::new());
    let cap = MailCap {
        min_interval_secs: i64::from(settings.signup.confirm_mail_interval_minutes) * 60,
        per_day: i64::from(settings.signup.confirm_mails_per_day),
    };
    let fetcher = FeedFetcher::new(FetchLimits::default()).context("could not set up the feed fetcher")?;
    let digests = Digests::new(store.clone(), &catalog, &settings.newsletters, fetcher, clock.clone());
    digests.settle_rhythms().await.context("could not check readers' rhythms against the configuration")?;
    let offers = RhythmOffers::new(&catalog, &digests);
    let metrics = Metrics::new();
    let signup =
        Signup::new(store.clone(), catalog.clone(), links.clone(), clock.clone(), cap, offers, mail_queued.clone())
            .counted(metrics.clone());
    let feedback = Feedback::new(store.clone(), links.keys().clone(), clock.clone(), settings.bounces.clone())
        .with_message_id_domain(&message_id_domain(settings)?);
    let composer =
        Composer::new(store.clone(), mailer, links, catalog.clone(), clock.clone(), settings.signup.confirm_ttl_hours)
            .with_return_path(ReturnPath::parse(&settings.bounces.return_path));
    let pace = Pace::from(&settings.sending);
    let engine = Engine::new(store.clone(), outbound, composer.clone(), clock, pace, metrics.clone())
        .yielding_to(signup.backlog())
        .warning_on_sender_refusals(settings.bounces.refusal_warning());
    Ok(Services { store, signup, engine, composer, digests, feedback, mail_queued, metrics })
}

/// Binds `server.metrics_listen`, when set, and returns its address and the
/// task serving `GET /metrics` there until `stop` turns true.
pub async fn serve_metrics(
    settings: &Settings,
    services: &Services,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<(SocketAddr, JoinHandle<()>)>> {
    let Some(listener) = exposition::bind(&settings.server).await? else { return Ok(None) };
    let addr = listener.local_addr()?;
    let exporter = exposition::Exporter { metrics: services.metrics.clone(), store: services.store.clone() };
    Ok(Some((addr, tokio::spawn(exposition::serve(listener, exporter, &settings.server, stop)))))
}

/// A serving instance: HTTP, the delivery engine, the digest schedules and the limiter pruner.
pub struct Running {
    pub addr: SocketAddr,
    /// Where `GET /metrics` is served; `None` without `server.metrics_listen`.
    pub metrics_addr: Option<SocketAddr>,
    pub store: Store,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// What a test may set that configuration may not.
#[derive(Clone, Default)]
pub struct StartOptions {
    /// The client that fetches SNS signing certificates and confirms SNS
    /// subscriptions. Default: [`SnsVerifier::client`], for the public Internet.
    /// Tests pass one that resolves `sns.<region>.amazonaws.com` to a local
    /// server and trusts its CA; the host rule itself is the same.
    pub sns_client: Option<reqwest::Client>,
}

/// Starts serving on `listener`; `stop` (or dropping the process) ends it.
pub async fn start(settings: &Settings, clock: Clock, listener: TcpListener) -> anyhow::Result<Running> {
    start_with(settings, clock, listener, StartOptions::default()).await
}

/// [`start`] with options only tests set.
pub async fn start_with(
    settings: &Settings,
    clock: Clock,
    listener: TcpListener,
    options: StartOptions,
) -> anyhow::Result<Running> {
    let sns_client = match options.sns_client {
        Some(client) => client,
        None => SnsVerifier::client().context("could not set up the HTTP client for Amazon SNS")?,
    };
    let sns = SnsVerifier::new(sns_client, &settings.webhooks.ses_topic_arns, clock.clone());
    let services = services(settings, clock).await?;
    let webhooks = web::WebhookAccess::new(&settings.webhooks, WebhookReceiver::new(services.feedback.clone(), sns));
    let addr = listener.local_addr()?;
    let (shutdown, stopped) = watch::channel(false);
    let mut tasks = vec![];
    let metrics_addr = serve_metrics(settings, &services, stopped.clone()).await?.map(|(addr, task)| {
        tasks.push(task);
        addr
    });
    let limiter = IpLimiter::per_minute(settings.signup.per_ip_per_minute).map(Arc::new);
    let allowed_origins: Vec<_> =
        settings.server.allowed_origins.iter().filter_map(|o| axum::http::HeaderValue::from_str(o).ok()).collect();
    let state = AppState::new(Shared {
        signup: services.signup,
        digests: services.digests.clone(),
        store: services.store.clone(),
        body_read_timeout: Duration::from_secs(settings.server.body_read_timeout_seconds),
        limiter: limiter.clone(),
        api_tokens: web::ApiTokens::new(&settings.server.api_tokens),
        webhooks,
        box_policy: web::box_policy(&allowed_origins),
        allowed_origins: allowed_origins.into(),
        trusted_proxies: settings.server.trusted_proxies.clone().into(),
        form_min_secs: settings.signup.min_submit_seconds,
        form_max_age_secs: settings.signup.max_form_age_hours * 3600,
        metrics: services.metrics.clone(),
    });

    let limits = ConnectionLimits {
        header_read: Duration::from_secs(settings.server.header_read_timeout_seconds),
        keepalive_idle: Duration::from_secs(settings.server.keepalive_idle_seconds),
        max_connections: settings.server.max_connections as usize,
    };
    tasks.push(tokio::spawn(web::serve(listener, web::router(state), limits, stopped.clone())));
    tasks.push(tokio::spawn(services.digests.schedule(services.mail_queued.clone(), stopped.clone())));
    tasks.push(tokio::spawn(services.engine.run(services.mail_queued, stopped.clone())));
    if let Some(limiter) = limiter {
        let mut prune_stop = stopped.clone();
        tasks.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = every.tick() => limiter.prune(),
                    _ = prune_stop.wait_for(|stop| *stop) => break,
                }
            }
        }));
    }
    Ok(Running { addr, metrics_addr, store: services.store, shutdown, tasks })
}

impl Running {
    /// Stops accepting, lets requests and the mail in hand finish, then returns.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            if tokio::time::timeout(Duration::from_secs(10), task).await.is_err() {
                tracing::warn!("a task did not stop within 10 s");
            }
        }
        self.store.close().await;
    }
}
