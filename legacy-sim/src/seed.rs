//! The deterministic seed: the same world on every start (splitmix64, fixed seeds).
//!
//! # Tenants and users
//!
//! | tenant | name | users |
//! | --- | --- | --- |
//! | 1 | Acme | 101 admin, 102 sales_manager, 103 sales_rep, 104 read_only |
//! | 2 | Globex | 201 admin, 202 sales_rep |
//!
//! Tenant 1 holds 10,000 contacts, 2,000 companies, 5,000 deals, 3 pipelines, 20,000
//! tasks, 50,000 engagements and 50,000 audit events; tenant 2 holds 5 contacts, 3
//! companies, 4 deals, 3 pipelines, 5 tasks, 6 engagements and 8 audit events. Ids
//! start at 1 in each tenant (so both have contact 1, company 1, deal 1, ...). Owners
//! of generated records are spread over 101/102/103 (tenant 1; 104 owns nothing) and
//! 201/202 (tenant 2). Timestamps fall in 2025–2026: creation, modification,
//! engagement and audit times before 2026-11-01 (so anything written at run time is
//! newer), due and close dates up to the end of 2026. Generated names and emails never
//! contain `%` or `_`; emails are `first.last{contactId}@example.com`, unique per tenant.
//!
//! # Predictable records of tenant 1 (tests rely on these)
//!
//! Companies (all `rowVersion` 1):
//! - 1 "Acme Corporation", webDomain "acme.example.com", industryCode "SOFTWARE",
//!   numEmployees 250, phone "+1-555-0100", city "Springfield", countryCode "US", owner 101
//! - 2 "Initech", "initech.example.com", "SOFTWARE", 80, phone null, "Austin", "US", owner 103
//! - 3 "Fifty_Fifty Ltd" (a literal `_`), "fiftyfifty.example.com", "RETAIL", 12, "London", "GB", owner 102
//! - 4 "100% Organic Inc" (a literal `%`), "organic.example.com", "FOOD", numEmployees null, "Toronto", "CA", owner 101
//! - 5 "Umbrella Holdings", webDomain null, industryCode null, "Berlin", "DE", owner 103
//!
//! Contacts:
//! - 1 Ada Lovelace, "ada.lovelace1@example.com", "+1-555-0101", jobTitle "Chief Analyst",
//!   companyId 1, owner 101, lifecycleStage 2 (lead), createdAt 1735812000000 (2025-01-02T10:00:00Z),
//!   modifiedAt 1748779200000 (2025-06-01T12:00:00Z)
//! - 2 Grace Hopper, "grace.hopper2@example.com", "+1-555-0102", "VP Engineering", companyId 1, owner 102, lifecycleStage 3
//! - 3 Alan Turing, "alan.turing3@example.com", phoneNumber null, jobTitle null, companyId 2, owner 103, lifecycleStage 4
//! - 4 Edsger Dijkstra, "edsger.dijkstra4@example.com", "+31-20-555-0104", "Architect", companyId null, owner 101, lifecycleStage 1
//! - 5 Andrew Ng, "andrew.ng5@example.com", phoneNumber null, "Head of AI", companyId 5, owner 103, lifecycleStage 9
//!
//! Pipelines (tenant 1; tenant 2 has the same stage ids under the names "New
//! Business", "Upsell", "Government"):
//! - 1 "Sales Pipeline" (SortOrder 1): stages 1 Qualification (10), 2 Needs Analysis (30),
//!   3 Proposal (60), 4 Negotiation (80), 5 Closed Won (100, won), 6 Closed Lost (0, lost)
//! - 2 "Renewals" (2): 7 Upcoming (20), 8 In Discussion (50), 9 Renewed (100, won), 10 Churned (0, lost)
//! - 3 "Partnerships" (3): 11 Identified (10), 12 Evaluating (40), 13 Contracting (75),
//!   14 Signed (100, won), 15 Dropped (0, lost)
//!
//! Deals:
//! - 1 "Acme Corporation - Platform License", Amount 12000.00 EUR, pipeline 1, stage 1 (Open),
//!   CloseDate 2026-03-31 (`/Date(1774915200000)/`), CompanyId 1, ContactIds [1, 2], owner 101
//! - 2 "Initech - Support Renewal", 4999.99 USD, pipeline 1, stage 5 (Won), CloseDate 2025-11-15,
//!   CompanyId 2, ContactIds [3], owner 103
//! - 3 "Umbrella Holdings - Pilot", Amount null, USD, pipeline 2, stage 10 (Lost), CloseDate null,
//!   CompanyId 5, ContactIds [], owner 102
//!
//! Tasks:
//! - 1 "Call Ada Lovelace about the platform license", notes "Prefers mornings", OPEN, priority 2,
//!   dueDate "2026-02-01 17:00:00", related CONTACT 1, owner 101
//! - 2 "Send renewal paperwork to Initech", notes null, DONE, priority 1, dueDate "2025-11-10 12:00:00",
//!   completedDate "2025-11-09 15:30:00", related DEAL 2, owner 103
//! - 3 "Prepare quarterly pipeline review", notes null, OPEN, priority 0, dueDate null, no related record, owner 102
//!
//! Engagements:
//! - 1 NOTE, owner 101, timestamp 1736071200000 (2025-01-05T10:00:00Z), contacts [1], companies [1],
//!   deals [1], body "Ada is evaluating the platform license."
//! - 2 EMAIL, owner 103, 1736161200000 (2025-01-06T11:00:00Z), contacts [3], companies [2], deals [2],
//!   OUTBOUND from "sales103@acme.example.com" to ["alan.turing3@example.com"], subject "Your renewal"
//! - 3 CALL, owner 102, 1736258400000 (2025-01-07T14:00:00Z), contacts [2], companies [1], deals [1],
//!   OUTBOUND, 420000 ms, CONNECTED, body "Discussed pricing."
//! - 4 MEETING, owner 101, 1736348400000 (2025-01-08T15:00:00Z), contacts [1, 2], companies [1], deals [1],
//!   title "Platform demo", one hour, location "Zoom"
//!
//! Audit: event "7f1c0d4e-2b9a-4c1e-9f3a-5d6e7f809a1b" is "contact.created" of contact 1
//! (actor 101, occurredAt 1735812000); event "2a4e6c8d-0b1f-4d3e-8a5c-7e9f1a2b3c4d" is
//! "deal.stage_changed" of deal 2 (actor 103, occurredAt 1763136000, stageId 4 → 5).
//!
//! # Predictable records of tenant 2
//!
//! - contact 1 Hank Scorpio, "hank.scorpio1@example.com", jobTitle "CEO", companyId 1, owner 201, lifecycleStage 4
//! - contact 2 Frank Grimes, "frank.grimes2@example.com", jobTitle "Safety Inspector", companyId null, owner 202, lifecycleStage 2
//! - company 1 "Globex Corporation", "globex.example.com", "ENERGY", 5000, "Cypress Creek", "US", owner 201
//! - deal 1 "Globex Corporation - Doomsday Device", 1000000.00 USD, pipeline 1, stage 1, CompanyId 1, ContactIds [1], owner 201

use serde_json::{json, Map, Value};

use crate::state::{
    AuditEvent, Company, Contact, Deal, Engagement, Pipeline, Rng, Stage, Task, Tenant, World,
};
use crate::time::{midnight, ymd_ms, DAY_MS};

const FIRST: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Carlos",
    "Karen",
    "Daniel",
    "Lisa",
    "Matthew",
    "Nancy",
    "Anthony",
    "Sandra",
    "Mark",
    "Ashley",
    "Paul",
    "Emily",
    "Steven",
    "Donna",
    "Andrew",
    "Michelle",
    "Kenji",
    "Yuki",
    "Priya",
    "Arjun",
    "Fatima",
    "Omar",
    "Sofia",
    "Lucas",
    "Emma",
    "Noah",
    "Olivia",
    "Liam",
    "Chloe",
    "Mateo",
    "Ingrid",
    "Lars",
    "Amara",
    "Kwame",
    "Mei",
    "Wei",
    "Hannah",
    "Jonas",
    "Elena",
    "Pablo",
    "Aisha",
    "Tomasz",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Tanaka",
    "Sato",
    "Patel",
    "Sharma",
    "Khan",
    "Haddad",
    "Rossi",
    "Silva",
    "Muller",
    "Schmidt",
    "Larsen",
    "Nowak",
    "Mensah",
    "Okafor",
    "Chen",
    "Wang",
    "Kowalski",
    "Fischer",
    "Dubois",
    "Novak",
];
const TITLES: &[&str] = &[
    "CEO",
    "CTO",
    "CFO",
    "VP Sales",
    "VP Marketing",
    "Head of Procurement",
    "Operations Manager",
    "IT Director",
    "Product Manager",
    "Software Engineer",
    "Account Manager",
    "Office Manager",
    "Data Scientist",
    "Purchasing Lead",
    "Founder",
];
const ADJ: &[&str] = &[
    "Blue",
    "Northern",
    "Silver",
    "Rapid",
    "Bright",
    "Green",
    "Golden",
    "Summit",
    "Pacific",
    "Atlas",
    "Crimson",
    "Quantum",
    "Evergreen",
    "Iron",
    "Lunar",
    "Polar",
    "Cedar",
    "Harbor",
    "Prairie",
    "Vertex",
];
const NOUN: &[&str] = &[
    "River", "Peak", "Bridge", "Forge", "Harvest", "Signal", "Falcon", "Orbit", "Stone", "Wave",
    "Ridge", "Beacon", "Maple", "Anchor", "Compass", "Meadow", "Pioneer", "Lantern", "Granite",
    "Delta",
];
const SUFFIX: &[&str] = &[
    "Labs",
    "Systems",
    "Group",
    "Holdings",
    "Industries",
    "Partners",
    "Logistics",
    "Foods",
    "Energy",
    "Health",
];
const INDUSTRIES: &[&str] = &[
    "SOFTWARE",
    "MANUFACTURING",
    "RETAIL",
    "FINANCE",
    "HEALTHCARE",
    "EDUCATION",
    "LOGISTICS",
    "ENERGY",
    "FOOD",
    "MEDIA",
];
const CITIES: &[(&str, &str)] = &[
    ("New York", "US"),
    ("Chicago", "US"),
    ("Austin", "US"),
    ("Toronto", "CA"),
    ("London", "GB"),
    ("Berlin", "DE"),
    ("Munich", "DE"),
    ("Paris", "FR"),
    ("Madrid", "ES"),
    ("Amsterdam", "NL"),
    ("Stockholm", "SE"),
    ("Warsaw", "PL"),
    ("Tokyo", "JP"),
    ("Sydney", "AU"),
    ("Sao Paulo", "BR"),
];
const PRODUCTS: &[&str] = &[
    "Platform License",
    "Support Renewal",
    "Expansion",
    "Pilot",
    "Consulting",
    "Training",
    "Enterprise Upgrade",
];
const TASK_VERBS: &[&str] = &[
    "Call",
    "Email",
    "Follow up with",
    "Send proposal to",
    "Schedule demo with",
    "Check in with",
];
const NOTE_BODIES: &[&str] = &[
    "Asked for a revised quote.",
    "Budget approved for next quarter.",
    "Decision maker is on leave until next month.",
    "Interested in the analytics add-on.",
    "Wants references from similar customers.",
    "Legal review in progress.",
];
const SUBJECTS: &[&str] = &[
    "Follow-up",
    "Quote",
    "Meeting recap",
    "Contract draft",
    "Introduction",
    "Renewal",
];
const LOCATIONS: &[&str] = &[
    "Zoom",
    "Teams",
    "Customer office",
    "Our office",
    "Phone bridge",
];
const DISPOSITIONS: &[&str] = &["CONNECTED", "NO_ANSWER", "BUSY", "LEFT_VOICEMAIL"];

struct Plan {
    name: &'static str,
    users: &'static [(u64, &'static str)],
    owners: &'static [u64],
    pipelines: [&'static str; 3],
    contacts: u64,
    companies: u64,
    deals: u64,
    tasks: u64,
    engagements: u64,
    audit: u64,
    seed: u64,
}

const T0: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z
const T_END: i64 = 1_798_761_600_000; // 2027-01-01T00:00:00Z
/// Things that already happened (creation, edits, engagements, audit events) end here,
/// before the simulator's own writes, so that a new record is always the newest.
const T_PAST: i64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z

pub(crate) fn world() -> World {
    let mut w = World::default();
    let mut acme = build(&Plan {
        name: "Acme",
        users: &[
            (101, "admin"),
            (102, "sales_manager"),
            (103, "sales_rep"),
            (104, "read_only"),
        ],
        owners: &[101, 102, 103],
        pipelines: ["Sales Pipeline", "Renewals", "Partnerships"],
        contacts: 10_000,
        companies: 2_000,
        deals: 5_000,
        tasks: 20_000,
        engagements: 50_000,
        audit: 50_000,
        seed: 0xAC3E_0001,
    });
    acme_fixtures(&mut acme);
    let mut globex = build(&Plan {
        name: "Globex",
        users: &[(201, "admin"), (202, "sales_rep")],
        owners: &[201, 202],
        pipelines: ["New Business", "Upsell", "Government"],
        contacts: 5,
        companies: 3,
        deals: 4,
        tasks: 5,
        engagements: 6,
        audit: 8,
        seed: 0x610B_E002,
    });
    globex_fixtures(&mut globex);
    w.tenants.insert(1, acme);
    w.tenants.insert(2, globex);
    w
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase().replace(' ', "")
}

fn phone(r: &mut Rng) -> String {
    format!("+1-555-{:04}", r.below(10_000))
}

fn span(r: &mut Rng) -> (i64, i64) {
    let created = r.range(T0, T_PAST - 200 * DAY_MS);
    let modified = (created + r.range(0, 180 * DAY_MS)).min(T_PAST - 1);
    (created, modified)
}

fn pipelines(names: [&str; 3]) -> Vec<Pipeline> {
    let spec: [&[(&str, i64, u8)]; 3] = [
        &[
            ("Qualification", 10, 0),
            ("Needs Analysis", 30, 0),
            ("Proposal", 60, 0),
            ("Negotiation", 80, 0),
            ("Closed Won", 100, 1),
            ("Closed Lost", 0, 2),
        ],
        &[
            ("Upcoming", 20, 0),
            ("In Discussion", 50, 0),
            ("Renewed", 100, 1),
            ("Churned", 0, 2),
        ],
        &[
            ("Identified", 10, 0),
            ("Evaluating", 40, 0),
            ("Contracting", 75, 0),
            ("Signed", 100, 1),
            ("Dropped", 0, 2),
        ],
    ];
    let mut next = 0u64;
    spec.iter()
        .zip(names)
        .enumerate()
        .map(|(i, (stages, name))| Pipeline {
            id: i as u64 + 1,
            name: name.to_string(),
            sort_order: i as i64 + 1,
            stages: stages
                .iter()
                .enumerate()
                .map(|(j, (n, p, ty))| {
                    next += 1;
                    Stage {
                        id: next,
                        name: n.to_string(),
                        sort_order: j as i64 + 1,
                        probability: *p,
                        stage_type: *ty,
                    }
                })
                .collect(),
        })
        .collect()
}

fn build(p: &Plan) -> Tenant {
    let mut r = Rng(p.seed);
    let mut t = Tenant {
        name: p.name.to_string(),
        users: p
            .users
            .iter()
            .map(|(id, role)| (*id, role.to_string()))
            .collect(),
        pipelines: pipelines(p.pipelines),
        rng: Some(Rng(p.seed ^ 0xFFFF_0000)),
        ..Tenant::default()
    };
    for id in 1..=p.companies {
        let (adj, noun) = (*r.pick(ADJ), *r.pick(NOUN));
        let (city, country) = *r.pick(CITIES);
        let (created, modified) = span(&mut r);
        t.companies.insert(
            id,
            Company {
                id,
                name: format!("{adj} {noun} {}", r.pick(SUFFIX)),
                domain: r
                    .chance(85)
                    .then(|| format!("{}{}{id}.example.com", lower(adj), lower(noun))),
                industry: r.chance(90).then(|| r.pick(INDUSTRIES).to_string()),
                employees: r.chance(80).then(|| r.range(1, 5000)),
                phone: r.chance(70).then(|| phone(&mut r)),
                city: r.chance(90).then(|| city.to_string()),
                country: Some(country.to_string()),
                owner: *r.pick(p.owners),
                created,
                modified,
                row_version: 1,
            },
        );
    }
    for id in 1..=p.contacts {
        let (first, last) = (*r.pick(FIRST), *r.pick(LAST));
        let (created, modified) = span(&mut r);
        t.contacts.insert(
            id,
            Contact {
                id,
                first_name: Some(first.to_string()),
                last_name: Some(last.to_string()),
                email: format!("{}.{}{id}@example.com", lower(first), lower(last)),
                phone: r.chance(60).then(|| phone(&mut r)),
                job_title: r.chance(70).then(|| r.pick(TITLES).to_string()),
                company_id: r
                    .chance(80)
                    .then(|| r.range(1, p.companies as i64 + 1) as u64),
                owner: *r.pick(p.owners),
                lifecycle: *r.pick(&[1, 2, 2, 3, 4, 4, 9]),
                created,
                modified,
            },
        );
    }
    for id in 1..=p.deals {
        let company = r
            .chance(85)
            .then(|| r.range(1, p.companies as i64 + 1) as u64);
        let product = r.pick(PRODUCTS);
        let name = match company.and_then(|c| t.companies.get(&c)) {
            Some(c) => format!("{} - {product}", c.name),
            None => format!("{product} {id}"),
        };
        let pipe = &t.pipelines[*r.pick(&[0usize, 0, 0, 1, 1, 2])];
        let stage = r.pick(&pipe.stages).id;
        let (pipeline, (created, modified)) = (pipe.id, span(&mut r));
        let contacts = (0..r.below(4))
            .map(|_| r.range(1, p.contacts as i64 + 1) as u64)
            .collect();
        t.deals.insert(
            id,
            Deal {
                id,
                name,
                amount_cents: r
                    .chance(90)
                    .then(|| r.range(500, 250_000) * 100 + r.range(0, 100) * (r.below(2) as i64)),
                currency: r.pick(&["USD", "USD", "EUR", "GBP"]).to_string(),
                pipeline,
                stage,
                close_date: r.chance(80).then(|| midnight(r.range(T0, T_END))),
                company,
                contacts,
                owner: *r.pick(p.owners),
                created,
                modified,
            },
        );
    }
    for id in 1..=p.tasks {
        let related = r.chance(85).then(|| match r.below(3) {
            0 => ("CONTACT", r.range(1, p.contacts as i64 + 1) as u64),
            1 => ("COMPANY", r.range(1, p.companies as i64 + 1) as u64),
            _ => ("DEAL", r.range(1, p.deals as i64 + 1) as u64),
        });
        let target = match related {
            Some(("CONTACT", c)) => t.contacts.get(&c).map(|c| {
                format!(
                    "{} {}",
                    c.first_name.as_deref().unwrap_or(""),
                    c.last_name.as_deref().unwrap_or("")
                )
            }),
            Some(("COMPANY", c)) => t.companies.get(&c).map(|c| c.name.clone()),
            Some((_, d)) => t.deals.get(&d).map(|d| d.name.clone()),
            None => None,
        };
        let subject = match target {
            Some(tg) => format!("{} {tg}", r.pick(TASK_VERBS)),
            None => r
                .pick(&[
                    "Update forecast",
                    "Clean up pipeline",
                    "Prepare weekly report",
                ])
                .to_string(),
        };
        let (created, mut modified) = span(&mut r);
        let due = r
            .chance(85)
            .then(|| midnight(created + r.range(DAY_MS, 90 * DAY_MS)) + r.range(9, 18) * 3_600_000);
        let done = r.chance(40);
        let completed =
            done.then(|| (created + r.range(3_600_000, 60 * DAY_MS)).min(T_PAST - 1) / 1000 * 1000);
        if let Some(c) = completed {
            modified = modified.max(c);
        }
        t.tasks.insert(
            id,
            Task {
                id,
                subject,
                notes: r.chance(50).then(|| r.pick(NOTE_BODIES).to_string()),
                done,
                priority: *r.pick(&[0, 1, 1, 1, 2]),
                due,
                completed,
                related,
                owner: *r.pick(p.owners),
                created: created / 1000 * 1000,
                modified: modified / 1000 * 1000,
            },
        );
    }
    for id in 1..=p.engagements {
        let kind = *r.pick(&[
            "NOTE", "NOTE", "NOTE", "EMAIL", "EMAIL", "EMAIL", "CALL", "CALL", "CALL", "MEETING",
        ]);
        let timestamp = r.range(T0, T_PAST - 3_600_000);
        let created = timestamp + r.range(0, 3_600_000);
        let updated = created
            + if r.chance(20) {
                r.range(0, 30 * DAY_MS)
            } else {
                0
            };
        let owner = *r.pick(p.owners);
        let contacts: Vec<u64> = (0..1 + r.below(2))
            .map(|_| r.range(1, p.contacts as i64 + 1) as u64)
            .collect();
        let companies: Vec<u64> = if r.chance(50) {
            vec![r.range(1, p.companies as i64 + 1) as u64]
        } else {
            vec![]
        };
        let deals: Vec<u64> = if r.chance(30) {
            vec![r.range(1, p.deals as i64 + 1) as u64]
        } else {
            vec![]
        };
        let to = contacts
            .first()
            .and_then(|c| t.contacts.get(c))
            .map(|c| c.email.clone())
            .unwrap_or_default();
        let direction = *r.pick(&["INBOUND", "OUTBOUND"]);
        let meta = match kind {
            "NOTE" => json!({"body": r.pick(NOTE_BODIES)}),
            "EMAIL" => json!({
                "direction": direction,
                "from": format!("sales{owner}@{}.example.com", lower(p.name)),
                "to": [to],
                "subject": r.pick(SUBJECTS),
                "text": r.pick(NOTE_BODIES),
            }),
            "CALL" => json!({
                "direction": direction,
                "durationMilliseconds": r.range(0, 3_600) * 1000,
                "disposition": r.pick(DISPOSITIONS),
                "body": r.pick(NOTE_BODIES),
            }),
            _ => json!({
                "title": format!("{} meeting", r.pick(SUBJECTS)),
                "startTime": timestamp,
                "endTime": timestamp + *r.pick(&[1_800_000i64, 3_600_000, 5_400_000]),
                "location": r.pick(LOCATIONS),
                "body": r.pick(NOTE_BODIES),
            }),
        };
        t.insert_engagement(Engagement {
            id,
            kind,
            owner,
            timestamp,
            created,
            updated,
            contacts,
            companies,
            deals,
            metadata: as_map(meta),
        });
    }
    let actors: Vec<u64> = p.users.iter().map(|u| u.0).collect();
    for _ in 0..p.audit {
        let (entity_type, max) = match r.below(4) {
            0 => ("contact", p.contacts),
            1 => ("company", p.companies),
            2 => ("deal", p.deals),
            _ => ("task", p.tasks),
        };
        let entity_id = r.range(1, max as i64 + 1) as u64;
        let (event, changes) = audit_change(&mut r, entity_type, p);
        let actor = (!r.chance(10)).then(|| *r.pick(&actors));
        let event_id = r.uuid();
        t.push_audit(AuditEvent {
            event_id,
            event_type: format!("{entity_type}.{event}"),
            entity_type,
            entity_id,
            actor,
            occurred: r.range(T0 / 1000, T_PAST / 1000),
            changes,
        });
    }
    t.next_contact = p.contacts;
    t.next_company = p.companies;
    t.next_deal = p.deals;
    t.next_task = p.tasks;
    t.next_engagement = p.engagements;
    t
}

fn ch(from: Value, to: Value) -> Value {
    json!({"from": from, "to": to})
}

fn audit_change(r: &mut Rng, entity: &str, p: &Plan) -> (&'static str, Value) {
    match (entity, r.below(3)) {
        ("contact", 0) => {
            let (f, l) = (*r.pick(FIRST), *r.pick(LAST));
            let email = format!("{}.{}@example.com", lower(f), lower(l));
            (
                "created",
                json!({"emailAddress": ch(Value::Null, json!(email))}),
            )
        }
        ("contact", 1) => (
            "updated",
            json!({"lifecycleStage": ch(json!(r.range(1, 3)), json!(r.range(3, 5)))}),
        ),
        ("contact", _) => (
            "updated",
            json!({"jobTitle": ch(json!(r.pick(TITLES)), json!(r.pick(TITLES)))}),
        ),
        ("company", 0) => (
            "created",
            json!({"companyName": ch(Value::Null, json!(format!("{} {}", r.pick(ADJ), r.pick(NOUN))))}),
        ),
        ("company", _) => (
            "updated",
            json!({"numEmployees": ch(json!(r.range(1, 500)), json!(r.range(500, 5000)))}),
        ),
        ("deal", 0) => (
            "created",
            json!({"dealName": ch(Value::Null, json!(r.pick(PRODUCTS)))}),
        ),
        ("deal", 1) => {
            let from = r.range(1, 5);
            (
                "stage_changed",
                json!({"stageId": ch(json!(from), json!(from + 1))}),
            )
        }
        ("deal", _) => (
            "updated",
            json!({"amount": ch(json!(r.range(500, 10_000)), json!(r.range(10_000, 90_000)))}),
        ),
        (_, 0) => (
            "created",
            json!({"subject": ch(Value::Null, json!(r.pick(TASK_VERBS)))}),
        ),
        (_, 1) => (
            "completed",
            json!({"state": ch(json!("OPEN"), json!("DONE"))}),
        ),
        _ => (
            "updated",
            json!({"ownerId": ch(json!(*r.pick(p.owners)), json!(*r.pick(p.owners)))}),
        ),
    }
}

fn as_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn at(y: i64, m: u32, d: u32, h: i64, mi: i64) -> i64 {
    ymd_ms(y, m, d) + (h * 60 + mi) * 60_000
}

#[allow(clippy::too_many_arguments)]
fn company(
    id: u64,
    name: &str,
    domain: Option<&str>,
    industry: Option<&str>,
    employees: Option<i64>,
    phone: Option<&str>,
    city: &str,
    country: &str,
    owner: u64,
    created: i64,
) -> Company {
    Company {
        id,
        name: name.into(),
        domain: domain.map(Into::into),
        industry: industry.map(Into::into),
        employees,
        phone: phone.map(Into::into),
        city: Some(city.into()),
        country: Some(country.into()),
        owner,
        created,
        modified: created,
        row_version: 1,
    }
}

#[allow(clippy::too_many_arguments)]
fn contact(
    id: u64,
    first: &str,
    last: &str,
    phone: Option<&str>,
    title: Option<&str>,
    company: Option<u64>,
    owner: u64,
    lifecycle: i64,
    created: i64,
) -> Contact {
    Contact {
        id,
        first_name: Some(first.into()),
        last_name: Some(last.into()),
        email: format!("{}.{}{id}@example.com", lower(first), lower(last)),
        phone: phone.map(Into::into),
        job_title: title.map(Into::into),
        company_id: company,
        owner,
        lifecycle,
        created,
        modified: created,
    }
}

fn acme_fixtures(t: &mut Tenant) {
    let c0 = at(2025, 1, 2, 9, 0);
    for c in [
        company(
            1,
            "Acme Corporation",
            Some("acme.example.com"),
            Some("SOFTWARE"),
            Some(250),
            Some("+1-555-0100"),
            "Springfield",
            "US",
            101,
            c0,
        ),
        company(
            2,
            "Initech",
            Some("initech.example.com"),
            Some("SOFTWARE"),
            Some(80),
            None,
            "Austin",
            "US",
            103,
            c0 + 60_000,
        ),
        company(
            3,
            "Fifty_Fifty Ltd",
            Some("fiftyfifty.example.com"),
            Some("RETAIL"),
            Some(12),
            Some("+44-20-5550-0103"),
            "London",
            "GB",
            102,
            c0 + 120_000,
        ),
        company(
            4,
            "100% Organic Inc",
            Some("organic.example.com"),
            Some("FOOD"),
            None,
            Some("+1-555-0104"),
            "Toronto",
            "CA",
            101,
            c0 + 180_000,
        ),
        company(
            5,
            "Umbrella Holdings",
            None,
            None,
            Some(1200),
            Some("+49-30-555-0105"),
            "Berlin",
            "DE",
            103,
            c0 + 240_000,
        ),
    ] {
        t.companies.insert(c.id, c);
    }
    let k0 = at(2025, 1, 2, 10, 0);
    let mut ada = contact(
        1,
        "Ada",
        "Lovelace",
        Some("+1-555-0101"),
        Some("Chief Analyst"),
        Some(1),
        101,
        2,
        k0,
    );
    ada.modified = at(2025, 6, 1, 12, 0);
    for c in [
        ada,
        contact(
            2,
            "Grace",
            "Hopper",
            Some("+1-555-0102"),
            Some("VP Engineering"),
            Some(1),
            102,
            3,
            k0 + 60_000,
        ),
        contact(
            3,
            "Alan",
            "Turing",
            None,
            None,
            Some(2),
            103,
            4,
            k0 + 120_000,
        ),
        contact(
            4,
            "Edsger",
            "Dijkstra",
            Some("+31-20-555-0104"),
            Some("Architect"),
            None,
            101,
            1,
            k0 + 180_000,
        ),
        contact(
            5,
            "Andrew",
            "Ng",
            None,
            Some("Head of AI"),
            Some(5),
            103,
            9,
            k0 + 240_000,
        ),
    ] {
        t.contacts.insert(c.id, c);
    }
    let d0 = at(2025, 1, 3, 9, 0);
    let deals = [
        Deal {
            id: 1,
            name: "Acme Corporation - Platform License".into(),
            amount_cents: Some(1_200_000),
            currency: "EUR".into(),
            pipeline: 1,
            stage: 1,
            close_date: Some(ymd_ms(2026, 3, 31)),
            company: Some(1),
            contacts: vec![1, 2],
            owner: 101,
            created: d0,
            modified: d0,
        },
        Deal {
            id: 2,
            name: "Initech - Support Renewal".into(),
            amount_cents: Some(499_999),
            currency: "USD".into(),
            pipeline: 1,
            stage: 5,
            close_date: Some(ymd_ms(2025, 11, 15)),
            company: Some(2),
            contacts: vec![3],
            owner: 103,
            created: d0 + 60_000,
            modified: at(2025, 11, 14, 16, 0),
        },
        Deal {
            id: 3,
            name: "Umbrella Holdings - Pilot".into(),
            amount_cents: None,
            currency: "USD".into(),
            pipeline: 2,
            stage: 10,
            close_date: None,
            company: Some(5),
            contacts: vec![],
            owner: 102,
            created: d0 + 120_000,
            modified: d0 + 120_000,
        },
    ];
    for d in deals {
        t.deals.insert(d.id, d);
    }
    let tasks = [
        Task {
            id: 1,
            subject: "Call Ada Lovelace about the platform license".into(),
            notes: Some("Prefers mornings".into()),
            done: false,
            priority: 2,
            due: Some(at(2026, 2, 1, 17, 0)),
            completed: None,
            related: Some(("CONTACT", 1)),
            owner: 101,
            created: at(2025, 1, 3, 9, 0),
            modified: at(2025, 1, 3, 9, 0),
        },
        Task {
            id: 2,
            subject: "Send renewal paperwork to Initech".into(),
            notes: None,
            done: true,
            priority: 1,
            due: Some(at(2025, 11, 10, 12, 0)),
            completed: Some(at(2025, 11, 9, 15, 30)),
            related: Some(("DEAL", 2)),
            owner: 103,
            created: at(2025, 10, 1, 9, 0),
            modified: at(2025, 11, 9, 15, 30),
        },
        Task {
            id: 3,
            subject: "Prepare quarterly pipeline review".into(),
            notes: None,
            done: false,
            priority: 0,
            due: None,
            completed: None,
            related: None,
            owner: 102,
            created: at(2025, 1, 4, 9, 0),
            modified: at(2025, 1, 4, 9, 0),
        },
    ];
    for task in tasks {
        t.tasks.insert(task.id, task);
    }
    let e1 = at(2025, 1, 5, 10, 0);
    let e2 = at(2025, 1, 6, 11, 0);
    let e3 = at(2025, 1, 7, 14, 0);
    let e4 = at(2025, 1, 8, 15, 0);
    let fixed = [
        (
            1,
            "NOTE",
            101,
            e1,
            vec![1],
            vec![1],
            vec![1],
            json!({"body": "Ada is evaluating the platform license."}),
        ),
        (
            2,
            "EMAIL",
            103,
            e2,
            vec![3],
            vec![2],
            vec![2],
            json!({
            "direction": "OUTBOUND", "from": "sales103@acme.example.com", "to": ["alan.turing3@example.com"],
            "subject": "Your renewal", "text": "Hi Alan, the renewal paperwork is attached."}),
        ),
        (
            3,
            "CALL",
            102,
            e3,
            vec![2],
            vec![1],
            vec![1],
            json!({
            "direction": "OUTBOUND", "durationMilliseconds": 420_000, "disposition": "CONNECTED", "body": "Discussed pricing."}),
        ),
        (
            4,
            "MEETING",
            101,
            e4,
            vec![1, 2],
            vec![1],
            vec![1],
            json!({
            "title": "Platform demo", "startTime": e4, "endTime": e4 + 3_600_000, "location": "Zoom",
            "body": "Demo of the reporting module."}),
        ),
    ];
    for (id, kind, owner, ts, contacts, companies, deals, meta) in fixed {
        t.remove_engagement(id);
        t.insert_engagement(Engagement {
            id,
            kind,
            owner,
            timestamp: ts,
            created: ts,
            updated: ts,
            contacts,
            companies,
            deals,
            metadata: as_map(meta),
        });
    }
    t.push_audit(AuditEvent {
        event_id: "7f1c0d4e-2b9a-4c1e-9f3a-5d6e7f809a1b".into(),
        event_type: "contact.created".into(),
        entity_type: "contact",
        entity_id: 1,
        actor: Some(101),
        occurred: k0 / 1000,
        changes: json!({
            "firstName": ch(Value::Null, json!("Ada")),
            "lastName": ch(Value::Null, json!("Lovelace")),
            "emailAddress": ch(Value::Null, json!("ada.lovelace1@example.com")),
        }),
    });
    t.push_audit(AuditEvent {
        event_id: "2a4e6c8d-0b1f-4d3e-8a5c-7e9f1a2b3c4d".into(),
        event_type: "deal.stage_changed".into(),
        entity_type: "deal",
        entity_id: 2,
        actor: Some(103),
        occurred: at(2025, 11, 14, 16, 0) / 1000,
        changes: json!({"stageId": ch(json!(4), json!(5)), "status": ch(json!("Open"), json!("Won"))}),
    });
    // keep the tenant's audit count at exactly the planned number
    for _ in 0..2 {
        let oldest = t
            .audit
            .iter()
            .find(|(_, e)| {
                !e.event_id.starts_with("7f1c0d4e") && !e.event_id.starts_with("2a4e6c8d")
            })
            .map(|(k, e)| (*k, e.event_id.clone()));
        if let Some((k, id)) = oldest {
            t.audit.remove(&k);
            t.audit_ids.remove(&id);
        }
    }
}

fn globex_fixtures(t: &mut Tenant) {
    let c0 = at(2025, 2, 1, 9, 0);
    t.companies.insert(
        1,
        company(
            1,
            "Globex Corporation",
            Some("globex.example.com"),
            Some("ENERGY"),
            Some(5000),
            Some("+1-555-0200"),
            "Cypress Creek",
            "US",
            201,
            c0,
        ),
    );
    t.contacts.insert(
        1,
        contact(
            1,
            "Hank",
            "Scorpio",
            Some("+1-555-0201"),
            Some("CEO"),
            Some(1),
            201,
            4,
            c0 + 60_000,
        ),
    );
    t.contacts.insert(
        2,
        contact(
            2,
            "Frank",
            "Grimes",
            None,
            Some("Safety Inspector"),
            None,
            202,
            2,
            c0 + 120_000,
        ),
    );
    t.deals.insert(
        1,
        Deal {
            id: 1,
            name: "Globex Corporation - Doomsday Device".into(),
            amount_cents: Some(100_000_000),
            currency: "USD".into(),
            pipeline: 1,
            stage: 1,
            close_date: Some(ymd_ms(2026, 6, 30)),
            company: Some(1),
            contacts: vec![1],
            owner: 201,
            created: c0 + 180_000,
            modified: c0 + 180_000,
        },
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn seed_is_deterministic_and_sized() {
        let a = super::world();
        let b = super::world();
        let (ta, tb) = (&a.tenants[&1], &b.tenants[&1]);
        assert_eq!(ta.contacts.len(), 10_000);
        assert_eq!(ta.companies.len(), 2_000);
        assert_eq!(ta.deals.len(), 5_000);
        assert_eq!(ta.tasks.len(), 20_000);
        assert_eq!(ta.engagements.len(), 50_000);
        assert_eq!(ta.audit.len(), 50_000);
        assert_eq!(ta.contacts[&77].email, tb.contacts[&77].email);
        let ka: Vec<_> = ta
            .audit
            .values()
            .take(5)
            .map(|e| e.event_id.clone())
            .collect();
        let kb: Vec<_> = tb
            .audit
            .values()
            .take(5)
            .map(|e| e.event_id.clone())
            .collect();
        assert_eq!(ka, kb);
        let emails: std::collections::HashSet<String> = ta
            .contacts
            .values()
            .map(|c| c.email.to_ascii_lowercase())
            .collect();
        assert_eq!(emails.len(), 10_000);
        assert!(ta.contacts.values().any(|c| c.owner == 103));
        assert!(ta.contacts.values().any(|c| c.owner != 103));
        let g = &a.tenants[&2];
        assert_eq!(g.contacts[&1].first_name.as_deref(), Some("Hank"));
        assert!((3..=10).contains(&g.engagements.len()));
    }
}
