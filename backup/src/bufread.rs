//! `Read` for readers that are really `BufRead` over borrowed chunks (a body's parts).

use std::io::BufRead;

/// `Read::read` in terms of `fill_buf`/`consume`: copies what the current chunk holds.
pub(crate) fn read_from_buf<R: BufRead>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let available = reader.fill_buf()?;
    let n = available.len().min(buf.len());
    buf[..n].copy_from_slice(&available[..n]);
    reader.consume(n);
    Ok(n)
}
