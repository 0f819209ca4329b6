//! Archives that are not layers (an ADDed tar, a build context fetched from a URL): the
//! compressions Docker undoes before reading a tar (gzip, bzip2, xz, zstd, by magic bytes),
//! the decompressed stream, and whether a file is a tar archive at all, decided as Docker
//! decides (BuildKit's and the classic builder's `isArchivePath`: undo the compression the
//! magic bytes name, then the first tar header must read). Extraction itself is
//! [`crate::layer::apply`] with [`crate::layer::apply::WhiteoutMode::Literal`].

use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use fs_err as fs;

/// The compressions undone before reading a tar: gzip, bzip2, xz and zstd (which Docker's
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

/// Whether `path` is a tar archive (ADD extracts it): a regular file whose (decompressed) content starts with a
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
pub fn starts_with_tar_header(stream: impl Read) -> bool {
    let mut archive = tar::Archive::new(stream);
    let Ok(mut entries) = archive.entries() else { return false };
    matches!(entries.next(), Some(Ok(_)))
}

/// The tar stream of an archive. xz has no streaming decoder in `lzma-rs`, so it
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
