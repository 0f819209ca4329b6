//! Front-end benchmarks: parse + lower of the real-world Dockerfile corpus, and the build
//! context path (walk + .dockerignore + digest of every file) on a 20,000-file tree, measured
//! in the same run as `tar -cf - DIR | sha256sum` on the same tree so the ratio is meaningful
//! on a noisy machine. The ratio is printed at the end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{black_box, Criterion};
use rbuild::context::{source_digest, BuildContext};
use rbuild::frontend::lower::{parse_and_lower, LowerOptions};

fn corpus() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/conformance/real-world");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "Dockerfile"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (p.display().to_string(), std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        })
        .collect()
}

/// 100 directories of 200 files, 16 B to 2 KiB each, deterministic content; a .dockerignore
/// that excludes a few names, as s2-context does.
fn make_tree(root: &Path) {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for d in 0..100 {
        let dir = root.join(format!("dir{d:03}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..200 {
            let len = 16 + (next() % (2048 - 16)) as usize;
            let byte = (next() % 26) as u8 + b'a';
            std::fs::write(dir.join(format!("file{f:03}.txt")), vec![byte; len]).expect("write");
        }
    }
    std::fs::write(root.join(".dockerignore"), "*.log\nbig.bin\n**/*.tmp\n").expect("write .dockerignore");
    std::fs::write(root.join("Dockerfile"), "FROM busybox\nCOPY . /data/\n").expect("write Dockerfile");
}

fn context_digest(root: &Path) -> String {
    let ctx = BuildContext::open(root, None).expect("open context");
    let entries = ctx.select(&[".".to_string()], &[]).expect("select");
    source_digest(root, &entries, Some((0, 0)), None).expect("digest").digest
}

fn tar_sha256(root: &Path) {
    let status = Command::new("sh")
        .arg("-c")
        .arg("tar -cf - . | sha256sum >/dev/null")
        .current_dir(root)
        .status()
        .expect("run tar | sha256sum");
    assert!(status.success());
}

fn median(mut f: impl FnMut(), runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let files = corpus();
    c.bench_function("parse+lower real-world corpus", |b| {
        b.iter(|| {
            for (name, text) in &files {
                black_box(parse_and_lower(text, name, &LowerOptions::default()).expect("lowers"));
            }
        })
    });

    let tree = tempfile::tempdir().expect("tempdir");
    make_tree(tree.path());
    let mut group = c.benchmark_group("context 20k files");
    group.sample_size(10);
    group.bench_function("rbuild walk+ignore+digest", |b| b.iter(|| black_box(context_digest(tree.path()))));
    group.bench_function("tar -cf - DIR | sha256sum", |b| b.iter(|| tar_sha256(tree.path())));
    group.finish();

    // The acceptance figure: both measured back to back on the same warm tree.
    let ours = median(|| drop(black_box(context_digest(tree.path()))), 7);
    let tar = median(|| tar_sha256(tree.path()), 7);
    println!(
        "context ratio: rbuild {:.1} ms / tar|sha256sum {:.1} ms = {:.2}x (target <= 1.5x)",
        ours.as_secs_f64() * 1e3,
        tar.as_secs_f64() * 1e3,
        ours.as_secs_f64() / tar.as_secs_f64()
    );
    c.final_summary();
}
