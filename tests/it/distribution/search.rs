//! `search` over a registry's `/v2/_catalog`: filtered by the term, limited, formatted, with
//! the registry from the term's `HOST:PORT/` prefix or `--registry`; every catalog page is read.

use super::{ready, store_with_busybox};
use crate::registry::{ok, rb, Registry};

#[test]
fn search_lists_matching_repositories_of_the_catalog() {
    if !ready() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(root) = store_with_busybox(t.path()) else { return };
    let reg = Registry::start(false);
    let host = reg.host();
    // 105 repositories: more than one catalog page of 100.
    for i in 0..103 {
        ok(rb(&root, &[], &["tag", "busybox", &format!("{host}/filler/r{i:03}")]), "tag");
    }
    for name in ["team/busybox", "tools/BusyTool"] {
        ok(rb(&root, &[], &["tag", "busybox", &format!("{host}/{}", name.to_lowercase())]), "tag");
    }
    let all: Vec<String> = rbuild::store::ImageStore::open(&root)
        .unwrap()
        .resolve("busybox")
        .unwrap()
        .tags
        .iter()
        .map(|t| t.familiar())
        .filter(|t| t.starts_with(&host))
        .collect();
    for tag in &all {
        ok(rb(&root, &[], &["push", "-q", tag]), "push");
    }
    let out = ok(rb(&root, &[], &["search", &format!("{host}/BUSY")]), "search");
    assert_eq!(out, format!("NAME\n{host}/team/busybox\n{host}/tools/busytool\n"));
    let out = ok(
        rb(&root, &[], &["search", "--limit", "1", "--format", "{{.Name}} {{.StarCount}}", &format!("{host}/busy")]),
        "search",
    );
    assert_eq!(out, format!("{host}/team/busybox 0\n"));
    // The last page: r102 is after the first 100 names.
    let out = ok(rb(&root, &[], &["search", "--registry", &host, "r102"]), "search");
    assert_eq!(out, format!("NAME\n{host}/filler/r102\n"));
    let out = ok(rb(&root, &[], &["search", "--limit", "200", "--format", "{{.Name}}", &format!("{host}/")]), "search");
    assert_eq!(out.lines().count(), 105, "{out}");
    let out = rb(&root, &[], &["search", "busybox"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Docker Hub's search API is not reachable from rbuild"), "{err}");
    let out = rb(&root, &[], &["search", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Docker Hub's search API"), "help");
}
