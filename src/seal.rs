//! Opaque public ids and cursors, sealed with the server's secrets.
//!
//! Ids are deterministic authenticated encryption (AES-256-GCM-SIV with a fixed nonce, a
//! deterministic AEAD: equal inputs give equal outputs, anything else is unreadable and
//! unforgeable). The type prefix and the tenant are associated data, so an id of another
//! tenant or another type fails to open exactly like a forged one. Cursors use the same
//! cipher with a random nonce and carry their issue time; they are bound to tenant, client,
//! version and the query by associated data.
//!
//! This module knows nothing of resources or mappings: callers pass the prefix and tenant.
//! Sealed and opened ids are memoized in bounded memos (`memo`).

mod memo;

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Longest public id the contract allows.
pub const MAX_ID_LEN: usize = 64;
/// Cursors are refused unread beyond this length.
pub const MAX_CURSOR_LEN: usize = 4096;

/// The internal id a public id stands for: legacy services use integers, audit uses UUIDs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InternalId {
    Int(i64),
    Str(String),
}

impl InternalId {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            InternalId::Int(n) => serde_json::Value::from(*n),
            InternalId::Str(s) => serde_json::Value::from(s.as_str()),
        }
    }

    /// The text form used in upstream paths and query strings.
    pub fn to_text(&self) -> String {
        match self {
            InternalId::Int(n) => n.to_string(),
            InternalId::Str(s) => s.clone(),
        }
    }
}

/// The keys derived from the configured secrets.
#[derive(Clone)]
pub struct Sealer {
    ids: Aes256GcmSiv,
    cursors: Aes256GcmSiv,
    memo: std::sync::Arc<memo::Memo>,
}

fn derive(secret: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| {
        // HMAC accepts keys of any length; this branch is unreachable in practice.
        <Hmac<Sha256> as Mac>::new_from_slice(b"\0").expect("hmac key")
    });
    mac.update(label);
    mac.finalize().into_bytes().into()
}

fn id_aad(prefix: &str, tenant: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(prefix.len() + 8);
    aad.extend_from_slice(b"id\0");
    aad.extend_from_slice(prefix.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&tenant.to_be_bytes());
    aad
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn get_varint(bytes: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for (i, b) in bytes.iter().enumerate() {
        if i >= 10 {
            return None;
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (i + 1 == bytes.len()).then_some(v);
        }
    }
    None
}

/// The 16 bytes of a lowercase canonical UUID (`8-4-4-4-12` hex), if `s` is one.
fn uuid_bytes(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let hex: Vec<u8> = b.iter().copied().filter(|c| *c != b'-').collect();
    if hex.len() != 32
        || !hex
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let v = |c: u8| {
            if c.is_ascii_digit() {
                c - b'0'
            } else {
                c - b'a' + 10
            }
        };
        out[i] = v(pair[0]) << 4 | v(pair[1]);
    }
    Some(out)
}

fn uuid_text(b: &[u8]) -> String {
    let hex = crate::hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Zig-zag so that negative ids (never seen, but representable) stay short.
fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

impl Sealer {
    pub fn new(id_secret: &[u8], cursor_secret: &[u8]) -> Sealer {
        let ids = derive(id_secret, b"prospect-edge ids v1");
        let cursors = derive(cursor_secret, b"prospect-edge cursors v1");
        Sealer {
            ids: Aes256GcmSiv::new(&ids.into()),
            cursors: Aes256GcmSiv::new(&cursors.into()),
            memo: Default::default(),
        }
    }

    /// `prefix` without the underscore (`con`), the id's tenant, the internal id;
    /// `kind` distinguishes sources that share a prefix (activities: engagement or audit).
    pub fn seal_id(&self, prefix: &str, tenant: u32, kind: u8, id: &InternalId) -> String {
        self.memo.seal(prefix, tenant, kind, id, || {
            self.seal_id_uncached(prefix, tenant, kind, id)
        })
    }

    fn seal_id_uncached(&self, prefix: &str, tenant: u32, kind: u8, id: &InternalId) -> String {
        let mut plain = Vec::with_capacity(20);
        plain.push(kind);
        match id {
            InternalId::Int(n) => {
                plain.push(1);
                put_varint(&mut plain, zigzag(*n));
            }
            InternalId::Str(s) => match uuid_bytes(s) {
                // Canonical UUIDs (audit's event ids) pack into 16 bytes: ids stay ≤ 64 chars.
                Some(b) => {
                    plain.push(3);
                    plain.extend_from_slice(&b);
                }
                None => {
                    plain.push(2);
                    plain.extend_from_slice(s.as_bytes());
                }
            },
        }
        let aad = id_aad(prefix, tenant);
        let sealed = self
            .ids
            .encrypt(
                Nonce::from_slice(&[0u8; 12]),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut out = String::with_capacity(prefix.len() + 1 + sealed.len() * 4 / 3 + 2);
        out.push_str(prefix);
        out.push('_');
        B64.encode_string(&sealed, &mut out);
        out
    }

    /// Opens a public id. `None` for anything forged, truncated, of another tenant or of
    /// another type: callers answer 404 without calling any upstream.
    pub fn open_id(&self, prefix: &str, tenant: u32, public: &str) -> Option<(u8, InternalId)> {
        if public.len() > MAX_ID_LEN {
            return None;
        }
        self.memo.open(prefix, tenant, public, || {
            self.open_id_uncached(prefix, tenant, public)
        })
    }

    fn open_id_uncached(
        &self,
        prefix: &str,
        tenant: u32,
        public: &str,
    ) -> Option<(u8, InternalId)> {
        let rest = public.strip_prefix(prefix)?.strip_prefix('_')?;
        let sealed = B64.decode(rest).ok()?;
        let aad = id_aad(prefix, tenant);
        let plain = self
            .ids
            .decrypt(
                Nonce::from_slice(&[0u8; 12]),
                Payload {
                    msg: &sealed,
                    aad: &aad,
                },
            )
            .ok()?;
        let (&kind, rest) = plain.split_first()?;
        let (&tag, body) = rest.split_first()?;
        let id = match tag {
            1 => InternalId::Int(unzigzag(get_varint(body)?)),
            2 => InternalId::Str(String::from_utf8(body.to_vec()).ok()?),
            3 if body.len() == 16 => InternalId::Str(uuid_text(body)),
            _ => return None,
        };
        Some((kind, id))
    }

    /// Seals a cursor payload bound to `binding` (tenant, client, version and query hash).
    pub fn seal_cursor(&self, binding: &[u8], issued_at: i64, payload: &[u8]) -> String {
        let nonce: [u8; 12] = rand::random();
        let mut plain = Vec::with_capacity(payload.len() + 8);
        plain.extend_from_slice(&issued_at.to_be_bytes());
        plain.extend_from_slice(payload);
        let sealed = self
            .cursors
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: binding,
                },
            )
            .unwrap_or_default();
        let mut raw = Vec::with_capacity(12 + sealed.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        B64.encode(raw)
    }

    /// Opens a cursor; `None` when tampered, foreign, or older than `max_age_s` at `now`.
    pub fn open_cursor(
        &self,
        binding: &[u8],
        now: i64,
        max_age_s: i64,
        cursor: &str,
    ) -> Option<Vec<u8>> {
        if cursor.len() > MAX_CURSOR_LEN {
            return None;
        }
        let raw = B64.decode(cursor).ok()?;
        if raw.len() < 12 + 16 + 8 {
            return None;
        }
        let (nonce, sealed) = raw.split_at(12);
        let plain = self
            .cursors
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: binding,
                },
            )
            .ok()?;
        let (ts, payload) = plain.split_at(8);
        let issued = i64::from_be_bytes(ts.try_into().ok()?);
        if issued > now + 60 || now - issued > max_age_s {
            return None;
        }
        Some(payload.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sealer() -> Sealer {
        Sealer::new(b"test id secret", b"test cursor secret")
    }

    #[test]
    fn ids_are_stable_short_and_url_safe() {
        let s = sealer();
        let a = s.seal_id("con", 1, 0, &InternalId::Int(1));
        assert_eq!(a, s.seal_id("con", 1, 0, &InternalId::Int(1)));
        assert!(a.starts_with("con_"));
        assert!(a.len() <= MAX_ID_LEN);
        assert!(a[4..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        let uuid = InternalId::Str("7f1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d".into());
        let act = s.seal_id("act", u32::MAX, 2, &uuid);
        assert!(act.len() <= MAX_ID_LEN, "{} chars", act.len());
        assert_eq!(s.open_id("act", u32::MAX, &act), Some((2, uuid)));
        let upper = InternalId::Str("NOT-A-UUID".into());
        let other = s.seal_id("act", 1, 2, &upper);
        assert_eq!(s.open_id("act", 1, &other), Some((2, upper)));
    }

    #[test]
    fn other_tenant_type_or_secret_does_not_open() {
        let s = sealer();
        let id = s.seal_id("con", 1, 0, &InternalId::Int(42));
        assert_eq!(s.open_id("con", 1, &id), Some((0, InternalId::Int(42))));
        assert_eq!(s.open_id("con", 2, &id), None);
        let as_company = id.replacen("con_", "cmp_", 1);
        assert_eq!(s.open_id("cmp", 1, &as_company), None);
        let other = Sealer::new(b"another", b"test cursor secret");
        assert_eq!(other.open_id("con", 1, &id), None);
        assert_eq!(s.open_id("con", 1, &id[..id.len() - 1]), None);
        assert_eq!(s.open_id("con", 1, "con_"), None);
    }

    #[test]
    fn cursors_bind_and_expire() {
        let s = sealer();
        let c = s.seal_cursor(b"t1|app|2026-11-01|q", 1000, b"offset=25");
        assert_eq!(
            s.open_cursor(b"t1|app|2026-11-01|q", 1000, 86_400, &c)
                .as_deref(),
            Some(&b"offset=25"[..])
        );
        assert_eq!(
            s.open_cursor(b"t2|app|2026-11-01|q", 1000, 86_400, &c),
            None
        );
        assert_eq!(
            s.open_cursor(b"t1|app|2026-11-01|q", 1000 + 86_401, 86_400, &c),
            None
        );
    }

    proptest! {
        #[test]
        fn id_round_trips(tenant in any::<u32>(), n in any::<i64>(), kind in 0u8..4) {
            let s = sealer();
            let id = s.seal_id("deal", tenant, kind, &InternalId::Int(n));
            prop_assert!(id.len() <= MAX_ID_LEN);
            prop_assert_eq!(s.open_id("deal", tenant, &id), Some((kind, InternalId::Int(n))));
        }

        #[test]
        fn any_single_bit_flip_of_an_id_is_rejected(n in any::<i64>(), bit in 0usize..400) {
            let s = sealer();
            let id = s.seal_id("con", 7, 0, &InternalId::Int(n));
            let mut raw = B64.decode(&id[4..]).unwrap();
            let bit = bit % (raw.len() * 8);
            raw[bit / 8] ^= 1 << (bit % 8);
            let forged = format!("con_{}", B64.encode(raw));
            prop_assert_eq!(s.open_id("con", 7, &forged), None);
        }

        #[test]
        fn cursor_round_trips_and_any_single_bit_flip_is_rejected(
            payload in proptest::collection::vec(any::<u8>(), 0..200), bit in 0usize..4000
        ) {
            let s = sealer();
            let c = s.seal_cursor(b"bind", 50, &payload);
            prop_assert_eq!(s.open_cursor(b"bind", 60, 86_400, &c), Some(payload.clone()));
            let mut raw = B64.decode(&c).unwrap();
            let bit = bit % (raw.len() * 8);
            raw[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(s.open_cursor(b"bind", 60, 86_400, &B64.encode(raw)), None);
        }
    }
}
