//! Hostile layer tars: each malicious archive is refused or contained by `LayerApply`, in
//! both whiteout modes, and nothing is written outside the target directory. Also checks the
//! same through the store (`import` then `ensure_unpacked`): nothing appears outside the store.

mod common;
use common::{raw_tar, Raw};
use rbuild::layer::apply::{LayerApply, WhiteoutMode};
use std::path::Path;

struct Case {
    name: &'static str,
    tar: Vec<u8>,
}

fn cases(outside: &Path) -> Vec<Case> {
    let o = outside.to_str().unwrap().to_owned();
    let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
    let secret = leak(&format!("{o}/secret"));
    let out_dir = leak(&o);
    vec![
        Case { name: "dotdot file", tar: raw_tar(&[Raw::File("../escaped", b"x")]) },
        Case { name: "deep dotdot file", tar: raw_tar(&[Raw::Dir("a"), Raw::File("a/../../escaped", b"x")]) },
        Case { name: "absolute path", tar: raw_tar(&[Raw::File(leak(&format!("{o}/abs")), b"x")]) },
        Case {
            name: "absolute symlink parent",
            tar: raw_tar(&[Raw::Symlink("evil", out_dir), Raw::File("evil/pwned", b"x")]),
        },
        Case {
            name: "relative symlink parent",
            tar: raw_tar(&[
                Raw::Symlink("evil", "../../../../../../../../.."),
                Raw::File(leak(&format!("evil{o}/pwned")), b"x"),
            ]),
        },
        Case {
            name: "symlink chain parent",
            tar: raw_tar(&[
                Raw::Dir("d"),
                Raw::Symlink("d/up", ".."),
                Raw::Symlink("d/up2", "up/d/up"),
                Raw::File("d/up2/up/up/pwned", b"x"),
            ]),
        },
        Case { name: "hardlink to outside absolute", tar: raw_tar(&[Raw::Hardlink("h", secret)]) },
        Case {
            name: "hardlink with dotdot",
            tar: raw_tar(&[Raw::Hardlink("h", leak(&format!("../../../../../../..{secret}")))]),
        },
        Case {
            name: "hardlink through symlink",
            tar: raw_tar(&[Raw::Symlink("s", out_dir), Raw::Hardlink("h", "s/secret")]),
        },
        Case { name: "file over symlink", tar: raw_tar(&[Raw::Symlink("s", secret), Raw::File("s", b"pwned")]) },
        Case {
            name: "hardlink to symlink then write",
            tar: raw_tar(&[Raw::Symlink("s", secret), Raw::Hardlink("h", "s"), Raw::File("h", b"pwned")]),
        },
        Case {
            name: "duplicate entries",
            tar: raw_tar(&[
                Raw::File("dup", b"1"),
                Raw::Dir("dup"),
                Raw::File("dup/x", b"2"),
                Raw::File("dup", b"3"),
                Raw::Symlink("dup", secret),
                Raw::File("dup", b"4"),
            ]),
        },
        Case {
            name: "whiteout through symlink",
            tar: raw_tar(&[Raw::Symlink("w", out_dir), Raw::File("w/.wh.secret", b"")]),
        },
        Case {
            name: "opaque through symlink",
            tar: raw_tar(&[Raw::Symlink("w", out_dir), Raw::File("w/.wh..wh..opq", b"")]),
        },
        Case { name: "dotdot whiteout", tar: raw_tar(&[Raw::File("../.wh.outside", b"")]) },
    ]
}

/// A fingerprint of everything under `dir` except `skip`.
fn snapshot(dir: &Path, skip: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in walk(dir) {
        if e.starts_with(skip) {
            continue;
        }
        let m = std::fs::symlink_metadata(&e).unwrap();
        let content = if m.is_file() { std::fs::read(&e).unwrap() } else { vec![] };
        out.push(format!("{} {:?} {:?}", e.display(), m.file_type(), content));
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

#[test]
fn every_hostile_tar_is_refused_or_contained() {
    let mut refused = 0;
    let mut contained = 0;
    for mode in [WhiteoutMode::Overlay, WhiteoutMode::Delete] {
        let probe = tempfile::tempdir().unwrap();
        for case in cases(&probe.path().join("outside")) {
            let t = tempfile::tempdir().unwrap();
            let outside = t.path().join("outside");
            std::fs::create_dir(&outside).unwrap();
            std::fs::write(outside.join("secret"), "original").unwrap();
            let dest = t.path().join("dest");
            std::fs::create_dir(&dest).unwrap();
            let before = snapshot(t.path(), &dest);
            // Rebuild the case for this temp dir's own outside path.
            let case = cases(&outside).into_iter().find(|c| c.name == case.name).unwrap();
            let result = LayerApply::new(&dest, mode).unwrap().apply(&case.tar[..]);
            match &result {
                Err(e) => {
                    refused += 1;
                    eprintln!("{:?} {}: refused: {e}", mode, case.name);
                }
                Ok(_) => {
                    contained += 1;
                    eprintln!("{:?} {}: applied inside the layer dir", mode, case.name);
                }
            }
            assert_eq!(snapshot(t.path(), &dest), before, "{}: something changed outside the layer dir", case.name);
            assert_eq!(std::fs::read_to_string(outside.join("secret")).unwrap(), "original", "{}", case.name);
        }
    }
    assert!(refused > 0 && contained > 0);
}

#[test]
fn dotdot_is_refused_with_the_entry_name() {
    let t = tempfile::tempdir().unwrap();
    let err = LayerApply::new(t.path(), WhiteoutMode::Overlay)
        .unwrap()
        .apply(&raw_tar(&[Raw::File("a/../../x", b"")])[..])
        .unwrap_err();
    assert!(err.to_string().contains("a/../../x"), "{err}");
}

#[test]
fn duplicates_leave_the_last_entry() {
    let t = tempfile::tempdir().unwrap();
    let tar = raw_tar(&[Raw::File("dup", b"1"), Raw::Dir("dup"), Raw::File("dup/x", b"2"), Raw::File("dup", b"3")]);
    LayerApply::new(t.path(), WhiteoutMode::Overlay).unwrap().apply(&tar[..]).unwrap();
    assert_eq!(std::fs::read_to_string(t.path().join("dup")).unwrap(), "3");
}

#[test]
fn symlink_parent_lands_inside_the_layer() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("dest");
    std::fs::create_dir_all(dest.join("real")).unwrap();
    let tar = raw_tar(&[Raw::Symlink("abs", "/real"), Raw::File("abs/f", b"in")]);
    LayerApply::new(&dest, WhiteoutMode::Delete).unwrap().apply(&tar[..]).unwrap();
    assert_eq!(std::fs::read_to_string(dest.join("real/f")).unwrap(), "in");
}

#[test]
fn hostile_layers_through_the_store_stay_inside_it() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "original").unwrap();
    let store = rbuild::store::ImageStore::open(&root).unwrap();
    let before = snapshot(t.path(), &root);
    let bar = indicatif::ProgressBar::hidden();
    for case in cases(&outside) {
        let opts = rbuild::store::import::ImportOptions { source: case.name.into(), ..Default::default() };
        let image = rbuild::store::import::import_rootfs(&store, &case.tar[..], &opts, &bar).unwrap();
        let _ = store.ensure_unpacked(&image);
        assert_eq!(snapshot(t.path(), &root), before, "{}", case.name);
    }
}
