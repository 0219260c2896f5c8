//! Memos of sealed and opened ids: a cached GET or a page of records seals the same
//! (type, tenant, id) over and over, and AES-GCM-SIV derives its per-message keys anew for
//! each (~3k instructions a seal). Sealing is deterministic, so a memo returns exactly what
//! sealing would.
//!
//! Bounded by construction: a fixed number of slots, each holding one entry; an entry
//! goes to the slot its key hashes to (foldhash with a per-process random seed, so a
//! client cannot aim entries at one slot; a slot that is shared all the same only costs a
//! seal again) and replaces whatever was there. Ids longer than
//! [`MAX_KEY`] bytes are not memoized.

use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;

use super::InternalId;

/// Slots per memo: at most this many entries, each under ~200 bytes.
pub const SLOTS: usize = 4096;
/// Internal ids and public ids longer than this are sealed or opened without the memo.
pub const MAX_KEY: usize = 64;

struct Sealed {
    prefix: Box<str>,
    tenant: u32,
    kind: u8,
    id: InternalId,
    public: Box<str>,
}

struct Opened {
    prefix: Box<str>,
    tenant: u32,
    public: Box<str>,
    kind: u8,
    id: InternalId,
}

pub struct Memo {
    hasher: foldhash::quality::RandomState,
    sealed: Box<[Mutex<Option<Sealed>>]>,
    opened: Box<[Mutex<Option<Opened>>]>,
}

fn slots<T>() -> Box<[Mutex<Option<T>>]> {
    (0..SLOTS).map(|_| Mutex::new(None)).collect()
}

fn id_len(id: &InternalId) -> usize {
    match id {
        InternalId::Int(_) => 8,
        InternalId::Str(s) => s.len(),
    }
}

impl Memo {
    pub fn new() -> Memo {
        Memo {
            hasher: Default::default(),
            sealed: slots(),
            opened: slots(),
        }
    }

    fn slot(&self, parts: impl Hash) -> usize {
        (self.hasher.hash_one(parts) as usize) % SLOTS
    }

    /// The memoized public id of (prefix, tenant, kind, id), or `seal`'s (then remembered).
    pub fn seal(
        &self,
        prefix: &str,
        tenant: u32,
        kind: u8,
        id: &InternalId,
        seal: impl FnOnce() -> String,
    ) -> String {
        if id_len(id) > MAX_KEY {
            return seal();
        }
        let slot = &self.sealed[self.slot((prefix, tenant, kind, id))];
        if let Ok(guard) = slot.lock() {
            if let Some(e) = guard.as_ref() {
                if e.tenant == tenant && e.kind == kind && &e.id == id && &*e.prefix == prefix {
                    return e.public.to_string();
                }
            }
        }
        let public = seal();
        if let Ok(mut guard) = slot.lock() {
            *guard = Some(Sealed {
                prefix: prefix.into(),
                tenant,
                kind,
                id: id.clone(),
                public: public.as_str().into(),
            });
        }
        public
    }

    /// The memoized opening of `public`, or `open`'s; only ids that opened are remembered.
    pub fn open(
        &self,
        prefix: &str,
        tenant: u32,
        public: &str,
        open: impl FnOnce() -> Option<(u8, InternalId)>,
    ) -> Option<(u8, InternalId)> {
        if public.len() > MAX_KEY {
            return open();
        }
        let slot = &self.opened[self.slot((prefix, tenant, public))];
        if let Ok(guard) = slot.lock() {
            if let Some(e) = guard.as_ref() {
                if e.tenant == tenant && &*e.public == public && &*e.prefix == prefix {
                    return Some((e.kind, e.id.clone()));
                }
            }
        }
        let opened = open()?;
        if id_len(&opened.1) <= MAX_KEY {
            if let Ok(mut guard) = slot.lock() {
                *guard = Some(Opened {
                    prefix: prefix.into(),
                    tenant,
                    public: public.into(),
                    kind: opened.0,
                    id: opened.1.clone(),
                });
            }
        }
        Some(opened)
    }
}

impl Default for Memo {
    fn default() -> Memo {
        Memo::new()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{InternalId, Sealer};
    use super::SLOTS;

    #[test]
    fn memoized_ids_are_the_sealed_ones_for_each_type_tenant_and_kind() {
        let s = Sealer::new(b"memo id secret 1", b"memo cursor secret");
        // More ids than slots: entries replace each other, answers never change.
        for round in 0..2 {
            for n in 0..(SLOTS as i64 + 500) {
                let id = InternalId::Int(n);
                let tenant = (n % 3) as u32;
                let public = s.seal_id("con", tenant, 0, &id);
                assert_eq!(
                    public,
                    s.seal_id_uncached("con", tenant, 0, &id),
                    "{round}/{n}"
                );
                assert_eq!(s.open_id("con", tenant, &public), Some((0, id.clone())));
                // Another tenant, type or kind never gets this entry.
                assert_eq!(s.open_id("con", tenant + 1, &public), None);
                assert_eq!(s.open_id("cmp", tenant, &public), None);
                assert_ne!(s.seal_id("con", tenant, 1, &id), public);
                assert_ne!(s.seal_id("cmp", tenant, 0, &id), public);
            }
        }
        let uuid = InternalId::Str("7f1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d".into());
        let act = s.seal_id("act", 9, 2, &uuid);
        assert_eq!(act, s.seal_id_uncached("act", 9, 2, &uuid));
        assert_eq!(s.open_id("act", 9, &act), Some((2, uuid)));
        // A forged id still fails once genuine ones are memoized.
        let mut forged = act.clone();
        forged.pop();
        forged.push(if act.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(s.open_id("act", 9, &forged), None);
    }
}
