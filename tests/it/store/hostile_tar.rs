//! Hostile archives: one table of crafted tars (traversal, absolute names, symlink and hard
//! link escapes, whiteouts of `.` and `..`, device nodes, long names...), each refused with an
//! error naming the entry or contained by `LayerApply`, in every whiteout mode, with nothing
//! written outside the target directory. The same table goes through the store in-process and
//! through the real binary (`import`, `load` of docker-archive and OCI layout, `build -`, `ADD`)
//! with canaries beside and above every extraction root.

use crate::fixture::{is_root, raw_tar, require, Raw};
use rbuild::layer::apply::{LayerApply, WhiteoutMode};
use std::path::Path;

/// What a hostile archive must lead to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Refused with an error naming the entry (`refused tar entry "<name>"`).
    Refused(&'static str),
    /// Fails with an error that mentions this text (an OS error on a path inside the root).
    Fails(&'static str),
    /// Applied, everything landing inside the root.
    Contained,
}
use Expect::{Contained, Fails, Refused};

struct Case {
    name: &'static str,
    tar: Vec<u8>,
    expect: Expect,
}

fn case(name: &'static str, expect: Expect, entries: &[Raw]) -> Case {
    Case { name, tar: raw_tar(entries), expect }
}

/// A tar whose one file entry has a name longer than a ustar header holds (a GNU long-name
/// entry carries it).
fn long_name_tar(name: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    // `append_data` writes the long name as is; it refuses only `..` components, so those
    // cases are spelled with `./` padding and raw bytes below.
    b.append_data(&mut h, name, &b"x"[..]).unwrap();
    b.into_inner().unwrap()
}

/// A GNU long-name entry (`././@LongLink`) carrying `name` byte for byte, then a file.
fn raw_long_name_tar(name: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut link = tar::Header::new_gnu();
    link.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    link.set_mode(0o644);
    link.set_entry_type(tar::EntryType::GNULongName);
    link.set_size(name.len() as u64 + 1);
    link.set_cksum();
    let mut data = name.as_bytes().to_vec();
    data.push(0);
    b.append(&link, &data[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..5].copy_from_slice(b"short");
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(1);
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Every hostile archive; `outside` is a directory beside the extraction root holding
/// `secret`. Adding a case is one line.
fn cases(outside: &Path) -> Vec<Case> {
    let o = outside.to_str().unwrap().to_owned();
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let secret = leak(format!("{o}/secret"));
    let out_dir = leak(o.clone());
    let deep_up = leak(format!("{}/escaped", "a/".repeat(60) + &"../".repeat(70)));
    let deep_up_shown: &'static str = leak(deep_up[..40].to_owned());
    vec![
        case("dotdot file", Refused("../escaped"), &[Raw::File("../escaped", b"x")]),
        case("deep dotdot file", Refused("a/../../escaped"), &[Raw::Dir("a"), Raw::File("a/../../escaped", b"x")]),
        case("dotdot dir", Refused("a/.."), &[Raw::Dir("a/..")]),
        case("dotdot after symlink", Refused("up/../x"), &[Raw::Symlink("up", ".."), Raw::File("up/../x", b"x")]),
        case("absolute path", Contained, &[Raw::File(leak(format!("{o}/abs")), b"x")]),
        case("absolute symlink parent", Contained, &[Raw::Symlink("evil", out_dir), Raw::File("evil/pwned", b"x")]),
        case(
            "relative symlink parent",
            Contained,
            &[Raw::Symlink("evil", "../../../../../../../../.."), Raw::File(leak(format!("evil{o}/pwned")), b"x")],
        ),
        case(
            "symlink chain parent",
            Contained,
            &[
                Raw::Dir("d"),
                Raw::Symlink("d/up", ".."),
                Raw::Symlink("d/up2", "up/d/up"),
                Raw::File("d/up2/up/up/pwned", b"x"),
            ],
        ),
        case(
            "symlink replaces a dir",
            Contained,
            &[Raw::Dir("d"), Raw::File("d/x", b"1"), Raw::Symlink("d", out_dir), Raw::File("d/secret", b"pwned")],
        ),
        case(
            "symlink loop parent",
            Fails("l1"),
            &[Raw::Symlink("l1", "l2"), Raw::Symlink("l2", "l1"), Raw::File("l1/x", b"x")],
        ),
        case("hardlink to outside absolute", Refused("h"), &[Raw::Hardlink("h", secret)]),
        case(
            "hardlink with dotdot",
            Refused("h"),
            &[Raw::Hardlink("h", leak(format!("../../../../../../..{secret}")))],
        ),
        case("hardlink through symlink", Refused("h"), &[Raw::Symlink("s", out_dir), Raw::Hardlink("h", "s/secret")]),
        case("hardlink to a dir", Refused("h"), &[Raw::Dir("d"), Raw::Hardlink("h", "d")]),
        case("hardlink to itself", Refused("h"), &[Raw::Hardlink("h", "h")]),
        case("hardlink absolute inside", Contained, &[Raw::File("f", b"1"), Raw::Hardlink("h", "/f")]),
        case("file over symlink", Contained, &[Raw::Symlink("s", secret), Raw::File("s", b"pwned")]),
        case(
            "hardlink to symlink then write",
            Contained,
            &[Raw::Symlink("s", secret), Raw::Hardlink("h", "s"), Raw::File("h", b"pwned")],
        ),
        case(
            "duplicate entries",
            Contained,
            &[
                Raw::File("dup", b"1"),
                Raw::Dir("dup"),
                Raw::File("dup/x", b"2"),
                Raw::File("dup", b"3"),
                Raw::Symlink("dup", secret),
                Raw::File("dup", b"4"),
            ],
        ),
        case("whiteout through symlink", Contained, &[Raw::Symlink("w", out_dir), Raw::File("w/.wh.secret", b"")]),
        case("whiteout through dotdot symlink", Contained, &[Raw::Symlink("w", ".."), Raw::File("w/.wh.outside", b"")]),
        case("opaque through symlink", Contained, &[Raw::Symlink("w", out_dir), Raw::File("w/.wh..wh..opq", b"")]),
        case("opaque at the root", Contained, &[Raw::File(".wh..wh..opq", b"")]),
        case("dotdot whiteout", Refused("../.wh.outside"), &[Raw::File("../.wh.outside", b"")]),
        case("dotdot opaque", Refused("a/../.wh..wh..opq"), &[Raw::File("a/../.wh..wh..opq", b"")]),
        case("whiteout of the parent", Refused(".wh..."), &[Raw::File(".wh...", b"")]),
        case("whiteout of the parent, dot prefix", Refused("./.wh..."), &[Raw::File("./.wh...", b"")]),
        case("whiteout of the root", Refused(".wh.."), &[Raw::File(".wh..", b"")]),
        case("whiteout of a subdir's parent", Refused("a/.wh..."), &[Raw::Dir("a"), Raw::File("a/.wh...", b"")]),
        case("whiteout of a new dir's parent", Refused("a/b/.wh..."), &[Raw::File("a/b/.wh...", b"")]),
        case("whiteout of a dir itself", Refused("a/.wh.."), &[Raw::Dir("a"), Raw::File("a/.wh..", b"")]),
        case(
            "whiteout of dotdot via symlink",
            Refused("s/.wh..."),
            &[Raw::Symlink("s", "/"), Raw::File("s/.wh...", b"")],
        ),
        case("whiteout without a name", Refused("d/.wh."), &[Raw::File("d/.wh.", b"")]),
        case("char device", Contained, &[Raw::Dir("dev"), Raw::Char("dev/mem", 1, 1)]),
        case("char device over outside symlink", Contained, &[Raw::Symlink("n", secret), Raw::Char("n", 1, 3)]),
        Case {
            name: "long name",
            tar: long_name_tar(&format!("{}/f", "long-dir-name/".repeat(30))),
            expect: Contained,
        },
        Case { name: "long name with dotdot", tar: raw_long_name_tar(deep_up), expect: Refused(deep_up_shown) },
        Case { name: "name component too long", tar: long_name_tar(&"n".repeat(300)), expect: Fails("nnnnnnnn") },
        Case {
            name: "gzip dotdot",
            tar: gzip(&raw_tar(&[Raw::File("../escaped", b"x")])),
            expect: Refused("../escaped"),
        },
        Case {
            name: "gzip parent whiteout",
            tar: gzip(&raw_tar(&[Raw::File(".wh...", b"")])),
            expect: Refused(".wh..."),
        },
    ]
}

/// Checks `result` against the case's expectation: a refusal must name the entry.
fn check_outcome(case: &Case, what: &str, result: Result<(), String>) {
    match (case.expect, result) {
        (Contained, _) => {}
        (Refused(entry), Err(e)) => {
            let named = format!("refused tar entry {entry:?}");
            let prefix_named = format!("refused tar entry \"{entry}");
            assert!(
                e.contains(&named) || e.contains(&prefix_named),
                "{what} {}: the error does not name {entry:?}: {e}",
                case.name
            );
        }
        (Fails(text), Err(e)) => {
            assert!(e.contains(text), "{what} {}: the error does not mention {text:?}: {e}", case.name)
        }
        (expect, Ok(())) => panic!("{what} {}: expected {expect:?}, but it succeeded", case.name),
    }
}

/// A fingerprint of everything under `dir` except what is under a `skip` path.
fn snapshot(dir: &Path, skip: &[&Path]) -> Vec<String> {
    let mut out = Vec::new();
    for e in walk(dir) {
        if skip.iter().any(|s| e.starts_with(s)) {
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
    for mode in [WhiteoutMode::Overlay, WhiteoutMode::Delete, WhiteoutMode::Literal] {
        let probe = tempfile::tempdir().unwrap();
        for case in cases(&probe.path().join("outside")) {
            let t = tempfile::tempdir().unwrap();
            let outside = t.path().join("outside");
            std::fs::create_dir(&outside).unwrap();
            std::fs::write(outside.join("secret"), "original").unwrap();
            let dest = t.path().join("dest");
            std::fs::create_dir(&dest).unwrap();
            let before = snapshot(t.path(), &[&dest]);
            // Rebuild the case for this temp dir's own outside path.
            let case = cases(&outside).into_iter().find(|c| c.name == case.name).unwrap();
            let result = LayerApply::new(&dest, mode).unwrap().apply(&case.tar[..]);
            check_outcome(&case, &format!("{mode:?}"), result.map(|_| ()).map_err(|e| e.to_string()));
            assert!(dest.is_dir(), "{}: the root itself was removed", case.name);
            assert_eq!(snapshot(t.path(), &[&dest]), before, "{}: something changed outside the layer dir", case.name);
            assert_eq!(std::fs::read_to_string(outside.join("secret")).unwrap(), "original", "{}", case.name);
        }
    }
}

/// A canary dir (with a file) and a canary file planted in a directory.
fn plant_canaries(dir: &Path) {
    std::fs::create_dir_all(dir.join("canary-dir")).unwrap();
    std::fs::write(dir.join("canary-dir/file"), "canary").unwrap();
    std::fs::write(dir.join("canary-file"), "canary").unwrap();
}

fn assert_canaries(dir: &Path, what: &str) {
    for f in ["canary-dir/file", "canary-file"] {
        let content = std::fs::read_to_string(dir.join(f));
        assert_eq!(content.as_deref().ok(), Some("canary"), "{what}: {}/{f} was touched", dir.display());
    }
}

/// Runs the binary on `root` with `TMPDIR=tmpdir`, `stdin` as its input; the error text on
/// failure.
fn run_binary(root: &Path, tmpdir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Result<(), String> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = crate::fixture::rbuild_command()
        .env("RBUILD_ROOT", root)
        .env("TMPDIR", tmpdir)
        .env_remove("CI")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(bytes) = stdin {
        // The binary may stop reading at a refused entry: a broken pipe is fine.
        let _ = child.stdin.take().unwrap().write_all(bytes);
    }
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout)))
    }
}

/// Every hostile archive through the real binary: `import`, `load` (docker-archive and OCI
/// layout, made by `save`) and a build that unpacks the image, `build -` with the archive as
/// the context, and `ADD` of the archive as a local tar. Canaries beside and above every
/// extraction root (the temp dir, `$TMPDIR`, the context, each store root) stay untouched.
#[test]
fn hostile_archives_through_the_binary_touch_nothing_outside() {
    if !require(is_root(), "root (unpacking a layer makes overlay whiteouts: mknod, trusted.* xattrs)") {
        return;
    }
    let probe = tempfile::tempdir().unwrap();
    for case in cases(&probe.path().join("outside")) {
        let t = tempfile::tempdir().unwrap();
        let top = t.path();
        let outside = top.join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), "original").unwrap();
        let case = cases(&outside).into_iter().find(|c| c.name == case.name).unwrap();
        let tmpdir = top.join("tmp");
        let ctx = top.join("ctx");
        let stores: Vec<_> =
            ["import", "docker", "oci", "add"].iter().map(|s| top.join(format!("store-{s}"))).collect();
        for dir in [top.to_path_buf(), tmpdir.clone(), ctx.clone()].iter().chain(&stores) {
            plant_canaries(dir);
        }
        std::fs::write(ctx.join("hostile.tar"), &case.tar).unwrap();
        let unpack_dockerfile = ctx.join("Dockerfile.unpack");
        std::fs::write(&unpack_dockerfile, "FROM scratch\nCOPY --from=hostile:latest /probe /probe\n").unwrap();
        std::fs::write(ctx.join("Dockerfile.add"), "FROM scratch\nADD hostile.tar /a/\n").unwrap();
        let (docker_tar, oci_tar) = (top.join("saved-docker.tar"), top.join("saved-oci.tar"));
        let skip: Vec<&Path> =
            stores.iter().map(|p| p.as_path()).chain([docker_tar.as_path(), oci_tar.as_path()]).collect();
        let before = snapshot(top, &skip);
        let archive = ctx.join("hostile.tar");
        let s = |p: &Path| p.to_str().unwrap().to_owned();
        let unpack = |root: &Path, what: &str| {
            let result = run_binary(root, &tmpdir, &["build", "-f", &s(&unpack_dockerfile), &s(&ctx)], None);
            // The probe path is never in the image: a build that unpacked cleanly still fails.
            if case.expect != Contained {
                check_outcome(&case, what, result);
            }
        };

        run_binary(&stores[0], &tmpdir, &["import", &s(&archive), "hostile"], None).unwrap();
        unpack(&stores[0], "import");
        run_binary(&stores[0], &tmpdir, &["save", "-o", &s(&docker_tar), "hostile"], None).unwrap();
        run_binary(&stores[0], &tmpdir, &["save", "--format", "oci", "-o", &s(&oci_tar), "hostile"], None).unwrap();
        run_binary(&stores[1], &tmpdir, &["load", "-i", &s(&docker_tar)], None).unwrap();
        unpack(&stores[1], "load docker-archive");
        run_binary(&stores[2], &tmpdir, &["load", "-i", &s(&oci_tar)], None).unwrap();
        unpack(&stores[2], "load OCI layout");

        let mut context = raw_tar(&[Raw::File("Dockerfile", b"FROM scratch\n")]);
        context.truncate(context.len() - 1024); // drop the end-of-archive blocks
        context.extend_from_slice(&decompressed(&case.tar));
        check_outcome(&case, "build -", run_binary(&stores[3], &tmpdir, &["build", "-"], Some(&context)));

        let add = run_binary(&stores[3], &tmpdir, &["build", "-f", &s(&ctx.join("Dockerfile.add")), &s(&ctx)], None);
        check_outcome(&case, "ADD", add);

        for dir in [top.to_path_buf(), tmpdir.clone(), ctx.clone()].iter().chain(&stores) {
            assert_canaries(dir, case.name);
        }
        assert_eq!(snapshot(top, &skip), before, "{}: something changed outside the stores", case.name);
        assert_eq!(std::fs::read_to_string(outside.join("secret")).unwrap(), "original", "{}", case.name);
    }
}

/// The plain tar inside a case (some cases are gzip-compressed).
fn decompressed(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
        out
    } else {
        bytes.to_vec()
    }
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
    let before = snapshot(t.path(), &[&root]);
    let bar = indicatif::ProgressBar::hidden();
    for case in cases(&outside) {
        let opts = rbuild::store::import::ImportOptions { source: case.name.into(), ..Default::default() };
        let image = rbuild::store::import::import_rootfs(&store, &case.tar[..], &opts, &bar).unwrap();
        let _ = store.ensure_unpacked(&image);
        assert_eq!(snapshot(t.path(), &[&root]), before, "{}", case.name);
    }
}

/// Build contexts and steps that would commit a file named `.wh.*`: the name is reserved for
/// whiteouts, so the file would be there where it was built and a deletion wherever the image
/// is unpacked. Each is refused at commit, naming the file. Adding a case is one line:
/// (name, Dockerfile, context files, text the error must contain).
#[test]
fn reserved_whiteout_names_are_refused_at_commit() {
    let Some(fx) = crate::fixture::Fixture::new() else { return };
    /// (name, Dockerfile, context files, text the error must contain)
    type ReservedCase<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let reserved: &[ReservedCase] = &[
        ("context file", "FROM busybox\nCOPY . /etc/\n", &[(".wh.hosts", "x")], "/etc/.wh.hosts (from "),
        ("nested context file", "FROM busybox\nCOPY . /x/\n", &[("d/.wh.passwd", "")], "/x/d/.wh.passwd"),
        ("context dir", "FROM busybox\nCOPY . /x/\n", &[(".wh.d/f", "x")], "/x/.wh.d"),
        ("context opaque marker", "FROM busybox\nCOPY . /x/\n", &[("d/.wh..wh..opq", "")], "/x/d/.wh..wh..opq"),
        ("ADD of a plain file", "FROM busybox\nADD .wh.bin /\n", &[(".wh.bin", "")], "/.wh.bin"),
        ("RUN makes one", "FROM busybox\nRUN touch /.wh.bin\n", &[], "/.wh.bin"),
        ("RUN makes an opaque marker", "FROM busybox\nRUN mkdir /d && touch /d/.wh..wh..opq\n", &[], "/d/.wh..wh..opq"),
    ];
    for (name, dockerfile, files, expected) in reserved {
        let ctx = fx.context(&name.replace(' ', "-"), dockerfile, files);
        let out = crate::fixture::rbuild(&fx.root, &["build", "-t", "reserved", ctx.to_str().unwrap()]);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
        assert!(!out.status.success(), "{name}: a reserved name was committed:\n{text}");
        assert!(text.contains(expected) && text.contains("reserved for whiteouts"), "{name}: {text}");
        assert!(crate::fixture::rbuild(&fx.root, &["inspect", "reserved"]).status.code() != Some(0), "{name}: tagged");
    }
    // A context tar on stdin and an ADDed tar are not layers: their `.wh.` entries are files,
    // as in Docker, and refused when a step would commit one.
    let wh_tar = raw_tar(&[Raw::Dir("d"), Raw::File("d/keep", b"k"), Raw::File("d/.wh.keep", b"")]);
    let mut context = raw_tar(&[Raw::File("Dockerfile", b"FROM busybox\nCOPY d /x/\n")]);
    context.truncate(context.len() - 1024); // drop the end-of-archive blocks
    context.extend_from_slice(&wh_tar);
    let tmpdir = fx.dir.path().join("tmp");
    std::fs::create_dir_all(&tmpdir).unwrap();
    let err = run_binary(&fx.root, &tmpdir, &["build", "-"], Some(&context)).unwrap_err();
    assert!(err.contains("/x/.wh.keep") && err.contains("reserved for whiteouts"), "build -: {err}");
    let ctx = fx.context("add-tar", "FROM busybox\nADD w.tar /a/\n", &[]);
    std::fs::write(ctx.join("w.tar"), &wh_tar).unwrap();
    let err = run_binary(&fx.root, &tmpdir, &["build", ctx.to_str().unwrap()], None).unwrap_err();
    assert!(err.contains("/a/d/.wh.keep") && err.contains("reserved for whiteouts"), "ADD: {err}");
    // A name that only contains the prefix is an ordinary file.
    let ctx = fx.context("ordinary", "FROM busybox\nCOPY . /x/\nRUN test -f /x/a.wh.b\n", &[("a.wh.b", "x")]);
    crate::fixture::rbuild_ok(&fx.root, &["build", ctx.to_str().unwrap()]);
}

/// The fuzz target `layer_apply` starts from this table: `fuzz/corpus/layer_apply/<case>`
/// holds each case's bytes. `RBUILD_UPDATE_FUZZ_SEEDS=1` rewrites them; otherwise a case
/// missing from the corpus (or changed) fails here.
#[test]
fn fuzz_seeds_hold_every_case() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/layer_apply");
    let update = std::env::var_os("RBUILD_UPDATE_FUZZ_SEEDS").is_some();
    for case in cases(Path::new("/tmp/outside")) {
        let file = dir.join(case.name.replace([' ', ',', '\''], "-"));
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&file, &case.tar).unwrap();
        }
        let seed = std::fs::read(&file).unwrap_or_default();
        assert!(seed == case.tar, "{}: missing or stale; run with RBUILD_UPDATE_FUZZ_SEEDS=1", file.display());
    }
}
