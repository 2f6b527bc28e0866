//! What a running instance counts, for Prometheus: signups by outcome,
//! confirmations, unsubscribes, deliveries by result, SMTP reply classes,
//! the sending pace and HTTP latencies; and, read when scraped, the queue
//! and the database pools ([`exposition`] serves them).
//!
//! Each running instance has its own [`Metrics`] with its own registry, not
//! a process-wide recorder: several instances in one process (the
//! integration tests start many at once) each report only their own numbers.
//! Counting is an atomic add on a series found by a small label set of
//! `&'static str`s, so the hot path allocates nothing. No label carries an
//! address, a token or free text; a newsletter's slug is the most specific
//! thing one names.

pub mod exposition;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::extract::MatchedPath;
use axum::http::{Method, StatusCode};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::domain::{ConsentSource, NewsletterSlug};

/// How a signup request ended, as `bulletin_signups_total{outcome}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignupOutcome {
    /// Recorded (the reader is asked to confirm by mail).
    Accepted,
    /// Refused for what was sent: the address, the newsletters, a rhythm or zone, an unreadable body.
    Invalid,
    /// Refused by the per-IP limit (`signup.per_ip_per_minute`).
    RateLimited,
    /// The honeypot was filled in: thanked, and nothing recorded.
    Bot,
    /// The time-trap found the form sent back too fast or too late: asked to press once more.
    TimeTrap,
    /// Our fault (the database, most likely): answered 5xx.
    Error,
}

impl SignupOutcome {
    const ALL: [Self; 6] = [Self::Accepted, Self::Invalid, Self::RateLimited, Self::Bot, Self::TimeTrap, Self::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Invalid => "invalid",
            Self::RateLimited => "rate_limited",
            Self::Bot => "bot",
            Self::TimeTrap => "time_trap",
            Self::Error => "error",
        }
    }

    /// The outcome of a request answered with an error of `status`.
    pub fn of_error(status: StatusCode) -> Self {
        if status.is_server_error() { Self::Error } else { Self::Invalid }
    }
}

/// The kinds of mail, as the delivery and queue series name them.
pub const MAIL_KINDS: [&str; 3] = ["confirmation", "issue", "digest"];
/// How an attempt ended, as the ledger stores it (`Settlement::status`).
const DELIVERY_RESULTS: [&str; 6] = ["sent", "retry", "failed", "bounced", "ambiguous", "skipped"];
/// SMTP reply classes; `none` when the connection failed before any reply.
const REPLY_CLASSES: [&str; 4] = ["2xx", "4xx", "5xx", "none"];
/// Upper bounds of the HTTP latency buckets, in seconds.
const HTTP_BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SignupLabels {
    outcome: &'static str,
    via: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NewsletterLabels {
    newsletter: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UnsubscribeLabels {
    newsletter: String,
    way: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeliveryLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReplyLabels {
    class: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PoolStateLabels {
    pool: &'static str,
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HttpLabels {
    route: Route,
    method: &'static str,
    status: &'static str,
}

/// The route template a request matched (`/confirm/{token}`, never the
/// path), held as axum's own `MatchedPath`: an `Arc` to clone, no copy.
#[derive(Debug, Clone)]
struct Route(Option<MatchedPath>);

impl Route {
    fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl std::hash::Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// One database pool's connections, as [`crate::store::Store::pool_use`] reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// `read` and `write` on SQLite, `main` and `relaxed` on PostgreSQL.
    pub pool: &'static str,
    /// Connections open now.
    pub open: u32,
    /// Of those, waiting in the pool for a query.
    pub idle: u32,
    pub max: u32,
}

/// The text format a scrape is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4, which every scraper reads.
    Prometheus,
    /// OpenMetrics 1.0 text, for a scraper that asks for it.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the scraper's `Accept` names it, else the Prometheus text format.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// One instance's metrics; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Metrics(Arc<Series>);

struct Series {
    registry: Registry,
    signups: Family<SignupLabels, Counter>,
    confirmations: Family<NewsletterLabels, Counter>,
    unsubscribes: Family<UnsubscribeLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    smtp_replies: Family<ReplyLabels, Counter>,
    send_pace: Gauge<f64, AtomicU64>,
    send_connections: Gauge,
    queue: Family<KindLabels, Gauge>,
    pool_connections: Family<PoolStateLabels, Gauge>,
    pool_max: Family<PoolLabels, Gauge>,
    http: Family<HttpLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bulletin");
        let signups = Family::<SignupLabels, Counter>::default();
        registry.register(
            "signups",
            "Signup requests (form and API) by outcome: accepted, invalid, rate_limited, bot (honeypot), time_trap (asked to press again), error",
            signups.clone(),
        );
        let confirmations = Family::<NewsletterLabels, Counter>::default();
        registry.register(
            "confirmations",
            "Subscriptions confirmed by their reader, by newsletter",
            confirmations.clone(),
        );
        let unsubscribes = Family::<UnsubscribeLabels, Counter>::default();
        registry.register(
            "unsubscribes",
            "Subscriptions ended, by newsletter and way (one-click, unsubscribe-page, preferences, operator)",
            unsubscribes.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Delivery attempts by kind of mail and result (sent, retry, failed, bounced, ambiguous, skipped)",
            deliveries.clone(),
        );
        let smtp_replies = Family::<ReplyLabels, Counter>::default();
        registry.register(
            "smtp_replies",
            "SMTP replies to messages handed over, by class (none: the connection failed before a reply)",
            smtp_replies.clone(),
        );
        let send_pace = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "send_rate_limit_per_second",
            "The delivery engine's pace now, in messages a second: sending.rate_per_second, lower while the mail server has asked to slow down; 0 is no limit",
            send_pace.clone(),
        );
        let send_connections = Gauge::default();
        registry.register(
            "send_connections",
            "SMTP connections the delivery engine may hold now: sending.concurrency, fewer while the relay refuses more",
            send_connections.clone(),
        );
        let queue = Family::<KindLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Messages waiting to be sent or being sent, by kind of mail, read from the database when scraped",
            queue.clone(),
        );
        let pool_connections = Family::<PoolStateLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database connections open, by pool and state (idle or in_use)",
            pool_connections.clone(),
        );
        let pool_max = Family::<PoolLabels, Gauge>::default();
        registry.register("db_pool_max_connections", "The most connections each database pool opens", pool_max.clone());
        let http: Family<HttpLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(HTTP_BUCKETS));
        registry.register_with_unit(
            "http_request_duration",
            "HTTP requests on the public listener, by route template, method and status class",
            Unit::Seconds,
            http.clone(),
        );

        // Known series start at zero, so a rate is defined from the first scrape.
        for outcome in SignupOutcome::ALL {
            // The API has neither honeypot nor time-trap.
            let api = !matches!(outcome, SignupOutcome::Bot | SignupOutcome::TimeTrap);
            for via in [Some(ConsentSource::Form), api.then_some(ConsentSource::Api)].into_iter().flatten() {
                let _ = signups.get_or_create(&SignupLabels { outcome: outcome.as_str(), via: via.as_str() });
            }
        }
        for kind in MAIL_KINDS {
            for result in DELIVERY_RESULTS {
                let _ = deliveries.get_or_create(&DeliveryLabels { kind, result });
            }
        }
        for class in REPLY_CLASSES {
            let _ = smtp_replies.get_or_create(&ReplyLabels { class });
        }
        Self(Arc::new(Series {
            registry,
            signups,
            confirmations,
            unsubscribes,
            deliveries,
            smtp_replies,
            send_pace,
            send_connections,
            queue,
            pool_connections,
            pool_max,
            http,
        }))
    }

    /// A signup request through `via` (the form or the API) ended with `outcome`.
    pub fn signup(&self, via: ConsentSource, outcome: SignupOutcome) {
        self.0.signups.get_or_create(&SignupLabels { outcome: outcome.as_str(), via: via.as_str() }).inc();
    }

    /// A reader confirmed their subscription to `newsletter`.
    pub fn confirmed(&self, newsletter: &NewsletterSlug) {
        self.0.confirmations.get_or_create(&NewsletterLabels { newsletter: newsletter.to_string() }).inc();
    }

    /// A subscription to `newsletter` ended, the way `way` records in the consent log.
    pub fn unsubscribed(&self, newsletter: &NewsletterSlug, way: ConsentSource) {
        let labels = UnsubscribeLabels { newsletter: newsletter.to_string(), way: way.as_str() };
        self.0.unsubscribes.get_or_create(&labels).inc();
    }

    /// An attempt at a message of `kind` (one of [`MAIL_KINDS`]) ended with `result` (a ledger status).
    pub fn delivery(&self, kind: &'static str, result: &'static str) {
        self.0.deliveries.get_or_create(&DeliveryLabels { kind, result }).inc();
    }

    /// The mail server answered a message with a reply of `class` (`2xx`, `4xx`, `5xx`, `none`).
    pub fn smtp_reply(&self, class: &'static str) {
        self.0.smtp_replies.get_or_create(&ReplyLabels { class }).inc();
    }

    /// The gauge the delivery engine's throttle keeps at its pace.
    pub fn send_pace(&self) -> Gauge<f64, AtomicU64> {
        self.0.send_pace.clone()
    }

    /// The gauge the delivery engine keeps at the number of connections it may hold.
    pub fn send_connections(&self) -> Gauge {
        self.0.send_connections.clone()
    }

    /// A request on the public listener matched `route` (`None`: no route) and was answered `status`.
    pub fn http_request(&self, route: Option<&MatchedPath>, method: &Method, status: StatusCode, took: Duration) {
        let labels =
            HttpLabels { route: Route(route.cloned()), method: method_label(method), status: status_class(status) };
        self.0.http.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// The messages waiting, by kind, as just read from the database; `None`:
    /// they could not be read, and the series are left out until they can.
    pub fn queue_depth(&self, depth: Option<&[(String, i64)]>) {
        let Some(depth) = depth else {
            self.0.queue.clear();
            return;
        };
        for kind in MAIL_KINDS {
            let waiting = depth.iter().filter(|(k, _)| k == kind).map(|(_, n)| *n).sum();
            self.0.queue.get_or_create(&KindLabels { kind }).set(waiting);
        }
    }

    /// The database pools' connections, as just read.
    pub fn pools(&self, pools: &[PoolUse]) {
        for p in pools {
            let open = i64::from(p.open);
            let idle = i64::from(p.idle).min(open);
            let connections = &self.0.pool_connections;
            connections.get_or_create(&PoolStateLabels { pool: p.pool, state: "idle" }).set(idle);
            connections.get_or_create(&PoolStateLabels { pool: p.pool, state: "in_use" }).set(open - idle);
            self.0.pool_max.get_or_create(&PoolLabels { pool: p.pool }).set(i64::from(p.max));
        }
    }

    /// Every series in `format`.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let encoded = match format {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut out, &self.0.registry),
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &self.0.registry),
        };
        // Writing into a String cannot fail; the encoders return fmt::Result only for other writers.
        encoded.expect("encoding into a String");
        out
    }
}

/// The method as a label: the ones the routes answer, anything else as `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slug(s: &str) -> NewsletterSlug {
        NewsletterSlug::parse(s).unwrap()
    }

    #[test]
    fn prometheus_text_has_help_type_and_the_counted_series() {
        let metrics = Metrics::new();
        metrics.signup(ConsentSource::Form, SignupOutcome::Accepted);
        metrics.signup(ConsentSource::Form, SignupOutcome::Accepted);
        metrics.confirmed(&slug("weekly"));
        metrics.unsubscribed(&slug("weekly"), ConsentSource::OneClick);
        metrics.delivery("issue", "sent");
        metrics.smtp_reply("2xx");
        metrics.send_pace().set(12.5);
        metrics.send_connections().set(2);
        metrics.queue_depth(Some(&[("issue".to_owned(), 7)]));
        metrics.pools(&[PoolUse { pool: "main", open: 3, idle: 1, max: 8 }]);
        let text = metrics.encode(Format::Prometheus);
        for line in [
            "# HELP bulletin_signups_total Signup requests",
            "# TYPE bulletin_signups_total counter",
            "bulletin_signups_total{outcome=\"accepted\",via=\"form\"} 2",
            "bulletin_signups_total{outcome=\"rate_limited\",via=\"api\"} 0",
            "bulletin_confirmations_total{newsletter=\"weekly\"} 1",
            "bulletin_unsubscribes_total{newsletter=\"weekly\",way=\"one-click\"} 1",
            "bulletin_deliveries_total{kind=\"issue\",result=\"sent\"} 1",
            "bulletin_deliveries_total{kind=\"digest\",result=\"bounced\"} 0",
            "bulletin_smtp_replies_total{class=\"2xx\"} 1",
            "# TYPE bulletin_send_rate_limit_per_second gauge",
            "bulletin_send_rate_limit_per_second 12.5",
            "bulletin_send_connections 2",
            "bulletin_queue_depth{kind=\"issue\"} 7",
            "bulletin_queue_depth{kind=\"confirmation\"} 0",
            "bulletin_db_pool_connections{pool=\"main\",state=\"idle\"} 1",
            "bulletin_db_pool_connections{pool=\"main\",state=\"in_use\"} 2",
            "bulletin_db_pool_max_connections{pool=\"main\"} 8",
        ] {
            assert!(text.lines().any(|l| l.starts_with(line)), "no line {line:?} in:\n{text}");
        }
        assert!(!text.contains("# EOF"), "the Prometheus format has no EOF marker");
    }

    #[test]
    fn http_histogram_by_route_template_and_status_class() {
        let metrics = Metrics::new();
        metrics.http_request(None, &Method::GET, StatusCode::NOT_FOUND, Duration::from_millis(3));
        let text = metrics.encode(Format::Prometheus);
        assert!(text.contains("# TYPE bulletin_http_request_duration_seconds histogram"), "{text}");
        assert!(
            text.contains(
                "bulletin_http_request_duration_seconds_bucket{route=\"unmatched\",method=\"GET\",status=\"4xx\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "bulletin_http_request_duration_seconds_bucket{route=\"unmatched\",method=\"GET\",status=\"4xx\",le=\"0.0025\"} 0"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "bulletin_http_request_duration_seconds_count{route=\"unmatched\",method=\"GET\",status=\"4xx\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn openmetrics_on_request() {
        let metrics = Metrics::new();
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert_eq!(Format::from_accept(Some("text/plain;version=0.0.4;q=0.3,*/*;q=0.2")), Format::Prometheus);
        let prometheus_asks = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3";
        assert_eq!(Format::from_accept(Some(prometheus_asks)), Format::OpenMetrics);
        let text = metrics.encode(Format::OpenMetrics);
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn unreadable_queue_leaves_the_series_out() {
        let metrics = Metrics::new();
        metrics.queue_depth(Some(&[]));
        assert!(metrics.encode(Format::Prometheus).contains("bulletin_queue_depth{kind=\"digest\"} 0"));
        metrics.queue_depth(None);
        assert!(!metrics.encode(Format::Prometheus).contains("bulletin_queue_depth{"));
    }

    #[test]
    fn instances_count_apart() {
        let (one, two) = (Metrics::new(), Metrics::new());
        one.delivery("confirmation", "sent");
        assert!(one.encode(Format::Prometheus).contains("kind=\"confirmation\",result=\"sent\"} 1"));
        assert!(two.encode(Format::Prometheus).contains("kind=\"confirmation\",result=\"sent\"} 0"));
    }
}
