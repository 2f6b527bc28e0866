//! A stand-in for Amazon SNS's web host on loopback, for the SES webhook
//! tests: HTTPS with a certificate for `sns.us-east-1.amazonaws.com` from a CA
//! made here, serving a signing certificate made here (an RSA key from the
//! `openssl` CLI), answering subscription confirmations, and noting every
//! request. Bulletin reaches it through a client that resolves the SNS host
//! to it and trusts the CA: its host rule is the one production runs.
//! Messages are signed with `openssl dgst`, so the signing side shares no
//! code with the verifying side.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const HOST: &str = "sns.us-east-1.amazonaws.com";
/// A host that looks like SNS's but is not: the client resolves it to this site
/// too, so a missing host check would show as a fetch here.
pub const LOOKALIKE: &str = "sns.us-east-1.amazonaws.com.evil.test";
pub const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:bulletin-bounces";
const CERT_PATH: &str = "/SimpleNotificationService-0123456789abcdef.pem";

pub struct SnsSite {
    pub addr: SocketAddr,
    ca_pem: String,
    dir: tempfile::TempDir,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SnsSite {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SnsSite {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let made = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=sns.amazonaws.com"])
            .args(["-keyout", "signing-key.pem", "-out", "signing-cert.pem"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("the openssl CLI makes the signing key");
        assert!(made.status.success(), "openssl req: {}", String::from_utf8_lossy(&made.stderr));
        let signing_cert = std::fs::read(dir.path().join("signing-cert.pem")).unwrap();

        let (ca_pem, leaf_der, key_der) = tls_identity();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf_der.into()], rustls::pki_types::PrivatePkcs8KeyDer::from(key_der).into())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let noted = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, noted, signing_cert) = (acceptor.clone(), noted.clone(), signing_cert.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let Some(target) = read_request_target(&mut tls).await else { return };
                    noted.lock().unwrap().push(target.clone());
                    let (status, body): (&str, Vec<u8>) = if target == CERT_PATH {
                        ("200 OK", signing_cert)
                    } else if target.starts_with("/?Action=ConfirmSubscription&") {
                        ("200 OK", b"<ConfirmSubscriptionResponse/>".to_vec())
                    } else {
                        ("404 Not Found", b"not here".to_vec())
                    };
                    let head =
                        format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                    let _ = tls.write_all(head.as_bytes()).await;
                    let _ = tls.write_all(&body).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self { addr, ca_pem, dir, requests, task }
    }

    /// A client that finds SNS (and the look-alike host) here and trusts this site's CA.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .resolve(HOST, self.addr)
            .resolve(LOOKALIKE, self.addr)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap()
    }

    pub fn cert_url(&self) -> String {
        format!("https://{HOST}{CERT_PATH}")
    }

    pub fn lookalike_cert_url(&self) -> String {
        format!("https://{LOOKALIKE}{CERT_PATH}")
    }

    /// Request targets (path and query) this site has answered, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// Base64 of the RSA PKCS#1 v1.5 signature of `text`: SHA-1 for version 1, SHA-256 for 2.
    fn sign(&self, text: &str, version: u8) -> String {
        let digest = if version == 1 { "-sha1" } else { "-sha256" };
        let key: PathBuf = self.dir.path().join("signing-key.pem");
        let mut child = Command::new("openssl")
            .args(["dgst", digest, "-sign"])
            .arg(&key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl dgst: {}", String::from_utf8_lossy(&out.stderr));
        base64::engine::general_purpose::STANDARD.encode(out.stdout)
    }

    /// A `Notification` carrying `message`, signed as SNS signs (AWS's canonical text).
    pub fn notification(&self, id: &str, message: &str, version: u8, cert_url: &str) -> Value {
        let subject = "Amazon SES Email Event Notification";
        let timestamp = "2026-11-28T07:00:00.000Z";
        let canonical = format!(
            "Message\n{message}\nMessageId\n{id}\nSubject\n{subject}\nTimestamp\n{timestamp}\nTopicArn\n{TOPIC}\nType\nNotification\n"
        );
        json!({
            "Type": "Notification",
            "MessageId": id,
            "TopicArn": TOPIC,
            "Subject": subject,
            "Message": message,
            "Timestamp": timestamp,
            "SignatureVersion": version.to_string(),
            "Signature": self.sign(&canonical, version),
            "SigningCertURL": cert_url,
            "UnsubscribeURL": format!("https://{HOST}/?Action=Unsubscribe&SubscriptionArn={TOPIC}:0f3a")
        })
    }

    /// A signed `SubscriptionConfirmation` for `TOPIC`, as SNS sends when the endpoint is added.
    pub fn subscription_confirmation(&self) -> Value {
        let (id, token, timestamp) =
            ("165545c9-2a5c-472c-8df2-7ff2be2b3b1b", "2336412f37fb687f", "2026-11-28T07:00:00.000Z");
        let message = format!(
            "You have chosen to subscribe to the topic {TOPIC}.\nTo confirm the subscription, visit the SubscribeURL included in this message."
        );
        let subscribe_url = format!("https://{HOST}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}");
        let canonical = format!(
            "Message\n{message}\nMessageId\n{id}\nSubscribeURL\n{subscribe_url}\nTimestamp\n{timestamp}\nToken\n{token}\nTopicArn\n{TOPIC}\nType\nSubscriptionConfirmation\n"
        );
        json!({
            "Type": "SubscriptionConfirmation",
            "MessageId": id,
            "Token": token,
            "TopicArn": TOPIC,
            "Message": message,
            "SubscribeURL": subscribe_url,
            "Timestamp": timestamp,
            "SignatureVersion": "2",
            "Signature": self.sign(&canonical, 2),
            "SigningCertURL": self.cert_url()
        })
    }
}

/// A CA and a server certificate it signed for the SNS host and the look-alike: (CA PEM, leaf DER, leaf key DER).
fn tls_identity() -> (String, Vec<u8>, Vec<u8>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Bulletin test CA for SNS");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec![HOST.to_owned(), LOOKALIKE.to_owned()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, HOST);
    let leaf = leaf.signed_by(&key, &ca).unwrap();
    (ca.pem(), leaf.der().to_vec(), key.serialize_der())
}

/// The request target of one HTTP/1.1 request head, read up to 16 KiB.
async fn read_request_target(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 16 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head).lines().next()?.to_owned();
    let mut parts = line.split(' ');
    (parts.next()? == "GET").then_some(())?;
    parts.next().map(str::to_owned)
}
