//! The last step before an answer is written: which representation of it the client gets.
//! Composes [`crate::etag`] (a strong `ETag`, `If-None-Match` → 304) and
//! [`crate::compress`] (gzip/brotli by `Accept-Encoding`, `Vary`). The response writer
//! calls [`prepare`] once per answer and writes what it returns; nothing else here touches
//! the session.
//!
//! Validators go on what can be revalidated: a single record (`GET /v1/{resource}/{id}`),
//! the OpenAPI document and the /docs assets. Searches, writes and problems get none.

use bytes::Bytes;

use crate::{compress, etag};

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
    let reads = asked.method == "GET" || asked.method == "HEAD";
    let tag = (status == 200 && reads && tagged(route)).then(|| etag::strong(&body));
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
    let (body, coding) = match compressible
        .then(|| compress::choose(asked.accept_encoding, content_type, &body))
        .flatten()
    {
        Some((enc, coded)) => (Bytes::from(coded), Some(enc)),
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
}
