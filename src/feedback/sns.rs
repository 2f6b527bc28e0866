//! Amazon SNS messages, trusted only once their signature verifies.
//!
//! SNS signs every message it posts with RSA (PKCS#1 v1.5; SHA-1 for
//! `SignatureVersion` 1, SHA-256 for 2) over a canonical text of its fields,
//! and names the certificate to check it with in `SigningCertURL`. Anyone can
//! post a message naming a certificate of their own, so the certificate is
//! fetched only from `https://sns.<region>.amazonaws.com/….pem` (or
//! `.amazonaws.com.cn`): its trust comes from that HTTPS fetch from Amazon's
//! host, as in AWS's own SDKs. No redirect is followed. Certificates are kept
//! by URL (a bounded cache, each until it expires), so a burst of bounces costs
//! one fetch. A subscription is confirmed by a GET of its `SubscribeURL`, which
//! must pass the same host rule.
//!
//! Nothing here panics or reads more than it bounds; every fetch has a deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use url::Url;

use crate::clock::Clock;

/// How long one certificate fetch or subscription confirmation may take, all in.
const FETCH_DEADLINE: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A signing certificate is under 2 KiB; anything past this is not one.
const CERT_MAX_BYTES: usize = 64 * 1024;
/// Amazon signs with a handful of certificates at a time; this bounds what a
/// stream of messages naming distinct (valid-host) URLs can make us keep.
const CACHE_ENTRIES: usize = 32;

const USER_AGENT: &str = concat!("Bulletin/", env!("CARGO_PKG_VERSION"), " (SNS webhook receiver)");

/// One message as SNS posts it (the JSON body of the HTTP POST).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnsMessage {
    #[serde(rename = "Type")]
    pub kind: String,
    pub message_id: String,
    pub topic_arn: String,
    #[serde(default)]
    pub subject: Option<String>,
    pub message: String,
    pub timestamp: String,
    pub signature_version: String,
    pub signature: String,
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
    #[serde(rename = "SubscribeURL", default)]
    pub subscribe_url: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
}

/// What an SNS message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnsKind {
    Notification,
    SubscriptionConfirmation,
    UnsubscribeConfirmation,
}

impl SnsMessage {
    /// Reads the POSTed body; `Err` says what is missing or broken, in one line.
    pub fn parse(body: &[u8]) -> Result<Self, SnsError> {
        serde_json::from_slice(body).map_err(|e| SnsError::Malformed(e.to_string()))
    }

    pub fn kind(&self) -> Result<SnsKind, SnsError> {
        match self.kind.as_str() {
            "Notification" => Ok(SnsKind::Notification),
            "SubscriptionConfirmation" => Ok(SnsKind::SubscriptionConfirmation),
            "UnsubscribeConfirmation" => Ok(SnsKind::UnsubscribeConfirmation),
            other => Err(SnsError::Malformed(format!("unknown SNS message Type {:?}", truncate(other)))),
        }
    }

    /// The text SNS signed: each field as "Name\nValue\n", in AWS's order.
    pub fn canonical(&self) -> Result<String, SnsError> {
        let mut text = String::with_capacity(self.message.len() + 512);
        let mut field = |name: &str, value: &str| {
            text.push_str(name);
            text.push('\n');
            text.push_str(value);
            text.push('\n');
        };
        match self.kind()? {
            SnsKind::Notification => {
                field("Message", &self.message);
                field("MessageId", &self.message_id);
                if let Some(subject) = &self.subject {
                    field("Subject", subject);
                }
                field("Timestamp", &self.timestamp);
                field("TopicArn", &self.topic_arn);
                field("Type", &self.kind);
            }
            SnsKind::SubscriptionConfirmation | SnsKind::UnsubscribeConfirmation => {
                let missing = |name: &str| SnsError::Malformed(format!("a {} has no {name}", self.kind));
                let subscribe_url = self.subscribe_url.as_deref().ok_or_else(|| missing("SubscribeURL"))?;
                let token = self.token.as_deref().ok_or_else(|| missing("Token"))?;
                field("Message", &self.message);
                field("MessageId", &self.message_id);
                field("SubscribeURL", subscribe_url);
                field("Timestamp", &self.timestamp);
                field("Token", token);
                field("TopicArn", &self.topic_arn);
                field("Type", &self.kind);
            }
        }
        Ok(text)
    }
}

/// Why a message was not taken. `Malformed` is the sender's bad request;
/// `Unavailable` is ours or Amazon's (worth a retry); the rest are refusals.
#[derive(Debug, thiserror::Error)]
pub enum SnsError {
    #[error("the body is not an SNS message: {0}")]
    Malformed(String),
    #[error("SigningCertURL is not an https://sns.<region>.amazonaws.com/….pem address")]
    CertUrl,
    #[error("SubscribeURL is not an https://sns.<region>.amazonaws.com/ address")]
    SubscribeUrl,
    #[error("SignatureVersion {0:?} is not 1 or 2")]
    SignatureVersion(String),
    #[error("the topic is not one of webhooks.ses_topic_arns")]
    Topic,
    #[error("the signing certificate is not usable: {0}")]
    Certificate(String),
    #[error("the signature does not verify")]
    Signature,
    #[error("could not reach Amazon SNS: {0}")]
    Unavailable(String),
}

/// Whether `url` is `https://sns.<region>.amazonaws.com[.cn]/…` with nothing
/// that could point elsewhere (no user, no port other than 443).
pub fn is_sns_url(url: &Url) -> bool {
    url.scheme() == "https"
        && url.username().is_empty()
        && url.password().is_none()
        && url.port().is_none()
        && matches!(url.host(), Some(url::Host::Domain(host)) if is_sns_host(host))
}

fn is_sns_host(host: &str) -> bool {
    let Some(rest) = host.strip_prefix("sns.") else { return false };
    let region = rest.strip_suffix(".amazonaws.com").or_else(|| rest.strip_suffix(".amazonaws.com.cn"));
    region.is_some_and(|r| {
        !r.is_empty()
            && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !r.starts_with('-')
            && !r.ends_with('-')
    })
}

/// A signing certificate's public key, as ring reads it, and when it stops being valid.
struct SigningKey {
    /// The PKCS#1 `RSAPublicKey` inside the certificate's SubjectPublicKeyInfo.
    rsa_public_key: Arc<[u8]>,
    not_after: i64,
}

/// Verifies SNS messages and confirms subscriptions.
#[derive(Clone)]
pub struct SnsVerifier {
    http: reqwest::Client,
    topics: Arc<[String]>,
    clock: Clock,
    keys: Arc<Mutex<HashMap<String, SigningKey>>>,
}

impl SnsVerifier {
    /// The client fetches certificates and confirms subscriptions; production
    /// passes [`SnsVerifier::client`], tests one that resolves
    /// `sns.<region>.amazonaws.com` to a local server they trust.
    /// `topics` empty: any topic whose message verifies.
    pub fn new(http: reqwest::Client, topics: &[String], clock: Clock) -> Self {
        Self { http, topics: topics.into(), clock, keys: Arc::default() }
    }

    /// The client for the public Internet: webpki roots, no redirects, deadlines.
    pub fn client() -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(FETCH_DEADLINE)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .https_only(true)
            .build()
    }

    /// Parses `body` and checks it came from SNS: certificate host, topic,
    /// then the signature. Nothing is fetched for a message that fails the first two.
    pub async fn verify(&self, body: &[u8]) -> Result<SnsMessage, SnsError> {
        let message = SnsMessage::parse(body)?;
        let canonical = message.canonical()?;
        let algorithm: &'static ring::signature::RsaParameters = match message.signature_version.as_str() {
            "1" => &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            "2" => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            other => return Err(SnsError::SignatureVersion(truncate(other))),
        };
        let cert_url = Url::parse(&message.signing_cert_url).map_err(|_| SnsError::CertUrl)?;
        if !is_sns_url(&cert_url) || !cert_url.path().ends_with(".pem") {
            return Err(SnsError::CertUrl);
        }
        if !self.topics.is_empty() && !self.topics.contains(&message.topic_arn) {
            return Err(SnsError::Topic);
        }
        let signature = base64::engine::general_purpose::STANDARD
            .decode(message.signature.trim())
            .map_err(|_| SnsError::Signature)?;
        let key = self.signing_key(&cert_url).await?;
        ring::signature::UnparsedPublicKey::new(algorithm, &key[..])
            .verify(canonical.as_bytes(), &signature)
            .map_err(|_| SnsError::Signature)?;
        Ok(message)
    }

    /// Confirms a verified `SubscriptionConfirmation` by a GET of its SubscribeURL.
    pub async fn confirm(&self, message: &SnsMessage) -> Result<(), SnsError> {
        let url = message.subscribe_url.as_deref().ok_or(SnsError::SubscribeUrl)?;
        let url = Url::parse(url).map_err(|_| SnsError::SubscribeUrl)?;
        if !is_sns_url(&url) {
            return Err(SnsError::SubscribeUrl);
        }
        let response = self.get(&url).await?;
        if !response.status().is_success() {
            return Err(SnsError::Unavailable(format!(
                "confirming the subscription answered HTTP {}",
                response.status()
            )));
        }
        Ok(())
    }

    async fn signing_key(&self, url: &Url) -> Result<Arc<[u8]>, SnsError> {
        let now = self.clock.now();
        let cached = self
            .keys
            .lock()
            .expect("key cache")
            .get(url.as_str())
            .filter(|k| k.not_after > now)
            .map(|k| k.rsa_public_key.clone());
        if let Some(key) = cached {
            return Ok(key);
        }
        let pem = self.fetch_certificate(url).await?;
        let key = read_certificate(&pem, now)?;
        let rsa_public_key = key.rsa_public_key.clone();
        let mut keys = self.keys.lock().expect("key cache");
        keys.retain(|_, k| k.not_after > now);
        if keys.len() >= CACHE_ENTRIES
            && let Some(any) = keys.keys().next().cloned()
        {
            keys.remove(&any);
        }
        keys.insert(url.as_str().to_owned(), key);
        Ok(rsa_public_key)
    }

    async fn fetch_certificate(&self, url: &Url) -> Result<Vec<u8>, SnsError> {
        tracing::info!(%url, "fetching an SNS signing certificate");
        let fetch = async {
            let mut response = self.get(url).await?;
            if !response.status().is_success() {
                return Err(SnsError::Unavailable(format!("the certificate URL answered HTTP {}", response.status())));
            }
            let too_large = || SnsError::Certificate(format!("larger than {CERT_MAX_BYTES} bytes"));
            if response.content_length().is_some_and(|n| n > CERT_MAX_BYTES as u64) {
                return Err(too_large());
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| SnsError::Unavailable(innermost(&e)))? {
                if body.len() + chunk.len() > CERT_MAX_BYTES {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        tokio::time::timeout(FETCH_DEADLINE, fetch).await.map_err(|_| {
            SnsError::Unavailable(format!("the certificate did not arrive within {} s", FETCH_DEADLINE.as_secs()))
        })?
    }

    /// One GET that must be answered by the URL asked, not a redirect elsewhere.
    async fn get(&self, url: &Url) -> Result<reqwest::Response, SnsError> {
        let send = self.http.get(url.clone()).send();
        let response = tokio::time::timeout(FETCH_DEADLINE, send)
            .await
            .map_err(|_| SnsError::Unavailable(format!("no answer within {} s", FETCH_DEADLINE.as_secs())))?
            .map_err(|e| SnsError::Unavailable(innermost(&e)))?;
        if response.status().is_redirection() || response.url() != url {
            return Err(SnsError::Unavailable("answered with a redirect, which is not followed".into()));
        }
        Ok(response)
    }
}

/// Reads a PEM certificate: it must be valid at `now` and hold an RSA key.
fn read_certificate(pem: &[u8], now: i64) -> Result<SigningKey, SnsError> {
    use x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION;
    let bad = |why: &str| SnsError::Certificate(why.to_owned());
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| bad("not a PEM certificate"))?;
    let cert = pem.parse_x509().map_err(|_| bad("not an X.509 certificate"))?;
    let validity = cert.validity();
    if validity.not_before.timestamp() > now || validity.not_after.timestamp() <= now {
        return Err(bad("outside its validity period"));
    }
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_PKCS1_RSAENCRYPTION {
        return Err(bad("its key is not an RSA key"));
    }
    Ok(SigningKey {
        rsa_public_key: spki.subject_public_key.data.as_ref().into(),
        not_after: validity.not_after.timestamp(),
    })
}

fn innermost(error: &reqwest::Error) -> String {
    let root = std::iter::successors(Some(error as &dyn std::error::Error), |e| e.source()).last();
    root.map(ToString::to_string).unwrap_or_default()
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of AWS's documented HTTP/HTTPS notification example.
    const NOTIFICATION: &str = r#"{
      "Type" : "Notification",
      "MessageId" : "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
      "TopicArn" : "arn:aws:sns:us-west-2:123456789012:MyTopic",
      "Subject" : "My First Message",
      "Message" : "Hello world!",
      "Timestamp" : "2012-05-02T00:54:06.655Z",
      "SignatureVersion" : "1",
      "Signature" : "EXAMPLEw6JRN...",
      "SigningCertURL" : "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
      "UnsubscribeURL" : "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-west-2:123456789012:MyTopic:c9135db0-26c4-47ec-8998-413945fb5a96"
    }"#;

    /// The shape of AWS's documented SubscriptionConfirmation example.
    const CONFIRMATION: &str = r#"{
      "Type" : "SubscriptionConfirmation",
      "MessageId" : "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
      "Token" : "2336412f37f...",
      "TopicArn" : "arn:aws:sns:us-west-2:123456789012:MyTopic",
      "Message" : "You have chosen to subscribe to the topic arn:aws:sns:us-west-2:123456789012:MyTopic.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
      "SubscribeURL" : "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:123456789012:MyTopic&Token=2336412f37...",
      "Timestamp" : "2012-04-26T20:45:04.751Z",
      "SignatureVersion" : "1",
      "Signature" : "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=",
      "SigningCertURL" : "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"
    }"#;

    #[test]
    fn notification_canonical_text_follows_aws() {
        let message = SnsMessage::parse(NOTIFICATION.as_bytes()).unwrap();
        assert_eq!(message.kind().unwrap(), SnsKind::Notification);
        assert_eq!(
            message.canonical().unwrap(),
            "Message\nHello world!\n\
             MessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n\
             Subject\nMy First Message\n\
             Timestamp\n2012-05-02T00:54:06.655Z\n\
             TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\n\
             Type\nNotification\n"
        );
    }

    #[test]
    fn a_notification_without_subject_leaves_it_out() {
        let body = NOTIFICATION.replace("\"Subject\" : \"My First Message\",", "");
        let message = SnsMessage::parse(body.as_bytes()).unwrap();
        let canonical = message.canonical().unwrap();
        assert!(!canonical.contains("Subject"), "{canonical}");
        assert!(canonical.starts_with("Message\nHello world!\nMessageId\n"));
    }

    #[test]
    fn confirmation_canonical_text_follows_aws() {
        let message = SnsMessage::parse(CONFIRMATION.as_bytes()).unwrap();
        assert_eq!(message.kind().unwrap(), SnsKind::SubscriptionConfirmation);
        assert_eq!(
            message.canonical().unwrap(),
            "Message\nYou have chosen to subscribe to the topic arn:aws:sns:us-west-2:123456789012:MyTopic.\n\
             To confirm the subscription, visit the SubscribeURL included in this message.\n\
             MessageId\n165545c9-2a5c-472c-8df2-7ff2be2b3b1b\n\
             SubscribeURL\nhttps://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:123456789012:MyTopic&Token=2336412f37...\n\
             Timestamp\n2012-04-26T20:45:04.751Z\n\
             Token\n2336412f37f...\n\
             TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\n\
             Type\nSubscriptionConfirmation\n"
        );
        let without_token = CONFIRMATION.replace("\"Token\" : \"2336412f37f...\",", "");
        let message = SnsMessage::parse(without_token.as_bytes()).unwrap();
        assert!(matches!(message.canonical(), Err(SnsError::Malformed(_))));
    }

    #[test]
    fn only_sns_hosts_pass() {
        for good in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.eu-central-1.amazonaws.com/x.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/x.pem",
            "https://sns.us-east-1.amazonaws.com:443/x.pem",
        ] {
            assert!(is_sns_url(&Url::parse(good).unwrap()), "{good}");
        }
        for bad in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
            "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.amazonaws.com/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "https://sns.us.east.1.amazonaws.com/x.pem",
            "https://notsns.us-east-1.amazonaws.com/x.pem",
            "https://sqs.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://user@sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.co/x.pem",
            "https://54.239.28.85/x.pem",
            "https://sns.-x.amazonaws.com/x.pem",
        ] {
            assert!(!is_sns_url(&Url::parse(bad).unwrap()), "{bad}");
        }
    }

    #[tokio::test]
    async fn refusals_come_before_any_fetch() {
        // A client that cannot connect anywhere: a refusal that needed a fetch would show as Unavailable.
        let http = reqwest::Client::builder()
            .resolve("sns.us-west-2.amazonaws.com", "127.0.0.1:9".parse().unwrap())
            .build()
            .unwrap();
        let verifier = SnsVerifier::new(http, &["arn:aws:sns:us-west-2:123456789012:Other".into()], Clock::system());
        let other_host = NOTIFICATION.replace("sns.us-west-2.amazonaws.com/Simple", "sns.evil.example/Simple");
        assert!(matches!(verifier.verify(other_host.as_bytes()).await, Err(SnsError::CertUrl)));
        assert!(matches!(verifier.verify(NOTIFICATION.as_bytes()).await, Err(SnsError::Topic)));
        let v3 = NOTIFICATION.replace("\"SignatureVersion\" : \"1\"", "\"SignatureVersion\" : \"3\"");
        assert!(matches!(verifier.verify(v3.as_bytes()).await, Err(SnsError::SignatureVersion(_))));
        assert!(matches!(verifier.verify(b"{\"Type\": 1}").await, Err(SnsError::Malformed(_))));
        let open = SnsVerifier::new(verifier.http.clone(), &[], Clock::system());
        assert!(matches!(open.verify(NOTIFICATION.as_bytes()).await, Err(SnsError::Signature)), "bad base64");
    }
}
