//! The last step before an answer is written: which representation of it the client gets.
//! Composes [`crate::etag`] (a strong `ETag`, `If-None-Match` → 304) and
//! [`crate::compress`] (gzip/brotli by `Accept-Encoding`, `Vary`). The response writer
//! calls [`prepare`] once per answer and writes what it returns; nothing else here touches
//! the session.
//!
//! Validators go on what can be revalidated: a single record (`GET /v1/{resource}/{id}`),
//! the OpenAPI document and the /docs assets. Searches, writes and problems get none.

use std::collections::VecDeque;
use std::sync::{LazyLock, Mutex};

use bytes::Bytes;

use crate::compress::{self, Encoding};
use crate::etag;

/// What the request says about representations.
#[derive(Debug, Default, Clone, Copy)]
pub struct Asked<'a> {
    /// The method (`GET` and `HEAD` get validators).
    pub method: &'a str,
    pub if_none_match: Option<&'a str>,
    pub accept_encoding: Option<&'a str>,
}

/// The answer to write.
#[derive(Debug)]
pub struct Prepared {
    pub status: u16,
    pub body: Bytes,
    /// Headers to add: `etag`, `vary`, `content-encoding`.
    pub headers: Vec<(&'static str, String)>,
}

/// Routes whose 200 answers carry an `ETag` (the edge's route kinds).
fn tagged(route: &str) -> bool {
    matches!(route, "get" | "openapi" | "docs")
}

/// Routes whose bodies are the same for every client, and come from one allocation each
/// time (the rendered OpenAPI documents, the compiled-in /docs assets).
fn stable(route: &str) -> bool {
    matches!(route, "openapi" | "docs")
}

/// The tag and codings of stable bodies, computed once instead of per request (hashing and
/// compressing a 300 KB document costs milliseconds; an unauthenticated client could ask for
/// it in a loop). Keyed by the body's allocation, which the entry keeps alive so that no other
/// body can take its address; the oldest entry goes beyond [`MEMO_ENTRIES`].
struct Memo(Mutex<VecDeque<Memoized>>);

struct Memoized {
    body: Bytes,
    tag: String,
    /// Per coding tried: the coded body, or `None` when it did not shrink.
    coded: Vec<(Encoding, Option<Bytes>)>,
}

/// Documents of a few releases, the /docs assets, and the previous plan's documents.
const MEMO_ENTRIES: usize = 32;

static MEMO: LazyLock<Memo> = LazyLock::new(|| Memo(Mutex::new(VecDeque::new())));

impl Memo {
    fn with<T>(&self, body: &Bytes, f: impl FnOnce(&mut Memoized) -> T) -> T {
        let mut entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let same = |m: &Memoized| m.body.as_ptr() == body.as_ptr() && m.body.len() == body.len();
        let i = match entries.iter().position(same) {
            Some(i) => i,
            None => {
                if entries.len() >= MEMO_ENTRIES {
                    entries.pop_front();
                }
                entries.push_back(Memoized {
                    body: body.clone(),
                    tag: etag::strong(body),
                    coded: Vec::new(),
                });
                entries.len() - 1
            }
        };
        f(&mut entries[i])
    }

    fn tag(&self, body: &Bytes) -> String {
        self.with(body, |m| m.tag.clone())
    }

    fn coded(&self, body: &Bytes, enc: Encoding) -> Option<Bytes> {
        self.with(body, |m| {
            if let Some((_, c)) = m.coded.iter().find(|(e, _)| *e == enc) {
                return c.clone();
            }
            let c = compress::smaller(enc, body).map(Bytes::from);
            m.coded.push((enc, c.clone()));
            c
        })
    }
}

/// The representation of an answer (`status`, `content_type`, identity `body`) for `asked`.
pub fn prepare(
    asked: Asked<'_>,
    route: &str,
    status: u16,
    content_type: &str,
    body: Bytes,
) -> Prepared {
    let mut headers = Vec::new();
    let compressible = status != 204 && compress::compressible(content_type);
    if compressible {
        // The answer depends on Accept-Encoding whatever this one's size: caches must key on it.
        headers.push(("vary", "accept-encoding".to_string()));
    }
    let stable = status == 200 && stable(route);
    let reads = asked.method == "GET" || asked.method == "HEAD";
    let tag = (status == 200 && reads && tagged(route)).then(|| match stable {
        true => MEMO.tag(&body),
        false => etag::strong(&body),
    });
    if let (Some(tag), Some(inm)) = (&tag, asked.if_none_match) {
        if etag::matches(inm, tag) {
            // 304 carries the validator the 200 would have carried (RFC 9110 §15.4.5).
            let coded = compressible
                .then(|| compress::negotiate(asked.accept_encoding))
                .flatten()
                .filter(|_| body.len() >= compress::MIN_BYTES);
            let shown = match coded {
                Some(enc) => etag::with_coding(tag, enc.token()),
                None => tag.clone(),
            };
            headers.push(("etag", shown));
            return Prepared {
                status: 304,
                body: Bytes::new(),
                headers,
            };
        }
    }
    let coded = match (compressible, stable) {
        (false, _) => None,
        (true, false) => compress::choose(asked.accept_encoding, content_type, &body)
            .map(|(enc, coded)| (enc, Bytes::from(coded))),
        (true, true) => {
            let coded = compress::pick(asked.accept_encoding, content_type, body.len())
                .and_then(|enc| MEMO.coded(&body, enc).map(|c| (enc, c)));
            compress::count(coded.as_ref().map(|(e, c)| (*e, body.len() - c.len())));
            coded
        }
    };
    let (body, coding) = match coded {
        Some((enc, coded)) => (coded, Some(enc)),
        None => (body, None),
    };
    if let Some(tag) = tag {
        headers.push((
            "etag",
            match coding {
                Some(enc) => etag::with_coding(&tag, enc.token()),
                None => tag,
            },
        ));
    }
    if let Some(enc) = coding {
        headers.push(("content-encoding", enc.token().to_string()));
    }
    Prepared {
        status,
        body,
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big() -> Bytes {
        let items: Vec<String> = (0..60)
            .map(|i| format!(r#"{{"id":"con_{i}","email":"u{i}@example.com"}}"#))
            .collect();
        Bytes::from(format!(r#"{{"data":[{}]}}"#, items.join(",")))
    }

    fn header<'p>(p: &'p Prepared, name: &str) -> Option<&'p str> {
        p.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_record_is_tagged_compressed_and_revalidated() {
        let get = Asked {
            method: "GET",
            if_none_match: None,
            accept_encoding: Some("gzip"),
        };
        let p = prepare(get, "get", 200, "application/json", big());
        assert_eq!(p.status, 200);
        assert_eq!(header(&p, "content-encoding"), Some("gzip"));
        assert_eq!(header(&p, "vary"), Some("accept-encoding"));
        let tag = header(&p, "etag").expect("etag").to_string();
        assert!(tag.ends_with("-gzip\""), "{tag}");
        // Revalidating with the tag, with or without the coding: 304, empty.
        let plain = etag::strong(&big());
        for inm in [tag.as_str(), plain.as_str()] {
            let again = Asked {
                if_none_match: Some(inm),
                ..get
            };
            let p = prepare(again, "get", 200, "application/json", big());
            assert_eq!(p.status, 304);
            assert!(p.body.is_empty());
            assert_eq!(header(&p, "etag"), Some(tag.as_str()));
        }
        let stale = Asked {
            if_none_match: Some("\"0000\""),
            ..get
        };
        assert_eq!(
            prepare(stale, "get", 200, "application/json", big()).status,
            200
        );
    }

    #[test]
    fn searches_writes_and_small_problems_get_no_tag_and_no_coding() {
        let post = Asked {
            method: "POST",
            if_none_match: Some("*"),
            accept_encoding: Some("br"),
        };
        let p = prepare(post, "search", 200, "application/json", big());
        assert_eq!(p.status, 200);
        assert!(header(&p, "etag").is_none());
        assert_eq!(
            header(&p, "content-encoding"),
            Some("br"),
            "big JSON still compresses"
        );
        let problem = Bytes::from_static(br#"{"type":"x","status":404}"#);
        let get = Asked {
            method: "GET",
            if_none_match: Some("*"),
            accept_encoding: Some("gzip"),
        };
        let p = prepare(get, "get", 404, "application/problem+json", problem.clone());
        assert_eq!(p.status, 404);
        assert_eq!(p.body, problem);
        assert!(header(&p, "etag").is_none() && header(&p, "content-encoding").is_none());
    }

    #[test]
    fn a_stable_body_is_tagged_and_coded_once() {
        let get = Asked {
            method: "GET",
            if_none_match: None,
            accept_encoding: Some("br"),
        };
        let body = big();
        let a = prepare(get, "openapi", 200, "application/json", body.clone());
        let b = prepare(get, "openapi", 200, "application/json", body.clone());
        assert_eq!(header(&a, "content-encoding"), Some("br"));
        // The second answer is the first one's bytes, not a second compression.
        assert_eq!(a.body.as_ptr(), b.body.as_ptr());
        assert_eq!(header(&a, "etag"), header(&b, "etag"));
        // The same tag and the same bytes a per-request coding gives.
        let per_request = prepare(get, "get", 200, "application/json", body.clone());
        assert_eq!(header(&a, "etag"), header(&per_request, "etag"));
        assert_eq!(a.body, per_request.body);
        // Another body (a reloaded plan's document) is another entry.
        let other = Bytes::from(big().to_vec());
        let c = prepare(get, "openapi", 200, "application/json", other);
        assert_ne!(c.body.as_ptr(), a.body.as_ptr());
    }
}
