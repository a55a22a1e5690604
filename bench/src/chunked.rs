//! Chunked transfer coding (RFC 9112 §7.1) without IO: bytes in as they
//! arrive, body bytes out, until the last chunk and trailers are consumed.
//!
//! The segment load path refuses chunked bodies (oca and nginx never send
//! them for files); players talk to whatever steering service they are
//! pointed at, whose JSON and playlists may well come chunked.

/// Longest chunk-size line (with extensions) or trailer line accepted.
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of the chunk size.
    Size,
    /// `;name=value` after the size, ignored.
    Ext,
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    /// Start of a trailer line, or the final CRLF.
    Trailer,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// Incremental decoder for one chunked body.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    size: u64,
    digits: usize,
    line: usize,
}

/// The body is not valid chunked coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            state: State::Size,
            size: 0,
            digits: 0,
            line: 0,
        }
    }
}

impl Decoder {
    /// Decodes from `input`, handing body bytes to `body`, and returns how
    /// many input bytes were used: all of them, or fewer once the body ended.
    pub fn feed(&mut self, input: &[u8], mut body: impl FnMut(&[u8])) -> Result<usize, Invalid> {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            if let State::Data(left) = self.state {
                let take =
                    usize::try_from(left).map_or(input.len() - i, |l| l.min(input.len() - i));
                body(&input[i..i + take]);
                i += take;
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data(left)
                };
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = self.step(b)?;
        }
        Ok(i)
    }

    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    fn step(&mut self, b: u8) -> Result<State, Invalid> {
        Ok(match self.state {
            State::Size => match b {
                b'\r' if self.digits > 0 => State::SizeLf,
                b';' if self.digits > 0 => State::Ext,
                _ => {
                    let d = (b as char).to_digit(16).ok_or(Invalid)?;
                    self.digits += 1;
                    if self.digits > 15 {
                        return Err(Invalid);
                    }
                    self.size = self.size * 16 + u64::from(d);
                    State::Size
                }
            },
            State::Ext => {
                self.line += 1;
                match b {
                    _ if self.line > MAX_LINE => return Err(Invalid),
                    b'\r' => State::SizeLf,
                    b'\n' => return Err(Invalid),
                    _ => State::Ext,
                }
            }
            State::SizeLf if b == b'\n' => {
                let size = std::mem::take(&mut self.size);
                self.digits = 0;
                self.line = 0;
                if size == 0 {
                    State::Trailer
                } else {
                    State::Data(size)
                }
            }
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::Size,
            State::Trailer if b == b'\r' => State::EndLf,
            State::Trailer | State::TrailerLine => {
                self.line += 1;
                match b {
                    _ if self.line > MAX_LINE => return Err(Invalid),
                    b'\r' => State::TrailerLf,
                    b'\n' => return Err(Invalid),
                    _ => State::TrailerLine,
                }
            }
            State::TrailerLf if b == b'\n' => {
                self.line = 0;
                State::Trailer
            }
            State::EndLf if b == b'\n' => State::Done,
            _ => return Err(Invalid),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed in pieces of `step` bytes.
    fn decode(wire: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), Invalid> {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        let mut used = 0;
        for piece in wire.chunks(step) {
            let n = d.feed(piece, |b| out.extend_from_slice(b))?;
            used += n;
            if n < piece.len() {
                break;
            }
        }
        Ok((out, used, d.done()))
    }

    #[test]
    fn decodes_at_every_split() {
        let wire = b"5\r\nhello\r\n1;ext=\"x\"\r\n \r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let body_end = wire.len() - 4;
        for step in 1..=wire.len() {
            let (out, used, done) = decode(wire, step).unwrap();
            assert_eq!(out, b"hello 0123456789", "step {step}");
            assert!(done);
            assert_eq!(used, body_end, "stops at the end of the body");
        }
    }

    #[test]
    fn empty_and_partial_bodies() {
        assert_eq!(decode(b"0\r\n\r\n", 1).unwrap(), (vec![], 5, true));
        let (out, _, done) = decode(b"5\r\nhel", 2).unwrap();
        assert_eq!((out.as_slice(), done), (&b"hel"[..], false));
    }

    #[test]
    fn rejects_bad_coding() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b";x\r\n",
            b"5\nhello",
            b"5\r\nhelloXX",
            b"1000000000000000\r\n",
            b"0\r\n\n",
            b"0\r\nX: 1\n",
        ] {
            assert_eq!(decode(bad, 1), Err(Invalid), "{bad:?}");
        }
        let long = [b"1;".as_slice(), &[b'x'; MAX_LINE + 1]].concat();
        assert_eq!(decode(&long, 7), Err(Invalid));
    }
}
