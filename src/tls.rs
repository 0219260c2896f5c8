//! TLS, both ways: the certificate the public TLS listener serves (re-read from its files
//! on every reload, without touching established connections), and the HTTPS client the
//! edge uses for its own calls to the token issuer (JWKS, introspection).
//!
//! rustls with the `ring` provider, TLS 1.2 and 1.3 only. The public listener's
//! handshake is run here rather than by pingora's TLS listener, which has no deadline.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate, key or CA file cannot be used. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: String },
    #[error("{path}: {reason}")]
    Unusable { path: String, reason: String },
}

/// The provider refused TLS 1.2 + 1.3 (it has no suites for them): never with `ring`.
fn versions_refused(e: rustls::Error) -> TlsError {
    TlsError::Unusable {
        path: String::from("(built-in TLS versions)"),
        reason: e.to_string(),
    }
}

/// The rustls crypto provider of the whole process (pingora installs the same one).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let _ =
        rustls::crypto::CryptoProvider::install_default(rustls::crypto::ring::default_provider());
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// Loads a certificate chain and its private key, and checks that they belong together.
pub fn load_certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let certs = certificates(cert_file)?;
    let pem = read(key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::NoKey {
        path: key_file.display().to_string(),
    })?;
    CertifiedKey::from_der(certs, key, &provider()).map_err(|e| TlsError::Unusable {
        path: key_file.display().to_string(),
        reason: match e {
            rustls::Error::InconsistentKeys(_) => {
                "the private key does not match the certificate".to_string()
            }
            _ => "the private key is not a supported RSA, ECDSA or Ed25519 key".to_string(),
        },
    })
}

/// The certificate served by the public TLS listener: the resolver rustls asks on every
/// handshake. A reload swaps it atomically; connections already established keep theirs.
pub struct CertStore {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: ArcSwap<CertifiedKey>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<CertStore, TlsError> {
        let key = load_certified_key(cert_file, key_file)?;
        Ok(CertStore {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: ArcSwap::from_pointee(key),
        })
    }

    /// Re-reads both files; on any error the certificate being served stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load_certified_key(&self.cert_file, &self.key_file)?;
        self.current.store(Arc::new(key));
        Ok(())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Trust anchors for the edge's HTTPS calls: the system's CA store plus, if configured,
/// the CAs in `extra` (a private PKI in front of the issuer).
pub fn client_config(extra: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A broken system certificate is skipped, as every TLS client does.
        let _ = roots.add(cert);
    }
    if let Some(path) = extra {
        for cert in certificates(path)? {
            roots.add(cert).map_err(|e| TlsError::Unusable {
                path: path.display().to_string(),
                reason: format!("not a usable CA certificate ({e})"),
            })?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(versions_refused)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

// ------------------------------------------------------------------ the public TLS listener

/// The public TLS listener's front: it runs the handshake itself, under a deadline
/// (`client_header_timeout_ms`, as nginx bounds its handshakes by its header timeout),
/// then hands the decrypted connection to pingora's HTTP app. pingora's own TLS listener
/// has no handshake deadline: a client that opens a connection and stalls mid-handshake
/// would hold it for as long as it likes.
///
/// HTTP/1.1 goes to `h1` (behind the edge's head guard); HTTP/2, chosen by ALPN, goes to
/// `h2` (the same proxy app unwrapped: its frames are not HTTP/1 heads).
pub struct TlsFront<H1, H2> {
    pub h1: Arc<H1>,
    pub h2: Arc<H2>,
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub handshake_timeout: std::time::Duration,
}

/// The server side of the public TLS listener: TLS 1.2 and 1.3, ALPN `h2` then
/// `http/1.1`, the certificate from `certs` (swapped on reload).
pub fn acceptor(certs: Arc<CertStore>) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(versions_refused)?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[async_trait::async_trait]
impl<H1, H2> pingora::apps::ServerApp for TlsFront<H1, H2>
where
    H1: pingora::apps::ServerApp + Send + Sync + 'static,
    H2: pingora::apps::ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: pingora::protocols::Stream,
        shutdown: &pingora::server::ShutdownWatch,
    ) -> Option<pingora::protocols::Stream> {
        let handshake =
            tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream)).await;
        let tls = match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                crate::metrics::TLS_HANDSHAKES
                    .with_label_values(&["failed"])
                    .inc();
                return None;
            }
            Err(_) => {
                // Dropping the unfinished handshake closes the connection.
                crate::metrics::TLS_HANDSHAKES
                    .with_label_values(&["timeout"])
                    .inc();
                return None;
            }
        };
        crate::metrics::TLS_HANDSHAKES
            .with_label_values(&["ok"])
            .inc();
        let conn = TlsConn::new(tls);
        if conn.alpn == Some(pingora::protocols::ALPN::H2) {
            self.h2.process_new(Box::new(conn), shutdown).await
        } else {
            self.h1.process_new(Box::new(conn), shutdown).await
        }
    }

    /// `h1` wraps the same app as `h2`: its cleanup covers both.
    async fn cleanup(&self) {
        self.h1.cleanup().await;
    }
}

/// A decrypted public connection, as pingora's HTTP app reads it.
struct TlsConn {
    inner: tokio_rustls::server::TlsStream<pingora::protocols::Stream>,
    alpn: Option<pingora::protocols::ALPN>,
}

impl TlsConn {
    fn new(inner: tokio_rustls::server::TlsStream<pingora::protocols::Stream>) -> TlsConn {
        let alpn = match inner.get_ref().1.alpn_protocol() {
            Some(b"h2") => Some(pingora::protocols::ALPN::H2),
            Some(b"http/1.1") => Some(pingora::protocols::ALPN::H1),
            _ => None,
        };
        TlsConn { inner, alpn }
    }

    fn l4(&self) -> &pingora::protocols::Stream {
        self.inner.get_ref().0
    }
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn")
            .field("alpn", &self.alpn)
            .finish_non_exhaustive()
    }
}

impl tokio::io::AsyncRead for TlsConn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait::async_trait]
impl pingora::protocols::Shutdown for TlsConn {
    /// TLS close_notify, then the TCP shutdown.
    async fn shutdown(&mut self) {
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut self.inner).await;
    }
}

impl pingora::protocols::UniqueID for TlsConn {
    fn id(&self) -> pingora::protocols::UniqueIDType {
        self.l4().id()
    }
}

impl pingora::protocols::Ssl for TlsConn {
    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.alpn.clone()
    }
}

impl pingora::protocols::GetTimingDigest for TlsConn {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.l4().get_timing_digest()
    }
}

impl pingora::protocols::GetProxyDigest for TlsConn {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.l4().get_proxy_digest()
    }
}

impl pingora::protocols::GetSocketDigest for TlsConn {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.l4().get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: pingora::protocols::SocketDigest) {
        self.inner.get_mut().0.set_socket_digest(digest);
    }
}

#[async_trait::async_trait]
impl pingora::protocols::Peek for TlsConn {}
