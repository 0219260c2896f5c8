//! Listeners and client limits: addresses, the public TLS listener, and the top-level
//! bounds on what a client may send (timeouts, head size).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use marked_yaml::Spanned;

use super::{raw, resolve};
use crate::diag::Diags;

/// The public TLS listener: certificate and key files, re-read on reload.
#[derive(Debug, Clone)]
pub struct Tls {
    pub listen: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

pub(super) fn tls(path: &Path, raw: &raw::RawTls, d: &mut Diags) -> Option<Tls> {
    let listen = addr(path, &raw.listen, "tls.listen", d);
    let cert_file = resolve(path, raw.cert_file.as_str());
    let key_file = resolve(path, raw.key_file.as_str());
    // The files are loaded now, so that `check` (systemd's ExecStartPre) catches a missing
    // or mismatched certificate before the listener would.
    if let Err(e) = crate::tls::load_certified_key(&cert_file, &key_file) {
        let span = match e {
            crate::tls::TlsError::Read { ref path, .. }
            | crate::tls::TlsError::NoCertificate { ref path }
                if Path::new(path) == cert_file =>
            {
                raw.cert_file.span()
            }
            _ => raw.key_file.span(),
        };
        d.at(path, span, format!("tls: {e}"));
        return None;
    }
    Some(Tls {
        listen: listen?,
        cert_file,
        key_file,
    })
}

/// Pingora's own bound on a raw request head (`MAX_HEADER_SIZE` in pingora-core 0.9):
/// `max_request_header_bytes` must stay below it to be reachable.
pub const PINGORA_MAX_HEAD: u64 = 1_048_575;

/// A top-level numeric setting: its default when absent, an error naming the range when
/// out of it.
pub(super) fn top_level(
    path: &Path,
    v: &Option<Spanned<u64>>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    key: &str,
    d: &mut Diags,
) -> Option<u64> {
    match v {
        None => Some(default),
        Some(s) if range.contains(&**s) => Some(**s),
        Some(s) => {
            d.at(
                path,
                s.span(),
                format!("{key} must be {}..={}", range.start(), range.end()),
            );
            None
        }
    }
}

pub(super) fn addr(
    path: &Path,
    v: &Spanned<String>,
    what: &str,
    d: &mut Diags,
) -> Option<SocketAddr> {
    match v.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            d.at(
                path,
                v.span(),
                format!(
                    "{what} `{}` is not an address like 127.0.0.1:8080",
                    v.as_str()
                ),
            );
            None
        }
    }
}
