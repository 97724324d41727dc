//! SIP over TLS: the listener's certificate, the CAs trusted for outgoing TLS connections, and
//! the TLS listener itself (rsipstack's, on rustls with the ring provider).
//!
//! - Incoming: `[sip] tls_listen` with `tls_certificate` and `tls_private_key` (PEM). The
//!   connection caps, the idle timeout and the rate-limited logging of TCP apply to TLS
//!   connections too, a handshake in progress included (it must end within the idle timeout;
//!   see `patches/rsipstack/PATCH.md`).
//! - Outgoing (registrars and outbound proxies reached over `sips:` or `;transport=tls`, BYEs
//!   to a caller's TLS Contact): the server's certificate must chain to a CA of
//!   `tls_ca_file`, or of the system's bundle ([`SYSTEM_CA_FILES`]) when it is not set, and
//!   name the host of the URI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rsipstack::transport::TransportLayer;
use rsipstack::transport::tls::{TlsConfig, TlsListenerConnection};

use crate::config::SipConfig;
use crate::error::{Error, Result};

/// Where the system's CA bundle is looked for when `tls_ca_file` is not set, in order
/// (Debian and Ubuntu, Fedora and RHEL, openSUSE, Alpine and others).
pub const SYSTEM_CA_FILES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The largest PEM file read (a CA bundle is a few hundred KiB).
const MAX_PEM: u64 = 16 * 1024 * 1024;

/// A TLS file that cannot be used ([`Error::Tls`]; small, for the helpers below).
struct BadFile {
    key: &'static str,
    path: PathBuf,
    message: String,
}

impl From<BadFile> for Error {
    fn from(bad: BadFile) -> Error {
        Error::Tls { key: bad.key, path: bad.path, message: bad.message }
    }
}

fn read_pem(key: &'static str, path: &Path) -> std::result::Result<Vec<u8>, BadFile> {
    let fail = |message: String| BadFile { key, path: path.to_path_buf(), message };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if meta.len() > MAX_PEM {
        return Err(fail(format!("larger than {MAX_PEM} bytes")));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(fail("not a PEM file (no -----BEGIN line)".to_owned()));
    }
    Ok(bytes)
}

/// The CA certificates (PEM) for outgoing TLS: `tls_ca_file`, else the first system bundle
/// found, else none (outgoing TLS then fails verification, and says so).
fn trust_anchors(sip: &SipConfig) -> std::result::Result<Option<Vec<u8>>, BadFile> {
    if let Some(path) = &sip.tls_ca_file {
        return read_pem("sip.tls_ca_file", path).map(Some);
    }
    for candidate in SYSTEM_CA_FILES {
        let path = PathBuf::from(candidate);
        if path.is_file() {
            return read_pem("sip.tls_ca_file", &path).map(Some);
        }
    }
    tracing::warn!("no sip.tls_ca_file and no system CA bundle: outgoing SIP over TLS cannot verify servers");
    Ok(None)
}

/// Configures TLS on `layer`: the trust anchors for outgoing connections, and the TLS
/// listener when `[sip] tls_listen` is set, on `addr` (the configured address, or a port
/// picked for it).
pub(crate) async fn bind(sip: &SipConfig, layer: &TransportLayer, addr: Option<SocketAddr>) -> Result<()> {
    let mut config = TlsConfig { ca_certs: trust_anchors(sip)?, ..TlsConfig::default() };
    if let (Some(tls), Some(addr)) = (&sip.tls, addr) {
        config.cert = Some(read_pem("sip.tls_certificate", &tls.certificate)?);
        config.key = Some(read_pem("sip.tls_private_key", &tls.private_key)?);
        check_certificate(&config, &tls.certificate)?;
        let listener = TlsListenerConnection::new(addr, None, config.clone()).await?;
        layer.add_transport(listener.into());
    }
    layer.set_tls_config(config);
    Ok(())
}

/// Checks that the certificate and key load (rsipstack would only find out when the listener
/// starts serving, and then log a warning instead of failing the start).
fn check_certificate(config: &TlsConfig, certificate: &Path) -> std::result::Result<(), BadFile> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let fail = |key: &'static str, message: String| BadFile { key, path: certificate.to_path_buf(), message };
    let certs: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(config.cert.as_deref().unwrap_or_default())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| fail("sip.tls_certificate", e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("sip.tls_certificate", "no CERTIFICATE in the file".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_slice(config.key.as_deref().unwrap_or_default())
        .map_err(|e| fail("sip.tls_private_key", format!("no usable private key: {e}")))?;
    if !matches!(key, PrivateKeyDer::Pkcs8(_) | PrivateKeyDer::Pkcs1(_)) {
        return Err(fail("sip.tls_private_key", "expected a PKCS#8 or PKCS#1 (RSA) private key".to_owned()));
    }
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(certs, key, &provider)
        .map_err(|e| fail("sip.tls_private_key", format!("does not go with the certificate: {e}")))?;
    Ok(())
}
