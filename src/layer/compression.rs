//! Reading compressed layers: the decompressing reader for whatever [`Compression`] a blob's
//! magic bytes say (the one `Compression` type lives in [`crate::layer::media`]).

use std::io::{self, BufRead, BufReader, Read};

pub use crate::layer::media::Compression;

/// Wraps `reader` in the decompressor its magic bytes ask for.
pub fn decompressing_reader<'a, R: Read + 'a>(reader: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut buffered = BufReader::with_capacity(1 << 20, reader);
    let head = buffered.fill_buf()?;
    let compression = Compression::detect(head);
    let out: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
    };
    Ok((compression, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn detects_and_round_trips() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"hello").unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&b"hello"[..], 1).unwrap();
        for (blob, kind) in [(gz, Compression::Gzip), (zs, Compression::Zstd), (b"hello".to_vec(), Compression::None)] {
            let (c, mut r) = decompressing_reader(&blob[..]).unwrap();
            assert_eq!(c, kind);
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            assert_eq!(s, "hello");
        }
    }
}
