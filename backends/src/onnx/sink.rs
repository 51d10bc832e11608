//! A `BufMut` that streams into a file, so a model is encoded straight to disk instead of into one
//! buffer the size of the model. Small writes (varints, tags, names) are gathered in a 1 MiB
//! buffer; large slices (tensor bytes) go to the file directly. `BufMut` cannot fail, so the first
//! I/O error is remembered, later writes are discarded, and `finish` returns it.

use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut};
use std::io::Write;

const BUFFER: usize = 1 << 20;
/// Slices at least this long bypass the buffer.
const DIRECT: usize = 64 << 10;

pub(crate) struct FileSink<W: Write> {
    out: W,
    buf: Vec<u8>,
    written: u64,
    error: Option<std::io::Error>,
}

impl<W: Write> FileSink<W> {
    pub(crate) fn new(out: W) -> FileSink<W> {
        FileSink {
            out,
            buf: Vec::with_capacity(BUFFER),
            written: 0,
            error: None,
        }
    }

    fn write_out(&mut self, data: &[u8]) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(data) {
                self.error = Some(e);
            }
        }
    }

    fn flush_buf(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.write_out(&buf);
        self.buf = buf;
        self.buf.clear();
    }

    /// Write `n` zero bytes (padding for aligned external data).
    pub(crate) fn put_zeros(&mut self, mut n: u64) {
        const ZEROS: [u8; 4096] = [0; 4096];
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            self.put_slice(&ZEROS[..k]);
            n -= k as u64;
        }
    }

    /// Flush and return the number of bytes written, or the first I/O error.
    pub(crate) fn finish(mut self) -> std::io::Result<(u64, W)> {
        self.flush_buf();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()?;
        Ok((self.written, self.out))
    }
}

// SAFETY: `chunk_mut` returns the spare capacity of `buf` (never empty: it is flushed first), and
// `advance_mut` only grows `buf.len()` over bytes the caller initialized in that spare capacity.
unsafe impl<W: Write> BufMut for FileSink<W> {
    fn remaining_mut(&self) -> usize {
        // prost only checks that the encoded length fits; the file has no practical limit.
        isize::MAX as usize
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        let new_len = self.buf.len() + cnt;
        assert!(
            new_len <= self.buf.capacity(),
            "advance_mut past the buffer"
        );
        // SAFETY: the caller initialized `cnt` bytes of the chunk returned by `chunk_mut`.
        unsafe { self.buf.set_len(new_len) };
        self.written += cnt as u64;
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        if self.buf.len() == self.buf.capacity() {
            self.flush_buf();
        }
        UninitSlice::uninit(self.buf.spare_capacity_mut())
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= DIRECT {
            self.flush_buf();
            self.write_out(src);
        } else {
            if self.buf.capacity() - self.buf.len() < src.len() {
                self.flush_buf();
            }
            self.buf.extend_from_slice(src);
        }
        self.written += src.len() as u64;
    }

    fn put<T: Buf>(&mut self, mut src: T)
    where
        Self: Sized,
    {
        // `Bytes` fields (raw_data) arrive here: write their chunks without copying.
        while src.has_remaining() {
            let chunk = src.chunk();
            let n = chunk.len();
            self.put_slice(chunk);
            src.advance(n);
        }
    }

    fn put_u8(&mut self, n: u8) {
        if self.buf.len() == self.buf.capacity() {
            self.flush_buf();
        }
        self.buf.push(n);
        self.written += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_writes_keep_order() {
        let mut sink = FileSink::new(Vec::new());
        sink.put_u8(1);
        sink.put_slice(&[2, 3]);
        let big = vec![7u8; DIRECT + 5];
        sink.put(bytes::Bytes::from(big.clone()));
        sink.put_zeros(3);
        sink.put_u32_le(0x0403_0201);
        let (n, out) = sink.finish().unwrap();
        let mut want = vec![1, 2, 3];
        want.extend_from_slice(&big);
        want.extend_from_slice(&[0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(n, want.len() as u64);
        assert_eq!(out, want);
    }

    struct Failing;
    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn first_error_is_returned() {
        let mut sink = FileSink::new(Failing);
        sink.put_slice(&vec![0u8; DIRECT]);
        sink.put_slice(&[1, 2, 3]);
        let err = sink.finish().err().unwrap();
        assert_eq!(err.to_string(), "disk full");
    }
}
