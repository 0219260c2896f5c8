//! `check` diagnostics of the dialect constructs, on the `directory` fixture.

use std::path::{Path, PathBuf};

use crate::mapping::Context;

/// The `directory` fixture with `edit` applied to its files: the rendered diagnostics.
fn check(edit: impl Fn(&str, String) -> String) -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mappings/directory");
    let dir: PathBuf = std::env::temp_dir().join(format!("pe-dialect-{:x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    for e in std::fs::read_dir(&src)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        let name = e.file_name().to_string_lossy().to_string();
        let text = std::fs::read_to_string(e.path()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join(&name), edit(&name, text)).unwrap_or_else(|e| panic!("{e}"));
    }
    let ctx = Context {
        upstream_names: vec!["directory"],
    };
    let out = match crate::mapping::load_dir(&dir, &ctx) {
        Ok(_) => String::from("ok"),
        Err(d) => d.render(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[test]
fn the_fixture_compiles() {
    assert_eq!(check(|_, t| t), "ok");
}

#[test]
fn every_bad_construct_is_reported_with_its_place_all_at_once() {
    let out = check(|name, t| match name {
        "contacts.yaml" => t
            .replace("{field} eq {value}", "{field} eq {vale}")
            .replace("{field} in ({values})\" }", "{field} in ()\" }")
            .replace("      neq:", "      equals:")
            .replace("Contacts({id})\" }", "Contacts({key})\" }")
            .replace("pattern: \"Contacts({id})\"", "pattern: \"Contacts()\"")
            .replace(
                "value: \"odata.maxpagesize={size}\"",
                "value: \"odata.maxpagesize=50\"",
            )
            .replace("format: rfc3339", "format: iso")
            .replace("If-Match: \"*\" }\nsearch", "If Match: \"*\" }\nsearch"),
        "services.yaml" => t.replace(
            "user: { header: X-Directory-Principal }",
            "user: { header: X-Directory-Principal, query: u }",
        ),
        _ => t,
    });
    for expected in [
        "`{vale}` is not a filter template value (field, value, high, values)",
        "`in` needs `{values}` in its clause",
        "dialect operator `equals` is unknown",
        "`{key}` is not a template value (id, tenant, user, request_id, size)",
        "id_from: the pattern needs exactly one `{id}`",
        "the size header's `value` needs `{size}`",
        "format `iso` is not one of",
        "`If Match` is not a header name",
        "trust `user`: exactly one of `header`, `query` or `path: true`",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // Each with file:line:col.
    every_line_located(&out);
}

#[test]
fn a_missing_counterpart_is_reported() {
    let out = check(|name, t| match name {
        "contacts.yaml" => t.replace("    next: /@odata.nextLink\n", ""),
        "services.yaml" => t.replace("      user: { header: X-Directory-Principal }\n", ""),
        _ => t,
    });
    for expected in [
        "paging style next_link needs `next`",
        "service `trust` must say where `user` goes",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    let out = check(|name, t| match name {
        "contacts.yaml" => t.replace("    size: { header: Prefer", "    sise: { header: Prefer"),
        _ => t,
    });
    assert!(out.contains("unknown key `sise`"), "{out}");
}

#[test]
fn versions_sorts_and_own_operators_are_checked_all_at_once() {
    let out = check(|name, t| {
        match name {
        "contacts.yaml" => t
            .replace("from: { header: ETag }", "from: { header: ETag, pointer: /v }")
            .replace("value: \"{version}\"", "value: \"W/{etag}\"")
            .replace(
                "stale: { status: 412, code: \"0x80060882\" }",
                "stale: { status: 200 }",
            )
            .replace(
                "set: { $orderby: \"{field} {dir}\" }",
                "set: { $orderby: \"{field} {direction}\" }",
            )
            .replace(
                "  last_name: { from: LastName, nullable: true, filter: [eq, neq, contains], sort: LastName }",
                "  last_name: { from: LastName, nullable: true, filter: [eq], sort: LastName,\n    filter_ops: { neq: { clause: \"x\" }, eq: { local: true, clause: \"{field}\" } } }",
            )
            .replace(
                "  phone: { from: Telephone1, nullable: true, filter: [has_value, not_has_value] }",
                "  phone: { from: Telephone1, nullable: true, filter_as: Phone }",
            ),
        _ => t,
    }
    });
    for expected in [
        "version `from` needs exactly one of `pointer` (in the record) or `header`",
        "version `to.value` needs exactly one `{version}` and no other hole",
        "version `stale.status` must be an error status (400–599)",
        "sort `$orderby`: `{direction}` is not a sort template value (field, dir, desc)",
        "filter_ops: `neq` is not in the field's `filter`",
        "filter_ops: `eq` is either `local` or clauses",
        "`filter_ops` and `filter_as` need `filter` (the operators)",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    every_line_located(&out);
    // A body-placed dialect on a GET search, a sort that never sends its direction, and
    // a replace without a version.
    let out = check(|name, t| {
        match name {
        "contacts.yaml" => t
            .replace("into: param:$filter", "into: object:/filter")
            .replace("    join: \" and \"\n", "")
            .replace(
                "set: { $orderby: \"{field} {dir}\" }",
                "set: { $orderby: \"{field}\" }",
            )
            .replace(
                "  strategy: partial\n  call: \"PATCH",
                "  strategy: replace\n  call: \"PATCH",
            )
            .replace(
                "  version:\n    from: { header: ETag }\n    to: { header: If-Match, value: \"{version}\" }\n    stale: { status: 412, code: \"0x80060882\" }\n",
                "",
            ),
        _ => t,
    }
    });
    for expected in [
        "the dialect puts filters at the body pointer `/filter`, but a GET search has no body",
        "sort `set` never sends the direction (`{dir}` or `{desc}`)",
        "strategy replace needs `version`",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}

/// Every diagnostic line starts with `file.yaml:line:col`.
fn every_line_located(out: &str) {
    for line in out.lines() {
        let mut parts = line.splitn(4, ':');
        let (file, l, c) = (parts.next(), parts.next(), parts.next());
        assert!(file.is_some_and(|f| f.ends_with(".yaml")), "{line}");
        assert!(l.and_then(|l| l.parse::<u32>().ok()).is_some(), "{line}");
        assert!(c.and_then(|c| c.parse::<u32>().ok()).is_some(), "{line}");
    }
}
