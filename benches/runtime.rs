//! Runtime and commit benchmarks (root only; each comparison skips with a message when its
//! tool is missing):
//! - start-to-exit of `/bin/true` in a container: rbuild on an overlay and on a plain dir,
//!   `runc run` of the same rootfs, `buildah run --isolation chroot`;
//! - commit of a 300 MB upper dir: `write_layer` (gzip on all cores) against
//!   `tar -cf - DIR | sha256sum` and `tar -cf - DIR | pigz | sha256sum`.

#[path = "../tests/it/fixture.rs"]
mod fixture;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use rbuild::layer::diff::{write_layer, DiffOptions};
use rbuild::runtime::{Container, ContainerSpec, Rootfs, StdioMode};

fn have(tool: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {tool} >/dev/null")).status().is_ok_and(|s| s.success())
}

fn quiet(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn container_start(c: &mut Criterion) {
    if !fixture::is_root() || fixture::busybox_path().is_none() {
        eprintln!("SKIPPED container_start: needs root and busybox-static");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().to_path_buf();
    let rootfs = base.join("bundle/rootfs");
    fixture::busybox_rootfs(&rootfs);
    let state = base.join("state");
    let mut group = c.benchmark_group("start_to_exit_true");
    group.sample_size(30).measurement_time(Duration::from_secs(8));

    let mut n = 0u64;
    group.bench_function("rbuild_overlay", |b| {
        b.iter(|| {
            n += 1;
            let dir = base.join(format!("o{n}"));
            std::fs::create_dir_all(dir.join("upper")).expect("upper");
            std::fs::create_dir_all(dir.join("work")).expect("work");
            let mut spec = ContainerSpec::new(
                &format!("bench{n}"),
                Rootfs::Overlay { lower: vec![rootfs.clone()], upper: dir.join("upper"), work: dir.join("work") },
                vec!["/bin/true".into()],
                state.clone(),
            );
            spec.stdio = StdioMode::Null;
            assert_eq!(Container::new(spec).run().expect("run").code, 0);
        })
    });
    group.bench_function("rbuild_plain_dir", |b| {
        b.iter(|| {
            n += 1;
            let mut spec = ContainerSpec::new(
                &format!("bench{n}"),
                Rootfs::Dir(rootfs.clone()),
                vec!["/bin/true".into()],
                state.clone(),
            );
            spec.stdio = StdioMode::Null;
            assert_eq!(Container::new(spec).run().expect("run").code, 0);
        })
    });

    if have("runc") {
        let bundle = base.join("bundle");
        assert!(quiet(Command::new("runc").arg("spec").current_dir(&bundle)));
        let config_path = bundle.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config_path).expect("config")).expect("json");
        config["process"]["args"] = serde_json::json!(["/bin/true"]);
        config["process"]["terminal"] = serde_json::json!(false);
        std::fs::write(&config_path, config.to_string()).expect("write config");
        group.bench_function("runc_run", |b| {
            b.iter(|| {
                n += 1;
                let ok = quiet(
                    Command::new("runc")
                        .args(["run", "-b"])
                        .arg(&bundle)
                        .arg(format!("rbuild-bench-{}-{n}", std::process::id())),
                );
                assert!(ok, "runc run failed");
            })
        });
    } else {
        eprintln!("SKIPPED runc_run: runc not installed");
    }

    if have("buildah") {
        let buildah = |args: &[&str]| {
            let out =
                Command::new("buildah").args(["--storage-driver", "overlay"]).args(args).output().expect("buildah");
            assert!(out.status.success(), "buildah {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let name = format!("rbuild-bench-{}", std::process::id());
        buildah(&["from", "--name", &name, "scratch"]);
        let mount = PathBuf::from(buildah(&["mount", &name]));
        assert!(quiet(Command::new("cp").arg("-a").arg(rootfs.join(".")).arg(&mount)));
        group.bench_function("buildah_run_chroot", |b| {
            b.iter(|| buildah(&["run", "--isolation", "chroot", &name, "/bin/true"]))
        });
        buildah(&["rm", &name]);
    } else {
        eprintln!("SKIPPED buildah_run_chroot: buildah not installed");
    }
    group.finish();
}

/// 300 files of 1 MiB: half pseudo-random text (compresses about 3x), half repeated.
fn make_upper(dir: &Path) {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for d in 0..30 {
        let sub = dir.join(format!("dir{d:02}"));
        std::fs::create_dir_all(&sub).expect("mkdir");
        for f in 0..10 {
            let mut data = Vec::with_capacity(1 << 20);
            while data.len() < 1 << 19 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                data.push(b"abcdefghij klmnop\nqrstuv"[(seed % 24) as usize]);
            }
            let half = data.clone();
            data.extend_from_slice(&half);
            std::fs::write(sub.join(format!("file{f}")), &data).expect("write");
        }
    }
}

fn commit_300mb(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let upper = tmp.path().join("upper");
    make_upper(&upper);
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let mut group = c.benchmark_group("commit_300mb");
    group.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(30));
    group.bench_function("rbuild_write_layer_gzip", |b| {
        b.iter(|| {
            let layer = write_layer(&upper, &out, &DiffOptions::default()).expect("commit");
            std::fs::remove_file(&layer.path).expect("rm");
        })
    });
    group.bench_function("rbuild_write_layer_zstd", |b| {
        let opts = DiffOptions { compression: rbuild::layer::media::Compression::Zstd, ..DiffOptions::default() };
        b.iter(|| {
            let layer = write_layer(&upper, &out, &opts).expect("commit");
            std::fs::remove_file(&layer.path).expect("rm");
        })
    });
    let shell = |pipeline: &str| {
        let cmd = format!("tar -cf - -C {} . | {pipeline} > /dev/null", upper.display());
        move || assert!(quiet(Command::new("sh").arg("-c").arg(&cmd)))
    };
    let tar_sha = shell("sha256sum");
    group.bench_function("tar_sha256sum", |b| b.iter(&tar_sha));
    if have("pigz") {
        let tar_pigz = shell("pigz | sha256sum");
        group.bench_function("tar_pigz_sha256sum", |b| b.iter(&tar_pigz));
    } else {
        eprintln!("SKIPPED tar_pigz_sha256sum: pigz not installed");
    }
    group.finish();
}

criterion_group!(benches, container_start, commit_300mb);
criterion_main!(benches);
