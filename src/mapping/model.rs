//! The compiled plan: what the request path reads. Built once per (re)load by `compile`.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Value;

use super::tpl::{Json, Text};
use crate::problem::Kind;

/// A path into an upstream JSON object (`engagement.timestamp` → ["engagement","timestamp"]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpPath(pub Vec<String>);

impl UpPath {
    pub fn parse(s: &str) -> UpPath {
        UpPath(s.split('.').map(str::to_string).collect())
    }

    pub fn get<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        let mut cur = v;
        for seg in &self.0 {
            cur = cur.get(seg)?;
        }
        Some(cur)
    }

    pub fn set(&self, target: &mut serde_json::Map<String, Value>, value: Value) {
        let mut cur = target;
        let (last, parents) = match self.0.split_last() {
            Some(x) => x,
            None => return,
        };
        for seg in parents {
            let entry = cur
                .entry(seg.clone())
                .or_insert_with(|| Value::Object(Default::default()));
            if !entry.is_object() {
                *entry = Value::Object(Default::default());
            }
            match entry {
                Value::Object(m) => cur = m,
                _ => return,
            }
        }
        cur.insert(last.clone(), value);
    }

    pub fn dotted(&self) -> String {
        self.0.join(".")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    EpochMs,
    EpochS,
    AspNet,
    SqlUtc,
    /// ISO 8601 / RFC 3339 text. Read in every common shape (`Z`, `+00:00`, `+0000`, no
    /// or 1–9 fraction digits); written as `2026-11-28T09:30:00.000Z`.
    Rfc3339,
    /// The same, written with milliseconds and a `+0000` offset.
    Iso8601Offset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
    CreateOnly,
}

#[derive(Debug, Clone)]
pub enum Codec {
    String,
    Integer {
        scale: f64,
    },
    Number {
        scale: f64,
    },
    Boolean,
    /// Public decimal string ↔ upstream JSON number.
    Decimal,
    Timestamp(TimeFormat),
    Date(TimeFormat),
    Enum {
        to_up: IndexMap<String, Value>,
    },
    Id {
        prefix: String,
    },
    IdList {
        prefix: String,
    },
    Object {
        fields: Vec<Field>,
        null_unless: Option<usize>,
    },
    List {
        fields: Vec<Field>,
    },
    StringList,
    Attachment(Attachment),
    /// A field whose mapping depends on a discriminator (an activity's `details`).
    Variant(Variant),
    /// A fixed public value (`type: system_event` for audit records).
    Const(Value),
    /// Passed through as it is (read only).
    Json,
    /// An audit `changes` object `{upstreamField: {from, to}}`, rewritten into public
    /// field names and values of the entity it is about; unknown fields are dropped.
    Changes(Changes),
}

#[derive(Debug, Clone)]
pub struct Changes {
    /// The upstream field naming the entity's kind (`entityType`).
    pub on: UpPath,
    /// Entity code → the resource whose fields name the changes (`contact` → `contacts`).
    pub entities: Vec<(String, String)>,
    /// Filled once every resource is compiled: entity code → (upstream name, public field).
    pub tables: Vec<(String, Vec<(String, Field)>)>,
}

#[derive(Debug, Clone)]
pub enum VariantKey {
    /// The public value of an earlier field of the same record (`type`).
    Public(String),
    /// An upstream value (`entityType`).
    Upstream(UpPath),
}

#[derive(Debug, Clone)]
pub struct Variant {
    pub key: VariantKey,
    pub cases: Vec<(Value, Field)>,
    pub fallback: Option<Box<Field>>,
}

impl Variant {
    pub fn case(&self, key: &Value) -> Option<&Field> {
        self.cases
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, f)| f)
            .or(self.fallback.as_deref())
    }
}

#[derive(Debug, Clone)]
pub struct AttachKind {
    pub name: String,
    pub prefix: String,
    pub code: Option<Value>,
    pub from: Option<UpPath>,
    pub param: Option<String>,
}

#[derive(Debug, Clone)]
pub enum AttachStyle {
    TypeAndId { type_from: UpPath, id_from: UpPath },
    Associations,
}

#[derive(Debug, Clone)]
pub struct Attachment {
    pub style: AttachStyle,
    pub kinds: Vec<AttachKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Between,
    In,
    NotIn,
    HasValue,
    NotHasValue,
    Contains,
}

impl Op {
    pub const ALL: [Op; 12] = [
        Op::Eq,
        Op::Neq,
        Op::Lt,
        Op::Lte,
        Op::Gt,
        Op::Gte,
        Op::Between,
        Op::In,
        Op::NotIn,
        Op::HasValue,
        Op::NotHasValue,
        Op::Contains,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Neq => "neq",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Between => "between",
            Op::In => "in",
            Op::NotIn => "not_in",
            Op::HasValue => "has_value",
            Op::NotHasValue => "not_has_value",
            Op::Contains => "contains",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|o| o.name() == s)
    }
}

/// How one (field, operator) pair reaches the upstream.
#[derive(Debug, Clone)]
pub enum FilterTarget {
    /// The attachment's own parameters (type + id, or one parameter per kind).
    Attachment,
    /// Rendered by an operator template (the search dialect's, or the field's own
    /// `filter_ops`), `{field}` being this upstream name.
    Render {
        field: String,
        render: Arc<OpRender>,
    },
    /// The edge filters the public records itself.
    Local,
}

/// How a field is written when not simply at its `from` path.
#[derive(Debug, Clone)]
pub struct WriteAs {
    /// Where the value goes (defaults to `from`).
    pub to: Option<UpPath>,
    /// A JSON template around the value: `$value` (the upstream value), `$text` (its text).
    pub template: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    /// The name as a JSON object writes it, `"name":` (for `transform::write_public`).
    pub member: Box<[u8]>,
    pub from: Option<UpPath>,
    pub codec: Codec,
    pub nullable: bool,
    pub required: bool,
    pub access: Access,
    pub default: Option<Value>,
    pub filters: Vec<(Op, FilterTarget)>,
    pub sort: Option<String>,
    pub description: Option<String>,
    /// A write path of its own (`write:`), else the value is written at `from`.
    pub write: Option<WriteAs>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// A value known when a call is made, named in a template (`{id}`, `{tenant}`…).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Id,
    Tenant,
    User,
    RequestId,
    /// The upstream page size of a search call.
    Size,
}

impl Var {
    pub fn parse(s: &str) -> Option<Var> {
        Some(match s {
            "id" => Var::Id,
            "tenant" => Var::Tenant,
            "user" => Var::User,
            "request_id" => Var::RequestId,
            "size" => Var::Size,
            _ => return None,
        })
    }
}

/// A string template compiled at load: literal text and `{var}` holes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Lit(String),
    Var(Var),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tpl(pub Vec<Piece>);

impl Tpl {
    pub fn literal(s: &str) -> Tpl {
        Tpl(vec![Piece::Lit(s.to_string())])
    }

    pub fn uses(&self, v: Var) -> bool {
        self.0.contains(&Piece::Var(v))
    }
}

/// Where a write's answer says the record's id is, when it carries no record.
#[derive(Debug, Clone)]
pub enum IdFrom {
    /// A JSON pointer into the answer (`/id`, `/data/id`).
    Pointer(String),
    /// A header (`OData-EntityId`, `Location`), the id cut out of it by a pattern
    /// (`Contacts({id})`: the text between the literal before and after `{id}`).
    Header {
        name: http::HeaderName,
        before: String,
        after: String,
    },
}

/// One upstream call template, compiled.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    /// The path with its holes; values are percent-encoded as path segments (RFC 3986:
    /// unreserved characters never are).
    pub path: Tpl,
    pub query: Vec<(String, Tpl)>,
    pub headers: Vec<(http::HeaderName, Tpl)>,
    pub body: Option<Value>,
    /// Pointer to the record in a successful answer (`/data`); the whole payload if none.
    pub record: Option<String>,
    /// Where the id is when the answer has no record (then the record is read back).
    pub id_from: Option<IdFrom>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateStrategy {
    /// The upstream merges what it is sent.
    Partial,
    /// The upstream replaces the record: the edge reads it, merges the patch, writes it all.
    Replace,
}

/// Where a record's version is read from (the answer of the resource's `get`).
#[derive(Debug, Clone)]
pub enum VersionFrom {
    /// A JSON pointer into the record (`/rowVersion`).
    Pointer(String),
    /// A response header (`ETag`).
    Header(http::HeaderName),
}

/// Where the version read goes on the write.
#[derive(Debug, Clone)]
pub enum VersionTo {
    /// A request header, its value the text around `{version}` (`If-Match: {version}`).
    Header {
        name: http::HeaderName,
        before: String,
        after: String,
    },
    /// A field of the body (`rowVersion`).
    Field(UpPath),
}

/// Optimistic concurrency of an update: read the version, send it back; an answer that
/// says "stale" (an error code, or a status) is read again and retried once, then 409.
#[derive(Debug, Clone)]
pub struct Version {
    pub from: VersionFrom,
    pub to: VersionTo,
    pub stale_code: Option<String>,
    pub stale_status: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct Update {
    pub strategy: UpdateStrategy,
    pub call: Call,
    /// With a version the update always reads first: an unknown id is a 404 and nothing
    /// is written.
    pub version: Option<Version>,
}

/// The upstream sorts: members set on the search call from templates, with the
/// direction as a word (`{dir}`: `asc`/`desc` or the declared words) or a boolean
/// (`{desc}`). Members go where the call's other members go (query or top-level body).
#[derive(Debug, Clone)]
pub struct SortSet {
    pub members: Vec<(String, Json)>,
    pub asc: String,
    pub desc: String,
}

#[derive(Debug, Clone)]
pub enum SortStyle {
    Upstream(SortSet),
    /// The upstream has one order (the default sort); no other is accepted.
    Fixed,
    /// The edge sorts the records itself.
    Local,
}

/// Where a value the edge chooses (the page size, a page token) goes on a call.
#[derive(Debug, Clone)]
pub enum Inject {
    Param(String),
    Header(http::HeaderName, Tpl),
}

/// Where the link to the next page is.
#[derive(Debug, Clone)]
pub enum NextFrom {
    Pointer(String),
    /// An RFC 8288 `Link` header with `rel="next"`.
    LinkHeader,
}

/// The upstream's own filter language, as data (see `docs/mapping-files.md`).
#[derive(Debug, Clone)]
pub struct FilterDialect {
    pub into: FilterInto,
    pub ops: Vec<(Op, Arc<OpRender>)>,
    /// Text rendering of literals per value type (`string`, `number`, …).
    pub literals: Vec<(String, Literal)>,
    /// Separator of the items of `{values}`.
    pub list_join: String,
}

#[derive(Debug, Clone)]
pub enum FilterInto {
    /// All clauses joined into one parameter (`$filter=a eq 1 and b eq 2`).
    Param { name: String, join: String },
    /// Each clause is `key=value`, one member each (`filter[name][eq]=x`): the query of a
    /// GET, top-level body members otherwise.
    Params,
    /// Each clause a JSON object, in a list at a body pointer (`/where`).
    List(String),
    /// Each clause is `key=value`, a member of one object at a body pointer (`/filter`).
    Object(String),
}

#[derive(Debug, Clone)]
pub struct OpRender {
    /// One or several clauses (a `between` may be two).
    pub clauses: Vec<Clause>,
    /// One clause per value of `values` (`not_in` as several `!=`).
    pub each: bool,
    /// Characters replaced in `{value}` before quoting (`%` → `\%` for a LIKE).
    pub escape: Vec<(char, String)>,
    /// The value is lowercased (with a case-insensitive `tolower(…)` comparison).
    pub lower: bool,
}

#[derive(Debug, Clone)]
pub enum Clause {
    Text(Text),
    /// `key=value`: a value that is exactly one hole keeps its JSON type.
    Pair(Text, Text),
    Object(Json),
}

#[derive(Debug, Clone, Default)]
pub struct Literal {
    pub quote: String,
    /// Replacements inside the quotes (`'` → `''`).
    pub escape: Vec<(char, String)>,
}

#[derive(Debug, Clone)]
pub enum Paging {
    Offset {
        offset: String,
        limit: String,
    },
    Page {
        page: String,
        size: String,
    },
    StartCount {
        start: String,
        count: String,
        more: String,
    },
    Token {
        token: String,
        limit: String,
        next: String,
        /// Pointer to a "more pages" flag, when the next token alone does not tell.
        more: Option<String>,
    },
    /// The answer links the next page (body pointer or `Link` header); the link is only
    /// followed on the service's own origin.
    NextLink {
        next: NextFrom,
        size: Option<Inject>,
    },
    None,
}

#[derive(Debug, Clone)]
pub struct Search {
    pub call: Call,
    pub filters: FilterDialect,
    pub sort: SortStyle,
    pub paging: Paging,
    pub max: u32,
    pub window: Option<u32>,
    pub items: String,
    pub total: Option<String>,
    pub default_sort: (usize, bool),
    pub constants: Vec<(String, Value)>,
}

#[derive(Debug, Clone)]
pub struct Action {
    pub name: String,
    pub call: Call,
    pub permission: String,
    pub input: Vec<Field>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Int,
    Str,
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub name: String,
    pub description: Option<String>,
    pub prefix: String,
    pub service: String,
    pub read_scope: String,
    pub write_scope: Option<String>,
    pub permissions: String,
    pub id_from: UpPath,
    pub id_kind: IdKind,
    pub fields: Vec<Field>,
    pub get: Option<Call>,
    pub create: Option<Call>,
    pub update: Option<Update>,
    pub delete: Option<Call>,
    pub search: Option<Search>,
    pub actions: IndexMap<String, Action>,
    /// Sealed into record ids: which source of a multi-source resource a record is from.
    pub kind: u8,
    /// A multi-source resource's sources (each a complete single-source resource).
    pub sources: Vec<Arc<Resource>>,
    /// Records whose public value of this field is null are dropped.
    pub keep_if_present: Option<String>,
    pub create_permission: Option<String>,
    /// Its records can be written straight to JSON (`transform::write_public`): no
    /// variant fields and no field named `id`. Decided when the plan is compiled.
    pub writable: bool,
}

impl Resource {
    pub fn field(&self, name: &str) -> Option<(usize, &Field)> {
        self.fields.iter().enumerate().find(|(_, f)| f.name == name)
    }

    /// The public pointer of an upstream field name, for upstream validation errors.
    pub fn pointer_of_upstream(&self, upstream: &str) -> Option<String> {
        let upstream = match upstream.strip_prefix('/') {
            Some(p) => p.rsplit('/').next().unwrap_or(p),
            None => upstream,
        };
        fn walk(fields: &[Field], upstream: &str, prefix: &str) -> Option<String> {
            for f in fields {
                if let Some(from) = &f.from {
                    if from.dotted() == upstream
                        || from.0.last().map(String::as_str) == Some(upstream)
                    {
                        return Some(format!("{prefix}/{}", f.name));
                    }
                }
                if let Codec::Object { fields, .. } = &f.codec {
                    if let Some(p) = walk(fields, upstream, &format!("{prefix}/{}", f.name)) {
                        return Some(p);
                    }
                }
                if let Codec::Attachment(a) = &f.codec {
                    if let AttachStyle::TypeAndId { type_from, id_from } = &a.style {
                        if type_from.dotted() == upstream || id_from.dotted() == upstream {
                            return Some(format!("{prefix}/{}", f.name));
                        }
                    }
                }
            }
            None
        }
        walk(&self.fields, upstream, "")
    }
}

/// Where a trust value goes on every call of a service (a path segment is a `{tenant}`
/// hole in the call templates instead).
#[derive(Debug, Clone)]
pub enum Place {
    Header(http::HeaderName),
    Query(String),
    Nowhere,
}

/// A service's conventions, inherited by every call to it.
#[derive(Debug, Clone)]
pub struct Conventions {
    pub tenant: Place,
    pub user: Place,
    pub request_id: Place,
    /// Sent on every call (`OData-MaxVersion: 4.0`), the media type's `Accept` included.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `Content-Type` of request bodies.
    pub media_type: http::HeaderValue,
    /// Trust values the service takes in the path: every call path must have their hole.
    pub in_path: Vec<Var>,
}

/// A legacy service's dialect: how it says "failed" and what its codes mean.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub conventions: Conventions,
    pub text_errors: bool,
    pub success: Option<String>,
    pub result: Option<String>,
    pub code: Option<String>,
    /// Pointer to the list of field errors, and the path of the upstream field's name in
    /// each (`target`, `source.pointer`: a JSON pointer names its last token).
    pub field_errors: Option<(String, UpPath)>,
    pub codes: HashMap<String, Kind>,
    pub statuses: HashMap<u16, Kind>,
}

#[derive(Debug, Clone)]
pub struct Release {
    pub date: String,
    pub deprecated: bool,
    pub sunset: Option<String>,
    pub retired: bool,
    /// The changes this release made (see `crate::mapping::versions`).
    pub changes: Vec<Change>,
}

/// One backwards-incompatible change of a release, declared in `versions.yaml`.
#[derive(Debug, Clone)]
pub enum Change {
    Rename {
        resource: String,
        from: String,
        to: String,
    },
    Nest {
        resource: String,
        into: String,
        /// (old field, new member)
        members: Vec<(String, String)>,
        numbers_as_decimals: Vec<String>,
    },
}

impl Change {
    pub fn resource(&self) -> &str {
        match self {
            Change::Rename { resource, .. } | Change::Nest { resource, .. } => resource,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Versions {
    pub current: String,
    pub releases: Vec<Release>,
}

impl Versions {
    pub fn find(&self, date: &str) -> Option<&Release> {
        self.releases.iter().find(|r| r.date == date && !r.retired)
    }

    pub fn supported(&self) -> Vec<String> {
        self.releases
            .iter()
            .filter(|r| !r.retired)
            .map(|r| r.date.clone())
            .collect()
    }
}

/// The whole compiled API. Swapped atomically on reload; requests keep the `Arc` they began with.
#[derive(Debug)]
pub struct Plan {
    pub resources: IndexMap<String, Arc<Resource>>,
    pub services: HashMap<String, Service>,
    pub versions: Versions,
    /// Prefix → resource name, to route references and activities.
    pub prefixes: HashMap<String, String>,
    pub files: usize,
}
