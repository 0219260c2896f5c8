//! The shared in-memory world behind all six services: tenants, their users and
//! records, plus per-service call counters and the configurable latency. It owns no
//! HTTP: the service modules read and write it under one lock, never across an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::time::now_ms;

/// Service names in their canonical order (ports base..base+5 follow it).
pub const SERVICES: [&str; 6] = [
    "crm-core",
    "sales",
    "workflow",
    "engagements",
    "audit",
    "iam",
];

/// The two reference backends of other families (`BACKENDS.md`), after the six (ports
/// base+6 and base+7).
pub const DIALECT_SERVICES: [&str; 2] = ["directory", "accounts"];

/// How many services run, the six and the two.
pub(crate) const ALL_SERVICES: usize = SERVICES.len() + DIALECT_SERVICES.len();

/// The service at an index of `SERVICES` followed by `DIALECT_SERVICES`.
pub(crate) fn service_name(i: usize) -> Option<&'static str> {
    SERVICES
        .iter()
        .chain(DIALECT_SERVICES.iter())
        .nth(i)
        .copied()
}

pub(crate) fn service_index(name: &str) -> Option<usize> {
    SERVICES
        .iter()
        .chain(DIALECT_SERVICES.iter())
        .position(|s| *s == name)
}

/// splitmix64: tiny, fast, deterministic.
#[derive(Clone)]
pub(crate) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo).max(1) as u64) as i64
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    /// A version-4 UUID string.
    pub fn uuid(&mut self) -> String {
        let a = self.next();
        let b = self.next();
        let a = (a & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
        let b = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xFFFF,
            a & 0xFFFF,
            b >> 48,
            b & 0xFFFF_FFFF_FFFF
        )
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Contact {
    pub id: u64,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: String,
    pub phone: Option<String>,
    pub job_title: Option<String>,
    pub company_id: Option<u64>,
    pub owner: u64,
    pub lifecycle: i64,
    pub created: i64,
    pub modified: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct Company {
    pub id: u64,
    pub name: String,
    pub domain: Option<String>,
    pub industry: Option<String>,
    pub employees: Option<i64>,
    pub phone: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub owner: u64,
    pub created: i64,
    pub modified: i64,
    pub row_version: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct Deal {
    pub id: u64,
    pub name: String,
    pub amount_cents: Option<i64>,
    pub currency: String,
    pub pipeline: u64,
    pub stage: u64,
    pub close_date: Option<i64>,
    pub company: Option<u64>,
    pub contacts: Vec<u64>,
    pub owner: u64,
    pub created: i64,
    pub modified: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct Stage {
    pub id: u64,
    pub name: String,
    pub sort_order: i64,
    pub probability: i64,
    /// 0 open, 1 won, 2 lost.
    pub stage_type: u8,
}

#[derive(Clone, Debug)]
pub(crate) struct Pipeline {
    pub id: u64,
    pub name: String,
    pub sort_order: i64,
    pub stages: Vec<Stage>,
}

#[derive(Clone, Debug)]
pub(crate) struct Task {
    pub id: u64,
    pub subject: String,
    pub notes: Option<String>,
    pub done: bool,
    pub priority: i64,
    pub due: Option<i64>,
    pub completed: Option<i64>,
    /// ("CONTACT" | "COMPANY" | "DEAL", id)
    pub related: Option<(&'static str, u64)>,
    pub owner: u64,
    pub created: i64,
    pub modified: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct Engagement {
    pub id: u64,
    pub kind: &'static str,
    pub owner: u64,
    pub timestamp: i64,
    pub created: i64,
    pub updated: i64,
    pub contacts: Vec<u64>,
    pub companies: Vec<u64>,
    pub deals: Vec<u64>,
    pub metadata: Map<String, Value>,
}

#[derive(Clone, Debug)]
pub(crate) struct AuditEvent {
    pub event_id: String,
    pub event_type: String,
    pub entity_type: &'static str,
    pub entity_id: u64,
    pub actor: Option<u64>,
    /// epoch seconds
    pub occurred: i64,
    pub changes: Value,
}

/// A contact of the OData `directory` service (its own records, not crm-core's).
#[derive(Clone, Debug)]
pub(crate) struct DirContact {
    /// lowercase hyphenated GUID
    pub id: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub job_title: Option<String>,
    pub owner: u64,
    pub lifecycle: Option<i64>,
    /// 100-ns ticks since the epoch
    pub created: i64,
    pub modified: i64,
    pub version: i64,
}

/// An organization of the JSON:API `accounts` service.
#[derive(Clone, Debug)]
pub(crate) struct Organization {
    pub id: u64,
    pub name: String,
    pub domain: Option<String>,
    pub industry: Option<String>,
    pub employees: Option<i64>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub owner: u64,
    /// epoch ms
    pub created: i64,
    pub updated: i64,
}

#[derive(Default)]
pub(crate) struct Tenant {
    pub name: String,
    pub users: BTreeMap<u64, String>,
    pub contacts: BTreeMap<u64, Contact>,
    pub companies: BTreeMap<u64, Company>,
    pub deals: BTreeMap<u64, Deal>,
    pub pipelines: Vec<Pipeline>,
    pub tasks: BTreeMap<u64, Task>,
    /// keyed by (timestamp, id): the only order engagements are ever listed in
    pub engagements: BTreeMap<(i64, u64), Engagement>,
    pub engagement_ts: HashMap<u64, i64>,
    /// keyed by (occurredAt seconds, sequence)
    pub audit: BTreeMap<(i64, u64), AuditEvent>,
    pub audit_ids: HashMap<String, (i64, u64)>,
    pub next_contact: u64,
    pub next_company: u64,
    pub next_deal: u64,
    pub next_task: u64,
    pub next_engagement: u64,
    pub next_audit: u64,
    pub rng: Option<Rng>,
    /// the directory's contacts by ContactId (their default order)
    pub directory: BTreeMap<String, DirContact>,
    /// the directory's VersionNumber sequence (one per tenant, as a rowversion)
    pub directory_version: i64,
    pub directory_rng: Option<Rng>,
    pub organizations: BTreeMap<u64, Organization>,
    pub next_organization: u64,
}

impl Tenant {
    pub fn stage(&self, stage: u64) -> Option<(&Pipeline, &Stage)> {
        self.pipelines
            .iter()
            .find_map(|p| p.stages.iter().find(|s| s.id == stage).map(|s| (p, s)))
    }

    pub fn pipeline(&self, id: u64) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.id == id)
    }

    pub fn insert_engagement(&mut self, e: Engagement) {
        self.engagement_ts.insert(e.id, e.timestamp);
        self.engagements.insert((e.timestamp, e.id), e);
    }

    pub fn engagement(&self, id: u64) -> Option<&Engagement> {
        let ts = self.engagement_ts.get(&id)?;
        self.engagements.get(&(*ts, id))
    }

    pub fn remove_engagement(&mut self, id: u64) -> Option<Engagement> {
        let ts = self.engagement_ts.remove(&id)?;
        self.engagements.remove(&(ts, id))
    }

    pub fn push_audit(&mut self, ev: AuditEvent) {
        self.next_audit += 1;
        let key = (ev.occurred, self.next_audit);
        self.audit_ids.insert(ev.event_id.clone(), key);
        self.audit.insert(key, ev);
    }

    /// Records what a write did, as the real platform's audit trail does.
    pub fn audit_write(
        &mut self,
        event_type: &str,
        entity_type: &'static str,
        entity_id: u64,
        actor: u64,
        changes: Value,
    ) {
        let rng = self.rng.get_or_insert(Rng(0xA0D1_7000 ^ self.next_audit));
        let event_id = rng.uuid();
        self.push_audit(AuditEvent {
            event_id,
            event_type: event_type.to_string(),
            entity_type,
            entity_id,
            actor: Some(actor),
            occurred: now_ms().div_euclid(1000),
            changes,
        });
    }
}

/// `{field: {"from": before, "to": after}}` for every field that differs.
pub(crate) fn diff(before: &Value, after: &Value, skip: &[&str]) -> Value {
    let empty = Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let mut out = Map::new();
    for (k, av) in a {
        if skip.contains(&k.as_str()) {
            continue;
        }
        let bv = b.get(k).unwrap_or(&Value::Null);
        if bv != av {
            out.insert(
                k.clone(),
                serde_json::json!({"from": bv.clone(), "to": av.clone()}),
            );
        }
    }
    Value::Object(out)
}

#[derive(Default)]
pub(crate) struct World {
    pub tenants: BTreeMap<u32, Tenant>,
}

pub(crate) struct Inner {
    pub world: RwLock<World>,
    pub calls: [AtomicU64; ALL_SERVICES],
    pub failing: [AtomicBool; ALL_SERVICES],
    pub latency_us: AtomicU64,
    pub interfere: AtomicU64,
    pub interfere_directory: AtomicU64,
    pub if_match_seen: std::sync::Mutex<Vec<String>>,
}

/// A cheap clone handle on the shared in-memory world.
#[derive(Clone)]
pub struct SimState {
    pub(crate) inner: Arc<Inner>,
}

impl SimState {
    pub(crate) fn new(world: World, latency: Duration) -> Self {
        SimState {
            inner: Arc::new(Inner {
                world: RwLock::new(world),
                calls: Default::default(),
                failing: Default::default(),
                latency_us: AtomicU64::new(latency.as_micros() as u64),
                interfere: AtomicU64::new(0),
                interfere_directory: AtomicU64::new(0),
                if_match_seen: Default::default(),
            }),
        }
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, World> {
        self.inner.world.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, World> {
        self.inner.world.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_micros(self.inner.latency_us.load(Ordering::Relaxed))
    }

    pub(crate) fn failing(&self, service: usize) -> bool {
        self.inner.failing[service].load(Ordering::Relaxed)
    }

    pub(crate) fn count_call(&self, service: usize) {
        self.inner.calls[service].fetch_add(1, Ordering::Relaxed);
    }

    /// Changes a user's role at runtime (iam and every service answer the new one at
    /// once). A user unknown to the tenant is added with that role.
    pub fn set_role(&self, tenant: u32, user: u64, role: &str) {
        let mut w = self.write();
        let t = w.tenants.entry(tenant).or_default();
        t.users.insert(user, role.to_string());
    }

    /// Number of records of a kind: "contacts", "companies", "deals", "pipelines",
    /// "tasks", "engagements", "audit", and of the two other backends "directory" (the
    /// directory's contacts) and "organizations" (the accounts service's). Panics on
    /// another kind (a typo in a test).
    pub fn count(&self, tenant: u32, kind: &str) -> usize {
        let w = self.read();
        let Some(t) = w.tenants.get(&tenant) else {
            assert!(
                matches!(
                    kind,
                    "contacts"
                        | "companies"
                        | "deals"
                        | "pipelines"
                        | "tasks"
                        | "engagements"
                        | "audit"
                        | "directory"
                        | "organizations"
                ),
                "unknown record kind {kind:?}"
            );
            return 0;
        };
        match kind {
            "contacts" => t.contacts.len(),
            "companies" => t.companies.len(),
            "deals" => t.deals.len(),
            "pipelines" => t.pipelines.len(),
            "tasks" => t.tasks.len(),
            "engagements" => t.engagements.len(),
            "audit" => t.audit.len(),
            "directory" => t.directory.len(),
            "organizations" => t.organizations.len(),
            other => panic!("unknown record kind {other:?}"),
        }
    }

    /// How many HTTP requests a service has received. Panics on an unknown name.
    pub fn calls(&self, service: &str) -> u64 {
        let i = service_index(service).unwrap_or_else(|| panic!("unknown service {service:?}"));
        self.inner.calls[i].load(Ordering::Relaxed)
    }

    /// The next `n` company full-replace PUTs meet a concurrent writer: the stored
    /// `rowVersion` moves on just before theirs is checked, so they answer VERSION_CONFLICT.
    pub fn interfere_with_company_writes(&self, n: u64) {
        self.inner.interfere.store(n, Ordering::SeqCst);
    }

    pub(crate) fn take_interference(&self) -> bool {
        self.inner
            .interfere
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// The next `n` directory PATCHes of an existing contact meet a concurrent writer:
    /// its version moves on just before their `If-Match` is checked (412 `0x80060882`
    /// when they name the version they read).
    pub fn interfere_with_directory_writes(&self, n: u64) {
        self.inner.interfere_directory.store(n, Ordering::SeqCst);
    }

    pub(crate) fn take_directory_interference(&self) -> bool {
        self.inner
            .interfere_directory
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// The `If-Match` values of every directory PATCH and DELETE so far, in order (`""`
    /// for one without the header).
    pub fn directory_if_match(&self) -> Vec<String> {
        self.inner
            .if_match_seen
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    pub(crate) fn note_if_match(&self, h: &axum::http::HeaderMap) {
        let v: Vec<&str> = h
            .get_all("if-match")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if let Ok(mut seen) = self.inner.if_match_seen.lock() {
            seen.push(v.join(","));
        }
    }

    /// While `failing`, the service answers every request (still counted) with HTTP 500
    /// in its own error format, as when it crashes mid-request. Panics on an unknown name.
    pub fn fail_service(&self, service: &str, failing: bool) {
        let i = service_index(service).unwrap_or_else(|| panic!("unknown service {service:?}"));
        self.inner.failing[i].store(failing, Ordering::Relaxed);
    }

    /// Latency added before every answer of every service.
    pub fn set_latency(&self, d: std::time::Duration) {
        self.inner
            .latency_us
            .store(d.as_micros() as u64, Ordering::Relaxed);
    }
}
