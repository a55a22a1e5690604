//! Test support, public so the fuzz harnesses drive the same code: a
//! [`Transport`] with no socket behind it.

use std::io;
use std::time::Duration;

use crate::http::transport::Transport;

/// Hands out `data` in reads of the given sizes (cycled), then EOF; every
/// write succeeds and goes nowhere. Drives the head reader as a client that
/// trickles its bytes would, without timing.
#[derive(Debug)]
pub struct Scripted<'a> {
    data: &'a [u8],
    sizes: &'a [usize],
    reads: usize,
    delivered: usize,
}

impl<'a> Scripted<'a> {
    /// Reads of `sizes[0]`, `sizes[1]`, ... bytes, starting again at the
    /// first size after the last (no sizes: each read takes all it can).
    pub fn new(data: &'a [u8], sizes: &'a [usize]) -> Scripted<'a> {
        Scripted {
            data,
            sizes,
            reads: 0,
            delivered: 0,
        }
    }

    /// How many bytes of `data` have been read so far.
    pub fn delivered(&self) -> usize {
        self.delivered
    }

    fn next(&mut self, buf: &mut [u8]) -> usize {
        let want = match self.sizes {
            [] => usize::MAX,
            sizes => sizes[self.reads % sizes.len()],
        };
        self.reads += 1;
        let n = want.min(buf.len()).min(self.data.len() - self.delivered);
        buf[..n].copy_from_slice(&self.data[self.delivered..self.delivered + n]);
        self.delivered += n;
        n
    }
}

impl Transport for Scripted<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.next(buf))
    }

    async fn readable(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.next(buf))
    }

    async fn write_all(&mut self, _: &[u8], _: bool, _: Duration) -> io::Result<()> {
        Ok(())
    }

    async fn send_file(
        &mut self,
        _: &std::fs::File,
        _: u64,
        _: u64,
        _: u64,
        _: Duration,
    ) -> Result<(), (u64, io::Error)> {
        Ok(())
    }

    async fn close(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_follow_the_sizes_then_eof() {
        let data = b"abcdefghij";
        let mut s = Scripted::new(data, &[1, 3]);
        let mut buf = [0u8; 8];
        let mut got = Vec::new();
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.push(buf[..n].to_vec());
        }
        let want: Vec<&[u8]> = vec![b"a", b"bcd", b"e", b"fgh", b"i", b"j"];
        assert_eq!(got, want);
        assert_eq!(s.delivered(), data.len());
        let mut all = Scripted::new(data, &[]);
        assert_eq!(all.try_read(&mut buf).unwrap(), 8, "bounded by the buffer");
    }
}
