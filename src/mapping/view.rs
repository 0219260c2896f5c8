//! A borrowed view of an upstream answer's JSON: what a GET reads one record through
//! without building a `serde_json::Value` for it.
//!
//! A `Value` object is a `preserve_order` map: every key is an owned `String` hashed (SipHash)
//! into an `IndexMap`, and each field the mapping reads is hashed again to be found — ~14k
//! of a GET's instructions for crm-core's 11-member record, most of it for keys nobody keeps.
//! A [`Node`] borrows its keys and strings from the answer's bytes (a string with escapes is
//! the only one copied) and keeps an object's members in a vector, found by comparing keys:
//! a record has a dozen members, and a mapping reads each once.
//!
//! It reads exactly as the value would: parsed by serde_json itself (same grammar, same
//! numbers, same recursion limit, same refusal of trailing bytes or bad UTF-8); a key given
//! twice means its last value, as the map keeps it; JSON pointers as `Value::pointer`
//! (RFC 6901). Values leave the view as `Value`s ([`Node::to_value`]), one field at a time.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// One JSON value, borrowing from the text it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// Members in the order given, duplicates included (the last one counts).
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// Parses `bytes` as `serde_json::from_slice` would parse them into a `Value`.
    pub fn parse(bytes: &'a [u8]) -> serde_json::Result<Node<'a>> {
        // Checked as UTF-8 once, not string by string as `from_slice` does (~1.7k of a
        // GET's instructions). Bytes that are not UTF-8 are refused either way: outside a
        // string they are not JSON, inside one `from_slice` refuses them (its error here).
        match std::str::from_utf8(bytes) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(bytes),
        }
    }

    /// The member `key` of an object (its last occurrence, as a map keeps it).
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|m| &m.1),
            _ => None,
        }
    }

    /// The value at a path of member names (`UpPath`'s segments).
    pub fn path(&self, segments: &[String]) -> Option<&Node<'a>> {
        segments.iter().try_fold(self, |cur, seg| cur.get(seg))
    }

    /// The value at a JSON pointer, as `Value::pointer` finds it.
    pub fn pointer(&self, pointer: &str) -> Option<&Node<'a>> {
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        rest.split('/').try_fold(self, |target, token| {
            let token = unescape(token);
            match target {
                Node::Object(_) => target.get(&token),
                Node::Array(list) => index(&token).and_then(|i| list.get(i)),
                _ => None,
            }
        })
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value this node stands for.
    pub fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(n) => Value::Number(n.clone()),
            Node::String(s) => Value::String(s.as_ref().to_owned()),
            Node::Array(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Node::Object(members) => {
                let mut m = Map::with_capacity(members.len());
                for (k, v) in members {
                    m.insert(k.as_ref().to_owned(), v.to_value());
                }
                Value::Object(m)
            }
        }
    }
}

/// A pointer token with `~1` and `~0` undone, in that order (RFC 6901 §4).
fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

/// An array index in a pointer: decimal, no sign, no leading zero.
fn index(s: &str) -> Option<usize> {
    if s.starts_with('+') || (s.starts_with('0') && s.len() != 1) {
        return None;
    }
    s.parse().ok()
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Node<'de>, E> {
        // As `Value` does: a float JSON can hold (serde_json never gives NaN or infinity).
        Ok(Number::from_f64(n).map_or(Node::Null, Node::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut members = Vec::with_capacity(16);
        while let Some(Key(k)) = map.next_key()? {
            members.push((k, map.next_value()?));
        }
        Ok(Node::Object(members))
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every text reads as the `Value` serde_json parses from it, or fails as it fails.
    #[test]
    fn reads_as_the_value_does() {
        let texts: &[&[u8]] = &[
            br#"{"a":1,"b":"x","c":[1,2.5,-3,true,null],"d":{"e":"\u00e9\n"},"a":2}"#,
            br#"{"big":18446744073709551615,"neg":-9223372036854775808,"f":1e400}"#,
            br#"[{"k\"ey":"v"},"\ud83d\ude00",0.1,-0.0]"#,
            br#""plain""#,
            b"null",
            b"  {}  ",
            br#"{"a":1} x"#,
            br#"{"a":"\ud800"}"#,
            b"{\"a\":\"\xff\"}",
            br#"{"a":1,}"#,
            b"",
        ];
        for t in texts {
            let value: serde_json::Result<Value> = serde_json::from_slice(t);
            let node = Node::parse(t);
            let t = String::from_utf8_lossy(t);
            match (value, node) {
                (Ok(v), Ok(n)) => assert_eq!(n.to_value(), v, "{t}"),
                (Err(_), Err(_)) => {}
                (v, n) => panic!("{t}: value {v:?}, node {n:?}"),
            }
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(serde_json::from_str::<Value>(&deep).is_err());
        assert!(Node::parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn keys_and_strings_borrow_unless_escaped() {
        let text = br#"{"plain":"text","esc\u0061ped":"a\nb"}"#;
        let Node::Object(members) = Node::parse(text).unwrap() else {
            panic!("an object")
        };
        assert!(matches!(members[0].0, Cow::Borrowed("plain")));
        assert!(matches!(members[0].1, Node::String(Cow::Borrowed("text"))));
        assert!(matches!(&members[1].0, Cow::Owned(k) if k == "escaped"));
        assert!(matches!(&members[1].1, Node::String(Cow::Owned(s)) if s == "a\nb"));
    }

    /// Pointers find what `Value::pointer` finds, the last of a repeated key included.
    #[test]
    fn pointers_find_what_value_pointer_finds() {
        let text =
            r#"{"data":{"record":[{"id":7},{"a/b":1,"m~n":2,"id":8,"id":9}]},"":{"":3},"01":4}"#;
        let value: Value = serde_json::from_str(text).unwrap();
        let node = Node::parse(text.as_bytes()).unwrap();
        for p in [
            "",
            "/data",
            "/data/record/1/id",
            "/data/record/0/id",
            "/data/record/01/id",
            "/data/record/+1",
            "/data/record/2",
            "/data/record/1/a~1b",
            "/data/record/1/m~0n",
            "/data/record/1/m~n",
            "//",
            "/01",
            "data",
            "/data/record/1/id/x",
        ] {
            assert_eq!(
                node.pointer(p).map(Node::to_value),
                value.pointer(p).cloned(),
                "{p}"
            );
        }
        assert_eq!(node.get("01").map(Node::to_value), Some(Value::from(4)));
        assert_eq!(node.get("missing"), None);
        assert_eq!(Node::Null.get("a"), None);
    }
}
