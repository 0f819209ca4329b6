//! The tar encoding of a layer diff: POSIX ustar headers, preceded by a PAX extended header
//! when a field does not fit (long names and link targets, big sizes and ids) or the entry has
//! xattrs (`SCHILY.xattr.<name>`). Only what a layer needs is written; nothing here reads the
//! filesystem.

use std::io::{self, Write};

const BLOCK: usize = 512;

/// What a tar entry is, with the fields that depend on its type.
#[derive(Debug, Clone)]
pub(crate) enum EntryKind {
    File { size: u64 },
    HardLink { target: Vec<u8> },
    Symlink { target: Vec<u8> },
    Dir,
    CharDevice { major: u64, minor: u64 },
    BlockDevice { major: u64, minor: u64 },
    Fifo,
}

impl EntryKind {
    fn typeflag(&self) -> u8 {
        match self {
            EntryKind::File { .. } => b'0',
            EntryKind::HardLink { .. } => b'1',
            EntryKind::Symlink { .. } => b'2',
            EntryKind::CharDevice { .. } => b'3',
            EntryKind::BlockDevice { .. } => b'4',
            EntryKind::Dir => b'5',
            EntryKind::Fifo => b'6',
        }
    }
}

/// An extended attribute: name and value bytes.
pub(crate) type Xattr = (Vec<u8>, Vec<u8>);

/// One tar entry's header fields. `path` is relative, without a leading `./` or trailing `/`.
#[derive(Debug, Clone)]
pub(crate) struct EntryHeader {
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes, written in the order given (callers sort them).
    pub xattrs: Vec<Xattr>,
}

/// Writes tar entries to `out`, tracking nothing but the stream itself.
pub(crate) struct PaxTarWriter<W: Write> {
    out: W,
}

impl<W: Write> PaxTarWriter<W> {
    pub fn new(out: W) -> Self {
        PaxTarWriter { out }
    }

    /// Writes the header(s) of an entry. For a file, the caller then writes exactly `size`
    /// bytes with [`PaxTarWriter::write_data`] and calls [`PaxTarWriter::end_data`].
    pub fn write_header(&mut self, entry: &EntryHeader) -> io::Result<()> {
        let mut name = entry.path.clone();
        if matches!(entry.kind, EntryKind::Dir) {
            name.push(b'/');
        }
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        if name.len() > 100 {
            pax.push((b"path".to_vec(), name.clone()));
        }
        let link: &[u8] = match &entry.kind {
            EntryKind::HardLink { target } | EntryKind::Symlink { target } => target,
            _ => &[],
        };
        if link.len() > 100 {
            pax.push((b"linkpath".to_vec(), link.to_vec()));
        }
        let size = match entry.kind {
            EntryKind::File { size } => size,
            _ => 0,
        };
        let size_field = fit_octal(size, 12, b"size", &mut pax);
        let uid_field = fit_octal(entry.uid, 8, b"uid", &mut pax);
        let gid_field = fit_octal(entry.gid, 8, b"gid", &mut pax);
        let mtime_field = if entry.mtime < 0 {
            pax.push((b"mtime".to_vec(), entry.mtime.to_string().into_bytes()));
            0
        } else {
            fit_octal(entry.mtime as u64, 12, b"mtime", &mut pax)
        };
        for (key, value) in &entry.xattrs {
            let mut k = b"SCHILY.xattr.".to_vec();
            k.extend_from_slice(key);
            pax.push((k, value.clone()));
        }

        if !pax.is_empty() {
            let mut records = Vec::new();
            for (key, value) in &pax {
                append_pax_record(&mut records, key, value);
            }
            let base = entry.path.rsplit(|b| *b == b'/').next().unwrap_or(&[]);
            let mut pax_name = b"PaxHeaders/".to_vec();
            pax_name.extend_from_slice(&base[..base.len().min(100 - pax_name.len())]);
            let header = ustar_header(&UstarFields {
                name: &pax_name,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: records.len() as u64,
                mtime: mtime_field,
                typeflag: b'x',
                linkname: &[],
                devmajor: 0,
                devminor: 0,
            });
            self.out.write_all(&header)?;
            self.out.write_all(&records)?;
            self.pad(records.len() as u64)?;
        }

        let (devmajor, devminor) = match entry.kind {
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => (major, minor),
            _ => (0, 0),
        };
        let header = ustar_header(&UstarFields {
            name: &name[..name.len().min(100)],
            mode: entry.mode & 0o7777,
            uid: uid_field,
            gid: gid_field,
            size: size_field,
            mtime: mtime_field,
            typeflag: entry.kind.typeflag(),
            linkname: &link[..link.len().min(100)],
            devmajor,
            devminor,
        });
        self.out.write_all(&header)
    }

    /// Writes file content after a file header.
    pub fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)
    }

    /// Pads the content written after a header of `size` bytes to a whole block.
    pub fn end_data(&mut self, size: u64) -> io::Result<()> {
        self.pad(size)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// Writes the end-of-archive marker (two zero blocks) and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; BLOCK * 2])?;
        Ok(self.out)
    }
}

struct UstarFields<'a> {
    name: &'a [u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    linkname: &'a [u8],
    devmajor: u64,
    devminor: u64,
}

fn ustar_header(f: &UstarFields<'_>) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..f.name.len()].copy_from_slice(f.name);
    put_octal(&mut h[100..108], u64::from(f.mode));
    put_octal(&mut h[108..116], f.uid);
    put_octal(&mut h[116..124], f.gid);
    put_octal(&mut h[124..136], f.size);
    put_octal(&mut h[136..148], f.mtime);
    h[148..156].copy_from_slice(b"        ");
    h[156] = f.typeflag;
    h[157..157 + f.linkname.len()].copy_from_slice(f.linkname);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    if f.typeflag == b'3' || f.typeflag == b'4' {
        put_octal(&mut h[329..337], f.devmajor);
        put_octal(&mut h[337..345], f.devminor);
    }
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let digits = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(digits.as_bytes());
    h
}

/// Writes `value` as zero-padded octal filling all but the last byte of `field` (a NUL).
fn put_octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    field[..width].copy_from_slice(&text.as_bytes()[text.len() - width..]);
    field[width] = 0;
}

/// Returns `value` if it fits an octal field of `len` bytes, else records it as a PAX
/// `key` and returns 0 for the ustar field.
fn fit_octal(value: u64, len: usize, key: &[u8], pax: &mut Vec<(Vec<u8>, Vec<u8>)>) -> u64 {
    let max = (1u64 << (3 * (len as u32 - 1))) - 1;
    if value > max {
        pax.push((key.to_vec(), value.to_string().into_bytes()));
        0
    } else {
        value
    }
}

/// Appends `"<len> <key>=<value>\n"`, where `<len>` counts the whole record including itself.
fn append_pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let base = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut total = base + 1;
    loop {
        let next = base + total.to_string().len();
        if next == total {
            break;
        }
        total = next;
    }
    out.extend_from_slice(total.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let mut out = Vec::new();
        append_pax_record(&mut out, b"path", &[b'a'; 95]);
        let text = String::from_utf8(out).expect("ascii");
        let (len, _) = text.split_once(' ').expect("length prefix");
        assert_eq!(len.parse::<usize>().expect("number"), text.len());
        let mut out = Vec::new();
        append_pax_record(&mut out, b"k", b"v");
        assert_eq!(out, b"6 k=v\n");
    }

    #[test]
    fn header_checksum_and_octal_fields() {
        let h = ustar_header(&UstarFields {
            name: b"etc/passwd",
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 10,
            mtime: 0,
            typeflag: b'0',
            linkname: &[],
            devmajor: 0,
            devminor: 0,
        });
        assert_eq!(&h[124..136], b"00000000012\0");
        let mut copy = h;
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|b| u32::from(*b)).sum();
        assert_eq!(&h[148..154], format!("{sum:06o}").as_bytes());
    }
}
