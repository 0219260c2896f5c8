//! `check` for `versions.yaml` against the resources: every declared change must make
//! sense for the fields the resource has at that release, so that a typo in a change is
//! a load-time error with its line, not a silently ignored rename in production.
//!
//! The walk goes from the newest release to the oldest, starting from the fields the
//! mapping files declare (the current release) and undoing each change on the way, the
//! same order in which older clients' answers are rewritten.

use std::collections::BTreeMap;
use std::path::Path;

use indexmap::IndexMap;
use std::sync::Arc;

use super::model::{Codec, Resource};
use super::raw::{RawChange, RawVersions};
use crate::diag::Diags;

/// A resource's public top-level fields at one release: name → member names when the
/// field is an object whose members are known (`None` otherwise).
type Shape = BTreeMap<String, Option<Vec<String>>>;

fn current_shape(r: &Resource) -> Shape {
    r.fields
        .iter()
        .map(|f| {
            let members = match &f.codec {
                Codec::Object { fields, .. } => {
                    Some(fields.iter().map(|m| m.name.clone()).collect())
                }
                _ => None,
            };
            (f.name.clone(), members)
        })
        .collect()
}

fn names(shape: &Shape) -> String {
    shape.keys().cloned().collect::<Vec<_>>().join(", ")
}

pub fn check(
    path: &Path,
    raw: &RawVersions,
    resources: &IndexMap<String, Arc<Resource>>,
    d: &mut Diags,
) {
    let mut shapes: BTreeMap<&str, Shape> = resources
        .iter()
        .map(|(name, r)| (name.as_str(), current_shape(r)))
        .collect();
    let mut releases: Vec<_> = raw.releases.iter().collect();
    releases.sort_by(|a, b| b.0.cmp(a.0));
    for (date, release) in releases {
        for change in &release.changes {
            let Some(shape) = shapes.get_mut(change.resource.as_str()) else {
                d.at(
                    path,
                    change.resource.span(),
                    format!(
                        "release {date}: resource `{}` is not declared (resources: {})",
                        change.resource.as_str(),
                        resources.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
                continue;
            };
            undo(path, date, change, shape, d);
        }
    }
}

/// Checks one change against the fields at its release and turns `shape` into the
/// fields the release before had.
fn undo(path: &Path, date: &str, change: &RawChange, shape: &mut Shape, d: &mut Diags) {
    let resource = change.resource.as_str();
    if let Some(rn) = &change.rename {
        let (from, to) = (rn.from.as_str(), rn.to.as_str());
        if from == to {
            d.at(
                path,
                rn.to.span(),
                format!("release {date}: `{resource}` renames `{from}` to itself"),
            );
            return;
        }
        let Some(members) = shape.remove(to) else {
            d.at(
                path,
                rn.to.span(),
                format!("release {date}: `to: {to}` is not a field of {resource} at this release (fields: {})", names(shape)),
            );
            return;
        };
        if shape.contains_key(from) {
            d.at(
                path,
                rn.from.span(),
                format!("release {date}: `from: {from}` is still a field of {resource} at this release: the rename would hide it"),
            );
        }
        shape.insert(from.to_string(), members);
    }
    if let Some(n) = &change.nest {
        let into = n.into.as_str();
        let Some(members) = shape.remove(into) else {
            d.at(
                path,
                n.into.span(),
                format!("release {date}: `into: {into}` is not a field of {resource} at this release (fields: {})", names(shape)),
            );
            return;
        };
        match &members {
            Some(known) => {
                for (old, new) in &n.members {
                    if !known.iter().any(|m| m == new.as_str()) {
                        d.at(
                            path,
                            new.span(),
                            format!(
                                "release {date}: `{old}: {}` names no member of {resource}.{into} (members: {})",
                                new.as_str(),
                                known.join(", ")
                            ),
                        );
                    }
                }
            }
            None => d.at(
                path,
                n.into.span(),
                format!("release {date}: {resource}.{into} is not an object at this release: nothing can be nested into it"),
            ),
        }
        for x in &n.numbers_as_decimals {
            if !n.members.contains_key(x.as_str()) {
                d.at(
                    path,
                    x.span(),
                    format!("release {date}: numbers_as_decimals `{}` is not one of the nested fields ({})", x.as_str(), n.members.keys().cloned().collect::<Vec<_>>().join(", ")),
                );
            }
        }
        for old in n.members.keys() {
            if old != into && shape.contains_key(old) {
                d.at(
                    path,
                    n.into.span(),
                    format!("release {date}: nested field `{old}` is still a field of {resource} at this release"),
                );
            }
            shape.insert(old.clone(), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::mapping::Context;

    /// The shipped mappings with `versions.yaml` replaced: the rendered diagnostics.
    fn check_with(versions: &str) -> String {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
        let dir: PathBuf =
            std::env::temp_dir().join(format!("pe-versions-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        for e in std::fs::read_dir(&src)
            .unwrap_or_else(|e| panic!("{e}"))
            .flatten()
        {
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(dir.join("versions.yaml"), versions).unwrap_or_else(|e| panic!("{e}"));
        let out = match crate::mapping::load_dir(&dir, &Context::legacy()) {
            Ok(_) => String::from("ok"),
            Err(d) => d.render(),
        };
        let _ = std::fs::remove_dir_all(&dir);
        out
    }

    const HEAD: &str = "current: \"2026-11-01\"\nreleases:\n  \"2026-05-01\": {}\n  \"2026-11-01\":\n    changes:\n";

    #[test]
    fn the_shipped_changes_are_consistent_with_the_resources() {
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/versions.yaml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(check_with(&shipped), "ok");
    }

    #[test]
    fn every_inconsistent_change_is_reported_at_its_line() {
        let out = check_with(&format!(
            "{HEAD}      - resource: contact\n        rename: {{ from: title, to: job_title }}\n\
             \x20     - resource: contacts\n        rename: {{ from: title, to: jobtitle }}\n\
             \x20     - resource: contacts\n        rename: {{ from: email, to: phone }}\n\
             \x20     - resource: deals\n        nest:\n          into: amount\n          members: {{ amount: value, currency_code: curency }}\n          numbers_as_decimals: [amout]\n\
             \x20     - resource: deals\n        nest: {{ into: name, members: {{ title: first }} }}\n"
        ));
        for expected in [
            "versions.yaml:6:19: release 2026-11-01: resource `contact` is not declared",
            "versions.yaml:9:36: release 2026-11-01: `to: jobtitle` is not a field of contacts",
            "versions.yaml:11:25: release 2026-11-01: `from: email` is still a field of contacts",
            "versions.yaml:15:52: release 2026-11-01: `currency_code: curency` names no member of deals.amount (members: value, currency)",
            "versions.yaml:16:33: release 2026-11-01: numbers_as_decimals `amout` is not one of the nested fields",
            "versions.yaml:18:23: release 2026-11-01: deals.name is not an object at this release",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
        }
        assert_eq!(out.lines().count(), 6, "{out}");
    }

    #[test]
    fn changes_chain_from_the_newest_release_down() {
        // 2026-11-01 renamed title → job_title; a later release renames job_title → role:
        // the older change is checked against the fields as they were then.
        let chained = "current: \"2027-01-01\"\nreleases:\n  \"2026-05-01\": {}\n  \"2026-11-01\":\n    changes:\n      - resource: contacts\n        rename: { from: title, to: job_title }\n  \"2027-01-01\":\n    changes:\n      - resource: contacts\n        rename: { from: job_title, to: role }\n";
        let out = check_with(chained);
        // `role` is not a field of the shipped contacts: exactly that is reported, and the
        // older rename is not (it is checked against the state the first error leaves).
        assert!(
            out.contains("`to: role` is not a field of contacts"),
            "{out}"
        );
        assert!(!out.contains("job_title` is not"), "{out}");
    }
}
