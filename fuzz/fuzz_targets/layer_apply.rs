//! Fuzz target: arbitrary bytes as a layer blob applied by `LayerApply`, in each whiteout
//! mode, into a root that sits inside a parent holding a canary dir and file. Errors are fine;
//! a panic, or any change beside the root (the canary, or a new or removed name in the
//! parent), is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild::layer::apply::{LayerApply, WhiteoutMode};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What the parent looks like from outside the root: names, kinds and the canary's content.
fn outside_state(parent: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut entries: Vec<_> =
        std::fs::read_dir(parent).expect("read parent").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        out.push(format!("{} {:?} {:o}", path.display(), meta.file_type(), meta.permissions().mode()));
    }
    let canary_dir = parent.join("canary-dir");
    let mut inside: Vec<_> =
        std::fs::read_dir(&canary_dir).map(|d| d.map(|e| e.expect("entry").path()).collect()).unwrap_or_default();
    inside.sort();
    out.extend(inside.iter().map(|p| p.display().to_string()));
    out.push(std::fs::read_to_string(canary_dir.join("file")).unwrap_or_default());
    out.push(std::fs::read_to_string(parent.join("canary-file")).unwrap_or_default());
    out
}

fuzz_target!(|data: &[u8]| {
    for mode in [WhiteoutMode::Overlay, WhiteoutMode::Delete, WhiteoutMode::Literal] {
        let parent = tempfile::tempdir().expect("temp parent");
        std::fs::create_dir(parent.path().join("canary-dir")).expect("canary dir");
        std::fs::write(parent.path().join("canary-dir/file"), "canary").expect("canary");
        std::fs::write(parent.path().join("canary-file"), "canary").expect("canary");
        let root = parent.path().join("root");
        std::fs::create_dir(&root).expect("root");
        let before = outside_state(parent.path());
        if let Ok(mut apply) = LayerApply::new(&root, mode) {
            let _ = apply.apply(data);
        }
        assert!(root.is_dir(), "{mode:?}: the root itself was removed");
        assert_eq!(outside_state(parent.path()), before, "{mode:?}: something outside the root changed");
    }
});
