//! What TLS trusts, for STARTTLS and `smtps://` alike: the webpki
//! (Mozilla) roots, the system's store (read once) and the CAs of
//! `mail.tls_ca_file`; and what a failed handshake tells the operator to do.

use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use lettre::transport::smtp::client::{AsyncTokioStream, Certificate, CertificateStore, TlsParameters};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a failed TLS handshake means, said so an operator knows what to change.
pub(super) fn tls_failure(at: &str, error: &dyn std::fmt::Display) -> String {
    let error = said_once(&error.to_string());
    if error.contains("certificate") {
        format!(
            "the TLS certificate of {at} is not trusted ({error}): set mail.tls_ca_file to the PEM file of \
             the CA that signed it, or check that mail.smtp_url names the host the certificate is for"
        )
    } else {
        format!("TLS with {at} failed: {error}")
    }
}

/// `text` with each ": "-separated part said once: lettre wraps its own
/// connection errors in another ("Connection error: Connection error: …").
pub(super) fn said_once(text: &str) -> String {
    let mut kept: Vec<&str> = vec![];
    for part in text.split(": ") {
        if kept.last() != Some(&part) {
            kept.push(part);
        }
    }
    kept.join(": ")
}

/// The CAs a server's certificate may chain to: the same for STARTTLS
/// (lettre's TLS parameters) and `smtps://` (our rustls connector).
pub(super) struct Trust {
    pub(super) rustls: Arc<rustls::ClientConfig>,
    pub(super) starttls: TlsParameters,
    /// The fall-back to plain text under `tls=opportunistic` has been logged.
    pub(super) warned: AtomicBool,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust").finish_non_exhaustive()
    }
}

impl Trust {
    /// The webpki roots, the system's store and `extra`, for a server named `host`.
    pub(super) fn new(host: &str, extra: &[CertificateDer<'static>]) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let mut lettre = TlsParameters::builder(host.to_owned()).certificate_store(CertificateStore::WebpkiRoots);
        for cert in system_roots() {
            // Filtered when loaded: each one parses.
            let _ = roots.add(cert.clone());
            lettre = lettre.add_root_certificate(lettre_certificate(cert)?);
        }
        for cert in extra {
            roots.add(cert.clone()).map_err(|e| format!("not a usable CA certificate: {e}"))?;
            lettre = lettre.add_root_certificate(lettre_certificate(cert)?);
        }
        let rustls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let starttls = lettre.build_rustls().map_err(|e| format!("TLS setup: {e}"))?;
        Ok(Self { rustls: Arc::new(rustls), starttls, warned: AtomicBool::new(false) })
    }
}

fn lettre_certificate(cert: &CertificateDer<'_>) -> Result<Certificate, String> {
    Certificate::from_der(cert.to_vec()).map_err(|e| format!("not a usable CA certificate: {e}"))
}

/// The system's CA store (`/etc/ssl/certs` and the like, or `SSL_CERT_FILE`),
/// read once; certificates rustls cannot use are left out, as browsers do.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        if !found.errors.is_empty() {
            tracing::debug!(errors = ?found.errors, "some of the system's CA certificates could not be read");
        }
        found.certs.into_iter().filter(|cert| rustls::RootCertStore::empty().add(cert.clone()).is_ok()).collect()
    })
}

/// Implicit TLS (`smtps://`) on a socket opened here, so it has `TCP_NODELAY`
/// like every other connection (lettre's own connect does not set it).
#[derive(Debug)]
pub(super) struct ImplicitTls(pub(super) tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for ImplicitTls {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::said_once;

    #[test]
    fn a_repeated_part_is_said_once() {
        let lettre = "Connection error: Connection error: invalid peer certificate: UnknownIssuer";
        assert_eq!(said_once(lettre), "Connection error: invalid peer certificate: UnknownIssuer");
        assert_eq!(said_once("a: b: a"), "a: b: a", "only neighbours repeat");
    }
}
