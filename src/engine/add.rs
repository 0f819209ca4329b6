//! ADD's sources that are not plain files: URLs, downloaded (checked against `--checksum`),
//! and local archives: which context files are tar archives, decided as Docker decides
//! (BuildKit's and the classic builder's `isArchivePath`: undo the compression the magic bytes
//! name, then the first tar header must read), the decompressed stream of one, and its
//! extraction into the destination. Anything else, a gzipped text or an empty tar included,
//! is copied unchanged.

use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::engine::BuildError;

use fs_err as fs;

/// The compressions ADD undoes before reading a tar: gzip, bzip2, xz and zstd (which Docker's
/// decompressor also reads), or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveCompression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl ArchiveCompression {
    /// By magic bytes, as Docker's `DetectCompression`.
    pub fn detect(head: &[u8]) -> ArchiveCompression {
        if head.starts_with(&[0x1f, 0x8b, 0x08]) {
            ArchiveCompression::Gzip
        } else if head.starts_with(b"BZh") {
            ArchiveCompression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            ArchiveCompression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            ArchiveCompression::Zstd
        } else {
            ArchiveCompression::None
        }
    }
}

/// How much decompressed data the sniff reads at most: the first header and the PAX or GNU
/// long-name records before it.
const SNIFF_LIMIT: u64 = 1 << 20;

/// Whether ADD extracts `path`: a regular file whose (decompressed) content starts with a
/// valid tar header. Unreadable or corrupt data is "not an archive" (Docker then copies the
/// file as it is).
pub fn is_tar_archive(path: &Path) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else { return false };
    if !meta.is_file() {
        return false;
    }
    let Ok(file) = fs::File::open(path) else { return false };
    let Ok(stream) = decompressed(BufReader::new(file), None, Some(SNIFF_LIMIT)) else { return false };
    starts_with_tar_header(stream.take(SNIFF_LIMIT))
}

/// Does `stream` hold a tar entry (a header whose checksum matches)? An empty archive (only
/// zero blocks) does not, as for Go's `tar.Reader.Next`.
fn starts_with_tar_header(stream: impl Read) -> bool {
    let mut archive = tar::Archive::new(stream);
    let Ok(mut entries) = archive.entries() else { return false };
    matches!(entries.next(), Some(Ok(_)))
}

/// The tar stream of an archive ADD extracts. xz has no streaming decoder in `lzma-rs`, so it
/// is decompressed into a temporary file under `scratch` (else the system's temp dir), whole
/// or up to `limit` bytes.
pub fn decompressed<'a, R: io::BufRead + 'a>(
    mut reader: R,
    scratch: Option<&Path>,
    limit: Option<u64>,
) -> io::Result<Box<dyn Read + 'a>> {
    let head = reader.fill_buf()?;
    Ok(match ArchiveCompression::detect(head) {
        ArchiveCompression::None => Box::new(reader),
        ArchiveCompression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        ArchiveCompression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(reader)),
        ArchiveCompression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
        ArchiveCompression::Xz => {
            let spool = match scratch {
                Some(dir) => tempfile::tempfile_in(dir)?,
                None => tempfile::tempfile()?,
            };
            let mut out = LimitedWriter { inner: spool, left: limit.unwrap_or(u64::MAX) };
            match lzma_rs::xz_decompress(&mut reader, &mut out) {
                Ok(()) => {}
                // The sniff asked for a prefix only: what was written is enough.
                Err(_) if out.left == 0 => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
            let mut file = out.inner;
            io::Seek::rewind(&mut file)?;
            Box::new(file)
        }
    })
}

/// A writer that takes `left` more bytes and then fails, to stop a decoder early.
struct LimitedWriter<W> {
    inner: W,
    left: u64,
}

impl<W: Write> Write for LimitedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "enough decompressed data"));
        }
        let n = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let written = self.inner.write(&buf[..n])?;
        self.left -= written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

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
    let modified = response
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .map(|t| t.timestamp());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with_one_file() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, "a.txt", &b"abc"[..]).expect("append");
        builder.into_inner().expect("finish")
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).expect("gzip");
        gz.finish().expect("gzip")
    }

    fn bzip2(data: &[u8]) -> Vec<u8> {
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(data).expect("bzip2");
        bz.finish().expect("bzip2")
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        lzma_rs::xz_compress(&mut &data[..], &mut out).expect("xz");
        out
    }

    fn is_archive(bytes: &[u8]) -> bool {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).expect("write");
        is_tar_archive(&path)
    }

    #[test]
    fn only_compressed_or_plain_tars_are_archives() {
        let tar = tar_with_one_file();
        let text = b"just some notes\n".repeat(100);
        for (name, bytes, want) in [
            ("tar", tar.clone(), true),
            ("tar.gz", gzip(&tar), true),
            ("tar.bz2", bzip2(&tar), true),
            ("tar.xz", xz(&tar), true),
            ("tar.zst", zstd::encode_all(&tar[..], 1).expect("zstd"), true),
            ("text", text.clone(), false),
            ("text.gz", gzip(&text), false),
            ("text.bz2", bzip2(&text), false),
            ("text.xz", xz(&text), false),
            ("empty.gz", gzip(b""), false),
            ("empty tar", vec![0; 1024], false),
            ("truncated gzip", gzip(&tar)[..12].to_vec(), false),
        ] {
            assert_eq!(is_archive(&bytes), want, "{name}");
        }
    }

    #[test]
    fn a_tar_header_with_a_bad_checksum_is_not_an_archive() {
        let mut tar = tar_with_one_file();
        tar[0] ^= 0x20;
        assert!(!is_archive(&tar));
    }
}
