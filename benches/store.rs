//! `load` and `save` of a 300 MB image against `skopeo copy` between the same formats, in
//! one run: docker-archive and OCI archive, both directions. Prints the median of 3 runs and
//! the rbuild/skopeo ratio (below 1.0 = rbuild is faster). Needs skopeo (Debian package).
//! Run: `cargo bench --bench store`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const FILE_SIZE: u64 = 100 << 20;
const RUNS: usize = 3;

struct Pattern {
    left: u64,
    seed: u64,
}

/// xorshift bytes: incompressible, so no tool can win by compressing.
impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = ((buf.len() as u64).min(self.left) as usize) / 8 * 8;
        let n = if n == 0 { (buf.len() as u64).min(self.left) as usize } else { n };
        for chunk in buf[..n].chunks_mut(8) {
            self.seed ^= self.seed << 13;
            self.seed ^= self.seed >> 7;
            self.seed ^= self.seed << 17;
            chunk.copy_from_slice(&self.seed.to_le_bytes()[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn rbuild(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    c.env("RBUILD_ROOT", root);
    c
}

fn median(mut f: impl FnMut() -> Duration) -> Duration {
    let mut v: Vec<Duration> = (0..RUNS).map(|_| f()).collect();
    v.sort();
    v[RUNS / 2]
}

fn timed(prepare: impl Fn(), cmd: impl Fn() -> Command) -> Duration {
    median(|| {
        prepare();
        let start = Instant::now();
        run(&mut cmd());
        start.elapsed()
    })
}

fn main() {
    if Command::new("skopeo").arg("--version").output().is_err() {
        eprintln!("SKIPPED: skopeo is not installed (Debian package skopeo)");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("store-bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rootfs = dir.join("rootfs.tar");
    let mut b = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(&rootfs).unwrap()));
    for i in 0..3u64 {
        let mut h = tar::Header::new_gnu();
        h.set_size(FILE_SIZE);
        h.set_mode(0o644);
        b.append_data(
            &mut h,
            format!("data/blob{i}"),
            Pattern { left: FILE_SIZE, seed: 0x9e37_79b9_7f4a_7c15 ^ (i + 1) },
        )
        .unwrap();
    }
    b.into_inner().unwrap().flush().unwrap();
    let src = dir.join("src-store");
    run(rbuild(&src).args(["import", rootfs.to_str().unwrap(), "big:1"]));
    let oci_src = format!("oci:{}:big:1", src.display());

    let rm = |p: &Path| {
        let _ = std::fs::remove_file(p);
        let _ = std::fs::remove_dir_all(p);
    };
    let mut rows = Vec::new();
    for (label, transport, format) in
        [("docker-archive", "docker-archive", "docker"), ("oci-archive", "oci-archive", "oci")]
    {
        let r_out = dir.join(format!("rbuild-{format}.tar"));
        let s_out = dir.join(format!("skopeo-{format}.tar"));
        let save_r = timed(
            || rm(&r_out),
            || {
                let mut c = rbuild(&src);
                c.args(["save", "--format", format, "-o", r_out.to_str().unwrap(), "big:1"]);
                c
            },
        );
        let save_s = timed(
            || rm(&s_out),
            || {
                let mut c = Command::new("skopeo");
                c.args([
                    "copy",
                    "-q",
                    "--dest-oci-accept-uncompressed-layers",
                    &oci_src,
                    &format!("{transport}:{}:big:1", s_out.display()),
                ]);
                c
            },
        );
        rows.push((format!("save  store -> {label}"), save_r, save_s));
        let r_store = dir.join("load-rbuild");
        let s_store = dir.join("load-skopeo");
        let load_r = timed(
            || rm(&r_store),
            || {
                let mut c = rbuild(&r_store);
                c.args(["load", "-q", "-i", r_out.to_str().unwrap()]);
                c
            },
        );
        let load_s = timed(
            || rm(&s_store),
            || {
                let mut c = Command::new("skopeo");
                // The same archive rbuild loads (rbuild's save output), into an OCI layout,
                // layers kept uncompressed as rbuild keeps them.
                let from = if format == "docker" {
                    format!("{transport}:{}", r_out.display())
                } else {
                    format!("{transport}:{}:1", r_out.display())
                };
                c.args([
                    "copy",
                    "-q",
                    "--dest-oci-accept-uncompressed-layers",
                    &from,
                    &format!("oci:{}:big:1", s_store.display()),
                ]);
                c
            },
        );
        rows.push((format!("load  {label} -> store"), load_r, load_s));
    }
    println!("300 MB image (3 x 100 MB incompressible files, one uncompressed layer), median of {RUNS} runs; loads read the same archive");
    println!("{:<36} {:>10} {:>10} {:>8}", "operation", "rbuild", "skopeo", "ratio");
    for (name, r, s) in rows {
        println!(
            "{name:<36} {:>9.3}s {:>9.3}s {:>8.2}",
            r.as_secs_f64(),
            s.as_secs_f64(),
            r.as_secs_f64() / s.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
