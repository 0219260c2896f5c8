//! What platform engineers write in `mappings/*.yaml`: serde structs refusing unknown keys.
//! See `docs/mapping-files.md` for the format, with examples.

use indexmap::IndexMap;
use marked_yaml::Spanned;
use serde::de::IgnoredAny;
use serde::Deserialize;

/// `services.yaml`: the legacy services and their error dialects.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServices {
    pub services: IndexMap<String, RawService>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    #[serde(default)]
    pub description: Option<String>,
    /// `json` (default) or `text`: what error bodies look like.
    #[serde(default)]
    pub errors: Option<Spanned<String>>,
    /// Pointer to a boolean that is false on failure even inside HTTP 200 (RPC style).
    #[serde(default)]
    pub success: Option<Spanned<String>>,
    /// Pointer to the payload of a successful answer (RPC style envelope).
    #[serde(default)]
    pub result: Option<Spanned<String>>,
    /// Pointer to the error code in an error body.
    #[serde(default)]
    pub code: Option<Spanned<String>>,
    #[serde(default)]
    pub field_errors: Option<RawFieldErrors>,
    /// Upstream error code → public problem slug.
    #[serde(default)]
    pub codes: IndexMap<String, Spanned<String>>,
    /// HTTP status → public problem slug, when no code decides.
    #[serde(default)]
    pub statuses: IndexMap<String, Spanned<String>>,
    /// Where tenant, user and request id go (default: the platform's `X-PC-*` headers).
    #[serde(default)]
    pub trust: Option<RawTrust>,
    /// Headers sent on every call (`OData-MaxVersion: "4.0"`).
    #[serde(default)]
    pub headers: IndexMap<String, Spanned<String>>,
    /// Media type of bodies both ways (default `application/json`): `Accept` and
    /// `Content-Type`.
    #[serde(default)]
    pub media_type: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrust {
    #[serde(default)]
    pub tenant: Option<RawPlace>,
    #[serde(default)]
    pub user: Option<RawPlace>,
    #[serde(default)]
    pub request_id: Option<RawPlace>,
}

/// Exactly one of `header`, `query`, or `path: true` (a `{tenant}`/`{user}` hole in every
/// call path of the service).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlace {
    #[serde(default)]
    pub header: Option<Spanned<String>>,
    #[serde(default)]
    pub query: Option<Spanned<String>>,
    #[serde(default)]
    pub path: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFieldErrors {
    /// Pointer to the list of field errors.
    pub at: Spanned<String>,
    /// Member of each entry naming the upstream field (a dotted path: `source.pointer`).
    pub field: String,
}

/// `versions.yaml`: the published releases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVersions {
    pub current: Spanned<String>,
    pub releases: IndexMap<String, RawRelease>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelease {
    #[serde(default)]
    pub deprecated: bool,
    #[serde(default)]
    pub sunset: Option<Spanned<String>>,
    #[serde(default)]
    pub retired: bool,
    #[serde(default)]
    pub description: Option<String>,
    /// What changed in this release, each applied backwards to older clients' responses
    /// and forwards to their requests.
    #[serde(default)]
    pub changes: Vec<RawChange>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChange {
    pub resource: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// A field renamed: `{from: title, to: job_title}` (old name → new name).
    #[serde(default)]
    pub rename: Option<RawRename>,
    /// Several old top-level fields became members of one object.
    #[serde(default)]
    pub nest: Option<RawNest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRename {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNest {
    /// The new object field (`amount`).
    pub into: Spanned<String>,
    /// Old field → member of the new object (`amount: value`, `currency_code: currency`).
    pub members: IndexMap<String, Spanned<String>>,
    /// Old fields that were JSON numbers where the new member is a decimal string.
    #[serde(default)]
    pub numbers_as_decimals: Vec<Spanned<String>>,
}

/// One resource file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResource {
    pub resource: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub prefix: Spanned<String>,
    /// The service of a single-source resource (absent when `sources` is given).
    #[serde(default)]
    pub service: Option<Spanned<String>>,
    pub scopes: RawScopes,
    /// The permission family in `iam` (`contacts` → `contacts:view|edit|delete`).
    pub permissions: Spanned<String>,
    /// The permission a create needs, when it is not `<family>:edit` (`activities:log`).
    #[serde(default)]
    pub create_permission: Option<Spanned<String>>,
    #[serde(default)]
    pub id: Option<RawId>,
    /// Parsed entry by entry (see `RawField`) so that every bad field is reported.
    #[serde(default)]
    pub fields: Option<IgnoredAny>,
    /// A resource served by several services (see `RawSource`), merged by `merge_sort`.
    #[serde(default)]
    pub sources: Option<IgnoredAny>,
    /// For `sources`: the public timestamp field the merged search orders by, newest first.
    #[serde(default)]
    pub merge_sort: Option<Spanned<String>>,
    #[serde(default)]
    pub get: Option<RawCall>,
    #[serde(default)]
    pub create: Option<RawCall>,
    #[serde(default)]
    pub update: Option<RawUpdate>,
    #[serde(default)]
    pub delete: Option<RawCall>,
    #[serde(default)]
    pub search: Option<RawSearch>,
    /// Parsed entry by entry (see `RawAction`).
    #[serde(default)]
    pub actions: Option<IgnoredAny>,
}

/// One source of a multi-source resource: a service and how its records map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    #[serde(default)]
    pub description: Option<String>,
    pub service: Spanned<String>,
    /// Sealed into the ids of this source's records, so `GET /{id}` finds the source.
    pub kind: Spanned<u8>,
    pub id: RawId,
    pub fields: IgnoredAny,
    #[serde(default)]
    pub get: Option<RawCall>,
    #[serde(default)]
    pub create: Option<RawCall>,
    #[serde(default)]
    pub search: Option<RawSearch>,
    /// Records whose public value of this field is null are not part of the resource
    /// (e.g. notes among engagements, which the activity `type` enum does not name).
    #[serde(default)]
    pub keep_if_present: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScopes {
    pub read: Spanned<String>,
    #[serde(default)]
    pub write: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawId {
    pub from: Spanned<String>,
    /// `int` (default) or `string`.
    #[serde(default)]
    pub kind: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawField {
    #[serde(default)]
    pub description: Option<String>,
    /// Where the value sits upstream: a dotted path (`engagement.timestamp`).
    #[serde(default)]
    pub from: Option<Spanned<String>>,
    #[serde(rename = "type", default)]
    pub ty: Option<Spanned<String>>,
    #[serde(default)]
    pub format: Option<Spanned<String>>,
    #[serde(default)]
    pub values: Option<IndexMap<String, Spanned<String>>>,
    #[serde(rename = "ref", default)]
    pub reference: Option<Spanned<String>>,
    #[serde(default)]
    pub scale: Option<Spanned<f64>>,
    #[serde(default)]
    pub nullable: bool,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub create_only: bool,
    #[serde(default)]
    pub default: Option<Spanned<String>>,
    #[serde(default)]
    pub filter: Option<Vec<Spanned<String>>>,
    /// Operator → this field's own rendering (the dialect's op syntax), or `local: true`.
    #[serde(default)]
    pub filter_ops: Option<IndexMap<String, RawOp>>,
    /// Upstream sort key, if the field sorts.
    #[serde(default)]
    pub sort: Option<Spanned<String>>,
    /// Nested fields of an `object` or of the items of a `list`.
    #[serde(default)]
    pub fields: Option<IndexMap<String, RawField>>,
    /// An `object` is null when this sub-field is null upstream.
    #[serde(default)]
    pub null_unless: Option<Spanned<String>>,
    /// `attachment`: `type_and_id` or `associations`.
    #[serde(default)]
    pub style: Option<Spanned<String>>,
    #[serde(default)]
    pub type_from: Option<Spanned<String>>,
    #[serde(default)]
    pub id_from: Option<Spanned<String>>,
    #[serde(default)]
    pub kinds: Option<IndexMap<String, RawKind>>,
    /// `variant`: the public field whose value picks the case (`type`)…
    #[serde(default)]
    pub by: Option<Spanned<String>>,
    /// …or the upstream field whose value picks it (`entityType`).
    #[serde(default)]
    pub on: Option<Spanned<String>>,
    /// `variant`: one field declaration per value; `_` is the fallback.
    #[serde(default)]
    pub cases: Option<IndexMap<String, RawField>>,
    /// `const`: the public value (JSON).
    #[serde(default)]
    pub value: Option<Spanned<String>>,
    /// `changes`: entity code → public resource (`contact: contacts`).
    #[serde(default)]
    pub entities: Option<IndexMap<String, Spanned<String>>>,
    /// The field's name in the search's filter dialect, where it is not `from`.
    #[serde(default)]
    pub filter_as: Option<Spanned<String>>,
    /// A write path of its own: `{to: relationships.owner.data, template: {type: users,
    /// id: $text}}`.
    #[serde(default)]
    pub write: Option<RawWrite>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWrite {
    #[serde(default)]
    pub to: Option<Spanned<String>>,
    #[serde(default)]
    pub template: Option<Spanned<serde_json::Value>>,
}

/// Where a write's answer says the new record's id is (when it carries no record).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdFrom {
    /// A JSON pointer into the answer.
    #[serde(default)]
    pub pointer: Option<Spanned<String>>,
    /// A header (`OData-EntityId`, `Location`)…
    #[serde(default)]
    pub header: Option<Spanned<String>>,
    /// …and the pattern the id is cut out with (`Contacts({id})`).
    #[serde(default)]
    pub pattern: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKind {
    #[serde(rename = "ref")]
    pub reference: Spanned<String>,
    /// `type_and_id`: the upstream code of this kind.
    #[serde(default)]
    pub code: Option<Spanned<String>>,
    /// `associations`: the upstream list holding ids of this kind.
    #[serde(default)]
    pub from: Option<Spanned<String>>,
    /// `associations`: the search parameter filtering on this kind.
    #[serde(default)]
    pub param: Option<Spanned<String>>,
}

/// `METHOD /path/{id}` plus an optional body template.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCall {
    pub call: Spanned<String>,
    #[serde(default)]
    pub body: Option<Spanned<serde_json::Value>>,
    /// Headers of this call (templates: `{id}`, `{tenant}`, `{user}`, `{request_id}`).
    #[serde(default)]
    pub headers: IndexMap<String, Spanned<String>>,
    /// Pointer to the record in the answer (`/data`).
    #[serde(default)]
    pub record: Option<Spanned<String>>,
    /// Where the id is when the answer has no record; the record is then read back.
    #[serde(default)]
    pub id_from: Option<RawIdFrom>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpdate {
    /// `partial` (the upstream merges) or `replace` (read, merge, write with a row version).
    pub strategy: Spanned<String>,
    pub call: Spanned<String>,
    #[serde(default)]
    pub body: Option<Spanned<serde_json::Value>>,
    /// Optimistic concurrency: where the version is read and sent, what means "stale".
    #[serde(default)]
    pub version: Option<RawVersion>,
    #[serde(default)]
    pub headers: IndexMap<String, Spanned<String>>,
    #[serde(default)]
    pub record: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVersion {
    /// Where the read record's version is: `{pointer: /rowVersion}` or `{header: ETag}`.
    pub from: RawVersionFrom,
    /// Where it goes on the write: `{header: If-Match, value: "{version}"}` or
    /// `{field: rowVersion}`.
    pub to: RawVersionTo,
    /// What the upstream answers when the version is stale: an error code and/or status.
    pub stale: RawStale,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVersionFrom {
    #[serde(default)]
    pub pointer: Option<Spanned<String>>,
    #[serde(default)]
    pub header: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVersionTo {
    #[serde(default)]
    pub header: Option<Spanned<String>>,
    #[serde(default)]
    pub value: Option<Spanned<String>>,
    #[serde(default)]
    pub field: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStale {
    #[serde(default)]
    pub code: Option<Spanned<String>>,
    #[serde(default)]
    pub status: Option<Spanned<u16>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    pub call: Spanned<String>,
    /// `dialect` (with a `dialect:` block) or `local`: how filters reach the upstream.
    pub filters: Spanned<String>,
    #[serde(default)]
    pub sort: Option<RawSort>,
    pub paging: RawPaging,
    /// Pointer to the records in the answer (`""` for a bare array).
    pub items: Spanned<String>,
    #[serde(default)]
    pub total: Option<Spanned<String>>,
    pub default_sort: Spanned<String>,
    /// Fixed parameters of every search call (e.g. `type: NOTE`).
    #[serde(default)]
    pub constants: IndexMap<String, Spanned<String>>,
    /// Headers of every search call.
    #[serde(default)]
    pub headers: IndexMap<String, Spanned<String>>,
    /// With `filters: dialect`: the upstream's filter language.
    #[serde(default)]
    pub dialect: Option<RawDialect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDialect {
    /// `param:<name>` (clauses joined into one parameter), `params` (each clause
    /// `key=value`), `list:<pointer>` (each clause a JSON object in a body list) or
    /// `object:<pointer>` (each clause `key=value`, a member of a body object).
    pub into: Spanned<String>,
    /// Between the clauses of `param:` (default ` and `).
    #[serde(default)]
    pub join: Option<String>,
    /// Between the items of `{values}` (default `,`).
    #[serde(default)]
    pub list_join: Option<String>,
    /// Operator → its rendering.
    #[serde(default)]
    pub ops: IndexMap<String, RawOp>,
    /// Value type (`string`, `number`, `boolean`, `timestamp`, `date`, `id`) → quoting.
    #[serde(default)]
    pub literals: IndexMap<String, RawLiteral>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOp {
    /// One clause: a text template (`{field} eq {value}`)…
    #[serde(default)]
    pub clause: Option<Spanned<String>>,
    /// …several…
    #[serde(default)]
    pub clauses: Option<Vec<Spanned<String>>>,
    /// …or a JSON object template (`list:`)…
    #[serde(default)]
    pub object: Option<Spanned<serde_json::Value>>,
    /// …or several.
    #[serde(default)]
    pub objects: Option<Vec<Spanned<serde_json::Value>>>,
    /// In a field's `filter_ops`: the edge applies this operator itself.
    #[serde(default)]
    pub local: bool,
    #[serde(default)]
    pub each: bool,
    #[serde(default)]
    pub escape: IndexMap<String, String>,
    #[serde(default)]
    pub lower: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLiteral {
    #[serde(default)]
    pub quote: Option<String>,
    #[serde(default)]
    pub escape: IndexMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSort {
    /// `upstream`, `fixed` or `local`.
    pub style: Spanned<String>,
    /// `upstream`: member → JSON template (`{field}`, `{dir}`, `{desc}`), and the two
    /// `{dir}` words.
    #[serde(default)]
    pub set: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub asc: Option<String>,
    #[serde(default)]
    pub desc: Option<String>,
}

/// Where the edge puts a value it chooses: `{param: page[size]}` or `{header: Prefer,
/// value: "odata.maxpagesize={size}"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInject {
    #[serde(default)]
    pub param: Option<Spanned<String>>,
    #[serde(default)]
    pub header: Option<Spanned<String>>,
    #[serde(default)]
    pub value: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPaging {
    /// `offset`, `page`, `start_count`, `token` or `none`.
    pub style: Spanned<String>,
    #[serde(default)]
    pub offset: Option<String>,
    #[serde(default)]
    pub limit: Option<String>,
    #[serde(default)]
    pub page: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    /// Pointer to the next token / the `more` flag in the answer.
    #[serde(default)]
    pub next: Option<Spanned<String>>,
    #[serde(default)]
    pub more: Option<Spanned<String>>,
    #[serde(default)]
    pub max: Option<Spanned<u32>>,
    #[serde(default)]
    pub window: Option<Spanned<u32>>,
    /// `next_link`: where the upstream page size goes.
    #[serde(default)]
    pub size: Option<RawInject>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    #[serde(default)]
    pub description: Option<String>,
    pub call: Spanned<String>,
    #[serde(default)]
    pub body: Option<Spanned<serde_json::Value>>,
    /// Permission in `iam` (default: the family's `edit`).
    #[serde(default)]
    pub permission: Option<Spanned<String>>,
    /// Fields of the action's request body.
    #[serde(default)]
    pub input: Option<IndexMap<String, RawField>>,
}
