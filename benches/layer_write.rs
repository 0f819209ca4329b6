//! Writing a layer blob from a directory, as a RUN step's commit and `--builder docker://`
//! (dockerd's overlay2 diff directories) do: tar, sha256, the blob file and its fsync. The
//! tree is ~96 MB as an `apt-get install` layer is (a few large files, a few thousand small
//! ones). Measured beside `tar -cf - DIR | sha256sum` of the same tree, which writes no file,
//! so the ratio is meaningful on a noisy machine; both are printed at the end.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::Criterion;
use rbuild::layer::diff::{write_layer, DiffOptions};
use rbuild::layer::media::Compression;

/// Deterministic file contents that do not compress to nothing.
fn bytes(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 24) as u8
        })
        .collect()
}

/// Four 16 MiB files and 3,000 files of 1-16 KiB in 30 directories.
fn make_tree(root: &Path) {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let big = root.join("var/cache/apt");
    std::fs::create_dir_all(&big).expect("mkdir");
    for i in 0..4 {
        std::fs::write(big.join(format!("pkgcache-{i}.bin")), bytes(&mut seed, 16 << 20)).expect("write");
    }
    for d in 0..30 {
        let dir = root.join(format!("usr/share/doc/pkg{d}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..100 {
            let len = 1024 * (1 + (f * 7 + d) % 16);
            std::fs::write(dir.join(format!("file{f}")), bytes(&mut seed, len)).expect("write");
        }
    }
}

fn median(mut f: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..7).map(|_| f()).collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let tree = dir.path().join("tree");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    make_tree(&tree);
    let opts = DiffOptions { compression: Compression::None, ..DiffOptions::default() };
    let write_once = || {
        let layer = write_layer(&tree, &out, &opts).expect("write_layer");
        std::fs::remove_file(&layer.path).expect("rm");
        layer.uncompressed_size
    };
    let size = write_once();
    let mut c = Criterion::default().configure_from_args().sample_size(10);
    c.bench_function("write_layer uncompressed (~96 MB tree)", |b| b.iter(write_once));
    c.final_summary();

    let ours = median(|| {
        let t = Instant::now();
        write_once();
        t.elapsed()
    });
    let script = format!("tar -C {} -cf - . | sha256sum >/dev/null", tree.display());
    let tar = median(|| {
        let t = Instant::now();
        let ok = Command::new("bash").args(["-o", "pipefail", "-c", &script]).status().expect("bash").success();
        assert!(ok, "{script}");
        t.elapsed()
    });
    let mb = size as f64 / 1e6;
    println!(
        "layer of {mb:.0} MB: write_layer (blob written and fsynced) {:.1} ms ({:.0} MB/s); tar | sha256sum (no file) {:.1} ms; ratio {:.2}",
        ours.as_secs_f64() * 1e3,
        mb / ours.as_secs_f64(),
        tar.as_secs_f64() * 1e3,
        ours.as_secs_f64() / tar.as_secs_f64()
    );
}
