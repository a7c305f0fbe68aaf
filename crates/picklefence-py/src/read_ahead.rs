//! The read-ahead engine: a decoder [`Source`] over a Python file object ([`PyFile`]), reading
//! ahead and seeking over payloads (seekable files) or reading exactly what the unpickler would
//! (others).

use std::borrow::Cow;
use std::io::{Seek, SeekFrom};

use picklefence::decoder::{Source, SourceError, StreamLimits};

use crate::file::PyFile;

/// Bytes read ahead from a seekable file per call to its `read`: the first read after the
/// start or a seek asks for `FIRST_CHUNK`, each later one for twice as much, up to `CHUNK`. The
/// opcodes around a large payload (an array's header) are small: a large first read would
/// mostly read payload bytes that are then skipped.
const FIRST_CHUNK: usize = 16 << 10;
pub(crate) const CHUNK: usize = 256 << 10;
/// A skipped payload longer than this is skipped by seeking (seekable files).
const SEEK_OVER: u64 = 1 << 20;
/// A frame up to this long is read in one call (non-seekable files), as CPython does.
const MAX_FRAME_PREFETCH: u64 = 64 << 20;
/// Longest line argument read; CPython itself has no limit.
const MAX_LINE: usize = 1 << 30;
const FRAME_OPCODE: u8 = 0x95;

/// A decoder source over a [`PyFile`], which it borrows: after the analysis the caller takes
/// the file's copy and error from it.
///
/// Seekable mode: reads ahead in large chunks and skips long payloads by seeking; the caller
/// seeks back to where it started. Exact mode: asks the file only for the bytes the opcodes
/// need (a whole frame at once, as CPython does), and so leaves the file exactly where
/// CPython's unpickler would leave it (the file keeps every byte read).
pub(crate) struct ReadAhead<'a, 'py> {
    file: &'a mut PyFile<'py>,
    /// Absolute file position of logical offset 0 (seekable mode).
    start: u64,
    buf: Vec<u8>,
    head: usize,
    pos: u64,
    eof: bool,
    frame_pending: bool,
    /// How much the next read ahead asks for (seekable mode).
    read_ahead: usize,
}

fn io_error(error: &std::io::Error) -> SourceError {
    SourceError::Io(error.to_string())
}

impl<'a, 'py> ReadAhead<'a, 'py> {
    /// `start`: the file's absolute position (seekable mode).
    pub(crate) fn new(file: &'a mut PyFile<'py>, start: u64) -> Self {
        ReadAhead {
            file,
            start,
            buf: Vec::new(),
            head: 0,
            pos: 0,
            eof: false,
            frame_pending: false,
            read_ahead: FIRST_CHUNK,
        }
    }

    fn exact(&self) -> bool {
        self.file.exact()
    }

    fn avail(&self) -> usize {
        self.buf.len() - self.head
    }

    /// Appends what one `read(n)` returned; the number of bytes appended.
    fn append_read(&mut self, n: usize) -> Result<usize, SourceError> {
        self.file.read_into(n, &mut self.buf).map_err(|e| io_error(&e))
    }

    fn compact(&mut self) {
        if self.head > 0 {
            self.buf.drain(..self.head);
            self.head = 0;
        }
    }

    /// Makes at least `n` unread bytes available if the file has them; returns how many are.
    fn ensure(&mut self, n: usize) -> Result<usize, SourceError> {
        while self.avail() < n && !self.eof {
            self.compact();
            let missing = n - self.avail();
            let want = if self.exact() {
                missing
            } else {
                missing.max(self.next_read_ahead())
            };
            if self.append_read(want)? == 0 {
                self.eof = true;
            }
        }
        Ok(self.avail().min(n))
    }

    fn next_read_ahead(&mut self) -> usize {
        let want = self.read_ahead;
        self.read_ahead = (want * 2).min(CHUNK);
        want
    }

    fn consume(&mut self, n: usize) {
        self.head += n;
        self.pos += n as u64;
    }

    fn seek_to(&mut self, absolute: u64) -> Result<(), SourceError> {
        self.file
            .seek(SeekFrom::Start(absolute))
            .map(|_| ())
            .map_err(|e| io_error(&e))
    }

    fn file_size(&mut self) -> Result<u64, SourceError> {
        self.file.seek(SeekFrom::End(0)).map_err(|e| io_error(&e))
    }

    /// Index (relative to `head`) of the next newline, reading more until there is one.
    fn find_newline(&mut self, from: usize) -> Result<usize, SourceError> {
        let mut searched = from;
        loop {
            if let Some(i) = self
                .buf
                .get(self.head + searched..)
                .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            {
                return Ok(searched + i);
            }
            searched = self.avail();
            if searched > MAX_LINE {
                return Err(SourceError::LineTooLong {
                    limit: MAX_LINE as u64,
                });
            }
            if self.eof {
                return Err(SourceError::NoNewline);
            }
            let got = if self.exact() && self.file.has_readline() {
                self.file
                    .read_line_into(&mut self.buf)
                    .map_err(|e| io_error(&e))?
            } else {
                self.compact();
                let want = if self.exact() { 1 } else { self.next_read_ahead() };
                self.append_read(want)?
            };
            if got == 0 {
                self.eof = true;
            }
        }
    }
}

impl Source for ReadAhead<'_, '_> {
    fn position(&self) -> u64 {
        self.pos
    }

    fn next_byte(&mut self) -> Result<Option<u8>, SourceError> {
        let byte = match self.buf.get(self.head) {
            Some(&byte) => Some(byte),
            None => {
                if self.ensure(1)? == 0 {
                    return Ok(None);
                }
                self.buf.get(self.head).copied()
            }
        };
        self.consume(1);
        // The decoder asks for single bytes only to read opcodes.
        self.frame_pending = byte == Some(FRAME_OPCODE);
        Ok(byte)
    }

    fn take(&mut self, n: usize) -> Result<Cow<'_, [u8]>, SourceError> {
        if std::mem::take(&mut self.frame_pending) && n == 8 && self.exact() && self.ensure(8)? == 8 {
            let len = self.buf.get(self.head..self.head + 8).map_or(0, |b| {
                b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
            });
            if len <= MAX_FRAME_PREFETCH {
                // CPython reads the whole frame before running any of it.
                self.ensure(8 + len as usize)?;
            }
        }
        let got = if self.avail() >= n { n } else { self.ensure(n)? };
        if got < n {
            let available = got as u64;
            self.consume(got);
            return Err(SourceError::Short { available });
        }
        let start = self.head;
        self.consume(n);
        Ok(Cow::Borrowed(self.buf.get(start..start + n).unwrap_or_default()))
    }

    fn take_line(&mut self) -> Result<&[u8], SourceError> {
        let end = self.find_newline(0)?;
        let start = self.head;
        self.consume(end + 1);
        Ok(self.buf.get(start..start + end).unwrap_or_default())
    }

    fn take_line_pair(&mut self) -> Result<(&[u8], &[u8]), SourceError> {
        let first = self.find_newline(0)?;
        let second = self.find_newline(first + 1)?;
        let start = self.head;
        self.consume(second + 1);
        let a = self.buf.get(start..start + first).unwrap_or_default();
        let b = self
            .buf
            .get(start + first + 1..start + second)
            .unwrap_or_default();
        Ok((a, b))
    }

    fn keeps(&self, n: u64) -> bool {
        n <= StreamLimits::default().keep_payload as u64
    }

    fn skip(&mut self, n: u64, inspect: &mut dyn FnMut(&[u8])) -> Result<(), SourceError> {
        let mut left = n;
        loop {
            let here = usize::try_from(left).unwrap_or(usize::MAX).min(self.avail());
            if here > 0 {
                if let Some(chunk) = self.buf.get(self.head..self.head + here) {
                    inspect(chunk);
                }
                self.consume(here);
                left -= here as u64;
            }
            if left == 0 {
                return Ok(());
            }
            if !self.exact() && left > SEEK_OVER {
                // Skip by seeking; reading the last byte proves the file holds the payload.
                let target = self.start + self.pos + left;
                self.buf.clear();
                self.head = 0;
                self.read_ahead = FIRST_CHUNK;
                self.seek_to(target - 1)?;
                if self.append_read(1)? == 1 {
                    self.buf.clear();
                    self.pos += left;
                    return Ok(());
                }
                self.eof = true;
                let size = self.file_size()?;
                let available = size.saturating_sub(self.start + self.pos);
                return Err(SourceError::Short {
                    available: n - left + available.min(left),
                });
            }
            let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
            if self.ensure(want)? == 0 {
                return Err(SourceError::Short { available: n - left });
            }
        }
    }

    fn remaining(&self) -> Option<u64> {
        None
    }
}
