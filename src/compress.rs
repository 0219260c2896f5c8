//! Response compression: which content coding a client accepts (`Accept-Encoding`, RFC 9110
//! §12.5.3), whether an answer is worth compressing, and the compression itself (gzip via
//! flate2, brotli). It owns the decision and the bytes; the response writer owns the headers
//! it sets from the outcome (`Content-Encoding`, `Vary`, the length).
//!
//! Only whole, buffered bodies are compressed (every answer the edge writes itself is one):
//! small answers are sent as they are, so a short problem+json (the usual error) is never
//! compressed, and an answer that does not shrink is sent identity-coded.

use std::io::Write;
use std::sync::LazyLock;

use prometheus::{register_int_counter_vec, IntCounterVec};

/// Bodies under this many bytes are sent identity-coded: below about a kilobyte the coding
/// saves less than it costs (and a packet carries it anyway).
pub const MIN_BYTES: usize = 1024;

/// Brotli quality for answers compressed per request. Quality 5 cost ~4× gzip's CPU on a
/// 36 KB page in the load bench (scenario (e), benches/README.md); 3 is the fast end of
/// brotli's range and still smaller than gzip on JSON. 11 would cost ~50× for a few percent.
const BROTLI_QUALITY: u32 = 3;
const BROTLI_WINDOW: u32 = 22;
const GZIP_LEVEL: u32 = 6;

pub static COMPRESSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "prospect_edge_response_compression_total",
        "Responses the edge wrote, by content coding (br, gzip, identity: below the size \
         threshold, not compressible, not accepted, or not smaller).",
        &["encoding"]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static SAVED_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "prospect_edge_response_compression_saved_bytes_total",
        "Body bytes saved by compression, by content coding.",
        &["encoding"]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Brotli,
    Gzip,
}

impl Encoding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }
}

/// The coding to use for a client sending `accept` (its `Accept-Encoding` values, joined),
/// or `None` for identity. Highest q-value wins; on a tie brotli (smaller) before gzip.
/// `*` stands for any coding not named; `q=0` refuses. No header means identity: RFC 9110
/// allows any coding then, but a client that did not ask may not decode it.
pub fn negotiate(accept: Option<&str>) -> Option<Encoding> {
    let accept = accept?;
    let (mut br, mut gzip, mut star): (Option<u16>, Option<u16>, Option<u16>) = (None, None, None);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1000u16;
        for p in parts {
            let p = p.trim();
            if let Some(v) = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) {
                q = parse_q(v).unwrap_or(0);
            }
        }
        match coding.as_str() {
            "br" => br = Some(q),
            "gzip" | "x-gzip" => gzip = Some(q),
            "*" => star = Some(q),
            _ => {}
        }
    }
    let br = br.or(star).unwrap_or(0);
    let gzip = gzip.or(star).unwrap_or(0);
    match (br, gzip) {
        (0, 0) => None,
        (b, g) if b >= g => Some(Encoding::Brotli),
        _ => Some(Encoding::Gzip),
    }
}

/// A q-value (`0`, `0.5`, `1.000`) in thousandths; `None` when malformed.
fn parse_q(v: &str) -> Option<u16> {
    let v = v.trim();
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut digits = frac.to_string();
    while digits.len() < 3 {
        digits.push('0');
    }
    let part: u16 = digits.parse().ok()?;
    let q = whole + part;
    (q <= 1000).then_some(q)
}

/// Whether a body of this media type compresses well (text: JSON, HTML, CSS, JavaScript).
pub fn compressible(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence.ends_with("+json")
        || essence == "text/html"
        || essence == "text/css"
        || essence == "text/javascript"
}

/// `body` coded with `enc`; `None` if the coder failed (then identity is sent).
pub fn encode(enc: Encoding, body: &[u8]) -> Option<Vec<u8>> {
    match enc {
        Encoding::Gzip => {
            let mut w = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::new(GZIP_LEVEL),
            );
            w.write_all(body).ok()?;
            w.finish().ok()
        }
        Encoding::Brotli => {
            let mut out = Vec::with_capacity(body.len() / 4);
            {
                let mut w =
                    brotli::CompressorWriter::new(&mut out, 4096, BROTLI_QUALITY, BROTLI_WINDOW);
                w.write_all(body).ok()?;
                w.flush().ok()?;
            }
            Some(out)
        }
    }
}

/// The coded body to send instead of `body`, if any: the client accepts a coding, the type
/// compresses, the body is at least [`MIN_BYTES`] and the coding makes it smaller. Counts
/// the outcome.
pub fn choose(
    accept: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> Option<(Encoding, Vec<u8>)> {
    let picked =
        pick(accept, content_type, body.len()).and_then(|enc| smaller(enc, body).map(|b| (enc, b)));
    count(picked.as_ref().map(|(e, c)| (*e, body.len() - c.len())));
    picked
}

/// The coding worth trying for a body of this type and length, if the client accepts one.
pub fn pick(accept: Option<&str>, content_type: &str, len: usize) -> Option<Encoding> {
    (len >= MIN_BYTES && compressible(content_type))
        .then(|| negotiate(accept))
        .flatten()
}

/// `body` coded with `enc`, if that makes it smaller.
pub fn smaller(enc: Encoding, body: &[u8]) -> Option<Vec<u8>> {
    encode(enc, body).filter(|coded| coded.len() < body.len())
}

/// Counts an answer: its coding and the bytes it saved, or identity.
pub fn count(coded: Option<(Encoding, usize)>) {
    match coded {
        Some((enc, saved)) => {
            COMPRESSED.with_label_values(&[enc.token()]).inc();
            SAVED_BYTES
                .with_label_values(&[enc.token()])
                .inc_by(saved as u64);
        }
        None => COMPRESSED.with_label_values(&["identity"]).inc(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn json_body(n: usize) -> Vec<u8> {
        let items: Vec<String> = (0..n)
            .map(|i| {
                format!(r#"{{"id":"con_{i}","email":"user{i}@example.com","first_name":"Ada"}}"#)
            })
            .collect();
        format!(r#"{{"data":[{}]}}"#, items.join(",")).into_bytes()
    }

    #[test]
    fn accept_encoding_is_negotiated_by_q_value() {
        assert_eq!(negotiate(None), None);
        assert_eq!(negotiate(Some("")), None);
        assert_eq!(negotiate(Some("identity")), None);
        assert_eq!(negotiate(Some("gzip")), Some(Encoding::Gzip));
        assert_eq!(negotiate(Some("GZIP")), Some(Encoding::Gzip));
        assert_eq!(negotiate(Some("gzip, deflate, br")), Some(Encoding::Brotli));
        assert_eq!(negotiate(Some("br;q=0.5, gzip")), Some(Encoding::Gzip));
        assert_eq!(negotiate(Some("br;q=0, gzip;q=0")), None);
        assert_eq!(negotiate(Some("*")), Some(Encoding::Brotli));
        assert_eq!(negotiate(Some("*;q=0.2, br;q=0")), Some(Encoding::Gzip));
        assert_eq!(negotiate(Some("gzip;q=1.5")), None, "a malformed q refuses");
        assert_eq!(negotiate(Some("deflate")), None);
    }

    #[test]
    fn q_values_parse_to_thousandths() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.125"), Some(125));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("1.001"), None);
        assert_eq!(parse_q("0.1234"), None);
        assert_eq!(parse_q("x"), None);
    }

    #[test]
    fn only_text_types_compress() {
        assert!(compressible("application/json"));
        assert!(compressible("application/problem+json"));
        assert!(compressible("text/html; charset=utf-8"));
        assert!(compressible("text/javascript; charset=utf-8"));
        assert!(!compressible("image/png"));
        assert!(!compressible(""));
    }

    #[test]
    fn both_codings_round_trip_and_shrink_json() {
        let body = json_body(100);
        let (enc, gz) = choose(Some("gzip"), "application/json", &body).expect("gzip");
        assert_eq!(enc, Encoding::Gzip);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .expect("gunzip");
        assert_eq!(out, body);
        assert!(gz.len() * 3 < body.len(), "{} of {}", gz.len(), body.len());

        let (enc, br) = choose(Some("br"), "application/json", &body).expect("br");
        assert_eq!(enc, Encoding::Brotli);
        let mut out = Vec::new();
        brotli::Decompressor::new(&br[..], 4096)
            .read_to_end(&mut out)
            .expect("unbrotli");
        assert_eq!(out, body);
    }

    #[test]
    fn small_bodies_and_refusals_stay_identity() {
        let problem = br#"{"type":"https://p/x","title":"Not found","status":404}"#;
        assert!(choose(Some("gzip, br"), "application/problem+json", problem).is_none());
        let body = json_body(100);
        assert!(choose(None, "application/json", &body).is_none());
        assert!(choose(Some("gzip"), "image/png", &body).is_none());
        // Random bytes do not shrink: identity.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                // xorshift64: no pattern deflate or brotli can use.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 56) as u8
            })
            .collect();
        assert!(choose(Some("gzip"), "application/json", &noise).is_none());
    }
}
