//! ADD's sources that are not plain files: URLs, downloaded (checked against `--checksum`),
//! and local archives extracted into the destination (which files are archives, and their
//! decompressed stream: [`crate::layer::archive`]). Anything else, a gzipped text or an empty
//! tar included, is copied unchanged.

use std::path::{Path, PathBuf};

use crate::engine::BuildError;
use crate::layer::archive::decompressed;

use fs_err as fs;

/// Downloads `url` into `work` for ADD: the file is named after the URL's last path
/// segment, gets mode 0600 and the server's Last-Modified time (as docker does), and must
/// match `--checksum` when one is given.
pub fn download(
    step: usize,
    url: &str,
    work: &Path,
    n: usize,
    checksum: Option<&str>,
) -> Result<(PathBuf, String), BuildError> {
    use sha2::Digest;
    use std::io::{Read, Write};
    let fail = |message: String| BuildError::Step { step, message: format!("ADD {url}: {message}") };
    let response = ureq::get(url).call().map_err(|e| fail(e.to_string()))?;
    let modified = crate::context::remote::last_modified(response.headers());
    // `scheme://host/path?query`: the last segment of the path, else index.html.
    let path = url.split(['?', '#']).next().unwrap_or(url).splitn(4, '/').nth(3).unwrap_or("");
    let name = path.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("index.html").to_string();
    let host = work.join(format!("url-{n}"));
    let mut file = fs::File::create(&host)?;
    let mut hasher = sha2::Sha256::new();
    let mut body = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let read = body.read(&mut buf).map_err(|e| fail(format!("reading the response: {e}")))?;
        if read == 0 {
            break;
        }
        hasher.update(&buf[..read]);
        file.write_all(&buf[..read])?;
    }
    file.sync_all()?;
    drop(file);
    let got = format!("sha256:{}", hex::encode(hasher.finalize()));
    if let Some(want) = checksum {
        if !want.eq_ignore_ascii_case(&got) {
            return Err(fail(format!("checksum mismatch: expected {want}, got {got}")));
        }
    }
    fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    if let Some(secs) = modified {
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
        fs::File::options().write(true).open(&host)?.set_modified(when)?;
    }
    Ok((host, name))
}

/// ADD of a local tar (plain, gzip, bzip2, xz or zstd): extracted into `upper` at `dest` through the
/// store's hardened applier (no path escapes the destination), owners from the archive
/// unless `--chown` is given.
pub fn extract_archive(
    step: usize,
    archive: &Path,
    upper: &Path,
    dest: &str,
    chown: Option<(u32, u32)>,
) -> Result<(), BuildError> {
    let target = upper.join(dest.trim_start_matches('/'));
    fs::create_dir_all(&target)?;
    let fail =
        |e: &dyn std::fmt::Display| BuildError::Step { step, message: format!("ADD {}: {e}", archive.display()) };
    let mut apply = crate::layer::apply::LayerApply::new(&target, crate::layer::apply::WhiteoutMode::Literal)
        .map_err(|e| fail(&e))?;
    let scratch = upper.parent().unwrap_or(upper);
    let tar =
        decompressed(std::io::BufReader::new(fs::File::open(archive)?), Some(scratch), None).map_err(|e| fail(&e))?;
    apply.apply(tar).map_err(|e| fail(&e))?;
    if let Some((uid, gid)) = chown {
        chown_tree(&target, uid, gid)?;
    }
    Ok(())
}

/// `lchown -R`.
pub fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.symlink_metadata()?.is_dir() {
            chown_tree(&path, uid, gid)?;
        } else {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        }
    }
    Ok(())
}
