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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFieldErrors {
    /// Pointer to the list of field errors.
    pub at: Spanned<String>,
    /// Member of each entry naming the upstream field.
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
    /// Upstream filter parameter per operator, where it is not the `from` name.
    #[serde(default)]
    pub params: Option<IndexMap<String, Spanned<String>>>,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpdate {
    /// `partial` (the upstream merges) or `replace` (read, merge, write with a row version).
    pub strategy: Spanned<String>,
    pub call: Spanned<String>,
    #[serde(default)]
    pub body: Option<Spanned<serde_json::Value>>,
    /// `replace`: the upstream field carrying the optimistic-concurrency version.
    #[serde(default)]
    pub row_version: Option<Spanned<String>>,
    /// `replace`: the upstream error code meaning "stale row version".
    #[serde(default)]
    pub conflict_code: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    pub call: Spanned<String>,
    /// `where_list`, `params` or `object:<key>`: how filters reach the upstream.
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSort {
    /// `order_by_list:<key>`, `by_param:<by>,<desc>` or `fixed`.
    pub style: Spanned<String>,
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
