//! sha256 digests as OCI names them (`sha256:<64 hex>`): parsing, the short image ID, chain
//! IDs, and writers/a reader that hash and count the bytes passing through them (one of the
//! writers hashes on a thread of its own).

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

/// A sha256 digest, kept as its 64 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(String);

/// Why a string is not a `sha256:<64 hex>` digest.
#[derive(Debug, thiserror::Error)]
#[error("invalid digest {input:?}: expected sha256:<64 lowercase hex digits>")]
pub struct DigestParseError {
    pub input: String,
}

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    /// Parses 64 hex digits (without the `sha256:` prefix).
    pub fn from_hex(hex: &str) -> Result<Self, DigestParseError> {
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self(hex.to_owned()))
        } else {
            Err(DigestParseError { input: hex.to_owned() })
        }
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, as Docker shows an image ID.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }

    /// As an `oci_spec` digest.
    pub fn to_oci(&self) -> oci_spec::image::Digest {
        // A sha256 digest in canonical form always parses.
        oci_spec::image::Digest::from_str(&self.to_string()).unwrap_or_else(|_| unreachable!("canonical sha256 digest"))
    }
}

impl FromStr for Sha256Digest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("sha256:") {
            Some(hex) => Self::from_hex(hex).map_err(|_| DigestParseError { input: s.to_owned() }),
            None => Err(DigestParseError { input: s.to_owned() }),
        }
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

impl From<&oci_spec::image::Digest> for Sha256Digest {
    fn from(d: &oci_spec::image::Digest) -> Self {
        Self(d.digest().to_owned())
    }
}

/// The chain IDs of a list of diff IDs: `chain[0] = diff[0]`,
/// `chain[n] = sha256(chain[n-1] + " " + diff[n])` (OCI image spec, config.md).
pub fn chain_ids(diff_ids: &[Sha256Digest]) -> Vec<Sha256Digest> {
    let mut out: Vec<Sha256Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Sha256Digest::of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// Hashes and counts what is written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new(), len: 0 }
    }
    /// The digest and byte count so far, and the inner writer.
    pub fn finish(self) -> (Sha256Digest, u64, W) {
        (Sha256Digest(hex::encode(self.hasher.finalize())), self.len, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Bytes a [`BackgroundHashingWriter`] gathers before it writes them and hands them over.
const HASHED_CHUNK: usize = 1 << 20;

/// Hashes and counts what is written through it, as [`HashingWriter`] does, but hashes on a
/// thread of its own: bytes are gathered into 1 MiB chunks; each is written to `inner`, then
/// handed to the hashing thread, so sha256 runs beside whatever makes and writes the bytes
/// (a layer's tar: reading files, tar headers, the blob file's writes) instead of after them.
/// Chunks come back from the thread to be filled again, so memory stays at a few chunks.
pub struct BackgroundHashingWriter<W: Write> {
    inner: W,
    chunk: Vec<u8>,
    to_hasher: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    returned: std::sync::mpsc::Receiver<Vec<u8>>,
    hasher: Option<std::thread::JoinHandle<Sha256>>,
    len: u64,
}

impl<W: Write> BackgroundHashingWriter<W> {
    pub fn new(inner: W) -> io::Result<Self> {
        // Bounded: a hasher behind by a few chunks holds the writer back instead of growing.
        let (to_hasher, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let (give_back, returned) = std::sync::mpsc::channel();
        let hasher = std::thread::Builder::new().name("sha256".into()).spawn(move || {
            let mut hasher = Sha256::new();
            for mut chunk in chunks {
                hasher.update(&chunk);
                chunk.clear();
                let _ = give_back.send(chunk);
            }
            hasher
        })?;
        Ok(Self {
            inner,
            chunk: Vec::with_capacity(HASHED_CHUNK),
            to_hasher: Some(to_hasher),
            returned,
            hasher: Some(hasher),
            len: 0,
        })
    }

    /// Writes the gathered chunk to `inner` and hands it to the hashing thread.
    fn pass_on(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        self.inner.write_all(&self.chunk)?;
        let next = self.returned.try_recv().unwrap_or_else(|_| Vec::with_capacity(HASHED_CHUNK));
        let full = std::mem::replace(&mut self.chunk, next);
        let sent = self.to_hasher.as_ref().is_some_and(|tx| tx.send(full).is_ok());
        if sent {
            Ok(())
        } else {
            Err(io::Error::other("the sha256 thread ended early"))
        }
    }

    /// Writes what is left, waits for the hash, and returns the digest and byte count of
    /// everything written, and the inner writer (not flushed).
    pub fn finish(mut self) -> io::Result<(Sha256Digest, u64, W)> {
        self.pass_on()?;
        // Dropping the sender ends the thread's loop once it has hashed every chunk.
        let Self { inner, to_hasher, hasher, len, .. } = self;
        drop(to_hasher);
        let Some(Ok(hasher)) = hasher.map(|h| h.join()) else {
            return Err(io::Error::other("the sha256 thread panicked"));
        };
        Ok((Sha256Digest(hex::encode(hasher.finalize())), len, inner))
    }
}

impl<W: Write> Write for BackgroundHashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(HASHED_CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        self.len += n as u64;
        if self.chunk.len() == HASHED_CHUNK {
            self.pass_on()?;
        }
        Ok(n)
    }
    /// Passes the gathered bytes on and flushes `inner`.
    fn flush(&mut self) -> io::Result<()> {
        self.pass_on()?;
        self.inner.flush()
    }
}

/// Hashes and counts what is read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: Sha256::new(), len: 0 }
    }
    /// The digest and length of what has been read so far.
    pub fn digest_so_far(&self) -> (Sha256Digest, u64) {
        (Sha256Digest(hex::encode(self.hasher.clone().finalize())), self.len)
    }

    /// Reads what is left (so the digest covers the whole stream) and returns digest and length.
    pub fn finish(mut self) -> io::Result<(Sha256Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((Sha256Digest(hex::encode(self.hasher.finalize())), self.len))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let d: Sha256Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        assert_eq!(d.short(), "aaaaaaaaaaaa");
        assert!("sha256:abc".parse::<Sha256Digest>().is_err());
        assert!(format!("sha512:{}", "a".repeat(64)).parse::<Sha256Digest>().is_err());
        assert!(format!("sha256:{}", "A".repeat(64)).parse::<Sha256Digest>().is_err());
        assert!(format!("sha256:../{}", "a".repeat(61)).parse::<Sha256Digest>().is_err());
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Sha256Digest::of(b"a");
        let b = Sha256Digest::of(b"b");
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], Sha256Digest::of(format!("{a} {b}").as_bytes()));
    }

    #[test]
    fn the_background_hasher_passes_every_byte_on_in_order_and_hashes_them_all() {
        // Writes of many sizes, some across and some exactly on chunk boundaries.
        let data: Vec<u8> = (0..(3 * HASHED_CHUNK + 777)).map(|i| (i * 31 % 251) as u8).collect();
        for sizes in [vec![1, 511, 512, HASHED_CHUNK, 3], vec![HASHED_CHUNK], vec![5 * HASHED_CHUNK], vec![100_000]] {
            let mut w = BackgroundHashingWriter::new(Vec::new()).expect("thread");
            let (mut at, mut turn) = (0, 0);
            while at < data.len() {
                let end = (at + sizes[turn % sizes.len()]).min(data.len());
                w.write_all(&data[at..end]).expect("write");
                at = end;
                turn += 1;
            }
            let (digest, len, out) = w.finish().expect("finish");
            assert_eq!((digest, len), (Sha256Digest::of(&data), data.len() as u64), "{sizes:?}");
            assert!(out == data, "{sizes:?}: the inner writer got other bytes");
        }
        let (digest, len, out) = BackgroundHashingWriter::new(Vec::new()).expect("thread").finish().expect("finish");
        assert_eq!((digest, len, out), (Sha256Digest::of(b""), 0, Vec::new()));
    }
}
