//! Strict parsing of client JSON bodies: valid UTF-8 JSON (else 400 `malformed-json`),
//! nested at most [`MAX_DEPTH`] levels and without duplicate object members (else 400
//! `invalid-request` pointing at the offending place). Duplicate members are refused
//! rather than resolved "last one wins": two readers of the same body must never
//! disagree about what it says.
//!
//! And the one JSON string writer of the answers written by hand (public records, the
//! access line): [`write_str`].

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::problem::{FieldError, Kind, Problem};

/// Deepest nesting of arrays and objects a request body may have.
pub const MAX_DEPTH: usize = 64;

enum Refusal {
    TooDeep(String),
    Duplicate(String),
}

/// Parses a request body under the rules above.
pub fn parse(bytes: &[u8]) -> Result<Value, Problem> {
    let refusal = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Node {
        depth: 0,
        pointer: String::new(),
        refusal: &refusal,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    match (parsed, refusal.into_inner()) {
        (Ok(v), _) => Ok(v),
        (Err(_), Some(Refusal::TooDeep(at))) => Err(Problem::invalid(vec![FieldError::new(
            at,
            format!("is nested deeper than {MAX_DEPTH} levels"),
        )])),
        (Err(_), Some(Refusal::Duplicate(at))) => Err(Problem::invalid(vec![FieldError::new(
            at,
            "appears more than once in its object",
        )])),
        (Err(_), None) => Err(Problem::new(
            Kind::MalformedJson,
            "The request body is not valid JSON",
        )),
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

struct Node<'r> {
    depth: usize,
    pointer: String,
    refusal: &'r RefCell<Option<Refusal>>,
}

impl Node<'_> {
    fn child(&self, token: &str) -> Node<'_> {
        Node {
            depth: self.depth + 1,
            pointer: format!("{}/{}", self.pointer, token),
            refusal: self.refusal,
        }
    }

    fn enter<E: de::Error>(&self) -> Result<(), E> {
        if self.depth >= MAX_DEPTH {
            *self.refusal.borrow_mut() = Some(Refusal::TooDeep(self.pointer.clone()));
            return Err(E::custom("too deep"));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self.child(&out.len().to_string()))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let at = escape(&key);
            if out.contains_key(&key) {
                *self.refusal.borrow_mut() =
                    Some(Refusal::Duplicate(format!("{}/{}", self.pointer, at)));
                return Err(de::Error::custom("duplicate member"));
            }
            let v = map.next_value_seed(self.child(&at))?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// A JSON string as `serde_json` writes it. It escapes exactly `"`, `\` and the controls
/// below U+0020; a string without them (a name, an id, most text) is copied as it is,
/// not escaped byte by byte.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    if !escapes(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Whether `s` holds a byte JSON escapes (`"`, `\`, below 0x20), eight bytes at a time
/// (a byte-at-a-time check cost ~4k of a GET's instructions for its ~20 strings). Each
/// test is the exact "has a byte below n" of bit twiddling: a flag can only be wrong above
/// a byte that is rightly flagged, so the word's answer is exact.
fn escapes(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let word = |x: u64| {
        below(x, 0x20)
            | below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
    };
    let mut words = s.chunks_exact(8);
    let mut found = 0;
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        found |= word(u64::from_le_bytes(b));
    }
    // The tail padded with a byte that needs no escape.
    let mut last = [b'a'; 8];
    last[..words.remainder().len()].copy_from_slice(words.remainder());
    (found | word(u64::from_le_bytes(last))) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-wise check finds exactly the bytes JSON escapes, wherever they are.
    #[test]
    fn escapes_finds_exactly_what_json_escapes() {
        let naive = |s: &[u8]| s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        for len in 0..=20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = vec![b'x'; len];
                    s[at] = b;
                    assert_eq!(escapes(&s), naive(&s), "{b:#x} at {at} of {len}");
                    // Next to bytes above 0x7f, which must not disturb the answer.
                    let mut t = vec![0xe9u8; len];
                    t[at] = b;
                    assert_eq!(escapes(&t), naive(&t), "{b:#x} at {at} of {len}, high");
                }
            }
        }
        let mut out = Vec::new();
        for s in [
            "",
            "plain",
            "q\"b\\s\n\u{1f}\u{7f}é€😀",
            "con_0123456789abcdef0123456789",
        ] {
            out.clear();
            write_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s}");
        }
    }

    fn nested(n: usize) -> String {
        "[".repeat(n) + &"]".repeat(n)
    }

    #[test]
    fn accepts_ordinary_json_in_order() {
        let v =
            parse(br#"{"b": [1, -2, 3.5, "x\u00e9", null, true], "a": {"c": {}}}"#).expect("valid");
        assert_eq!(
            v.to_string(),
            r#"{"b":[1,-2,3.5,"xé",null,true],"a":{"c":{}}}"#
        );
    }

    #[test]
    fn bounds_depth() {
        assert!(parse(nested(MAX_DEPTH).as_bytes()).is_ok());
        let p = parse(nested(MAX_DEPTH + 1).as_bytes()).expect_err("too deep");
        assert_eq!(p.kind, Kind::InvalidRequest);
        let p = parse(nested(100_000).as_bytes()).expect_err("far too deep");
        assert_eq!(p.kind, Kind::InvalidRequest);
        let p = parse(br#"{"a": {"b": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}"#).expect_err("deep");
        assert!(
            p.errors[0].pointer.starts_with("/a/b/0/0/"),
            "{:?}",
            p.errors
        );
    }

    #[test]
    fn refuses_duplicate_members_with_their_pointer() {
        let p = parse(br#"{"a": 1, "n": {"x/y": 1, "x/y": 2}}"#).expect_err("duplicate");
        assert_eq!(p.kind, Kind::InvalidRequest);
        assert_eq!(p.errors[0].pointer, "/n/x~1y");
        // The same member spelled with an escape is the same member.
        assert!(parse(br#"{"a": 1, "\u0061": 2}"#).is_err());
    }

    #[test]
    fn malformed_input_is_malformed_json() {
        for bad in [
            &b"{\"a\": \"\xff\xfe\"}"[..],
            b"{\"a\": 1e400}",
            b"{\"a\": 1",
            b"{} {}",
            b"",
            b"\"\\ud800\"",
        ] {
            let p = parse(bad).expect_err("malformed");
            assert_eq!(
                p.kind,
                Kind::MalformedJson,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn agrees_with_serde_json_on_valid_documents(s in "[\\[\\]{}\":,0-9a-z ]{0,64}") {
            if let Ok(v) = serde_json::from_str::<Value>(&s) {
                // Without duplicates or depth issues both parsers agree.
                if let Ok(mine) = parse(s.as_bytes()) {
                    proptest::prop_assert_eq!(mine, v);
                }
            }
        }
    }
}
