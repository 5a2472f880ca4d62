//! A version 2 block's strings, episodes and records, read by hand in bincode's standard layout
//! (little-endian varints: a byte below 251 is the value, 251/252/253 announce a `u16`/`u32`/
//! `u64`; signed values zigzag; an `Option` is a 0/1 tag; a `bool` a 0/1 byte; a string its
//! length then its bytes). It accepts exactly what bincode's decoder accepts, and the codec's
//! property tests hold the two to it, damaged blocks included.

use super::super::CodecError;
use super::{CompactRecord, EpisodeRef};

const TRUNCATED: CodecError = CodecError::Malformed("the payload ends early");

/// A cursor over a block's decompressed payload.
pub(super) struct Payload<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Payload<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Payload<'a> {
        Payload { bytes, at: 0 }
    }

    /// What is left to read.
    fn rest(&self) -> &'a [u8] {
        &self.bytes[self.at..]
    }

    fn byte(&mut self) -> Result<u8, CodecError> {
        let b = *self.bytes.get(self.at).ok_or(TRUNCATED)?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or(TRUNCATED)?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u16_le(&mut self) -> Result<u16, CodecError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32_le(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64_le(&mut self) -> Result<u64, CodecError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn u64(&mut self) -> Result<u64, CodecError> {
        match self.byte()? {
            b @ 0..=250 => Ok(u64::from(b)),
            251 => self.u16_le().map(u64::from),
            252 => self.u32_le().map(u64::from),
            253 => self.u64_le(),
            _ => Err(CodecError::Malformed("an integer's length")),
        }
    }

    /// A `u32`: bincode refuses the 8-byte form for it, whatever the value.
    fn u32(&mut self) -> Result<u32, CodecError> {
        match self.byte()? {
            b @ 0..=250 => Ok(u32::from(b)),
            251 => self.u16_le().map(u32::from),
            252 => self.u32_le(),
            _ => Err(CodecError::Malformed("an integer's length")),
        }
    }

    fn i64(&mut self) -> Result<i64, CodecError> {
        let n = self.u64()?;
        Ok(if n % 2 == 0 {
            (n / 2) as i64
        } else {
            !(n / 2) as i64
        })
    }

    fn len(&mut self) -> Result<usize, CodecError> {
        usize::try_from(self.u64()?).map_err(|_| CodecError::Malformed("a length"))
    }

    fn bool(&mut self) -> Result<bool, CodecError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CodecError::Malformed("a boolean")),
        }
    }

    fn opt_i64(&mut self) -> Result<Option<i64>, CodecError> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.i64().map(Some),
            _ => Err(CodecError::Malformed("an option")),
        }
    }

    /// The block's strings. Their UTF-8 is checked a run at a time: consecutive strings whose
    /// length is one ASCII byte (below 128) form, with those bytes, one stretch of text that is
    /// valid UTF-8 exactly when each of them is (an ASCII byte can neither end nor continue a
    /// multi-byte character), so one check covers hundreds of short strings.
    pub(super) fn strings(&mut self) -> Result<Vec<&'a str>, CodecError> {
        let n = self.len()?;
        // Each string takes at least a byte: a damaged count cannot make this allocate more
        // than the payload's size.
        let mut spans: Vec<(usize, usize, bool)> = Vec::with_capacity(n.min(self.rest().len()));
        for _ in 0..n {
            let short = self.bytes.get(self.at).is_some_and(|b| *b < 128);
            let len = self.len()?;
            let start = self.at;
            self.take(len)?;
            spans.push((start, self.at, short));
        }
        let mut out = Vec::with_capacity(spans.len());
        let mut i = 0;
        while i < spans.len() {
            // The run: spans[i..j], each after the first joined to the one before by its
            // one-byte length.
            let mut j = i + 1;
            while j < spans.len() && spans[j].2 && spans[j].0 == spans[j - 1].1 + 1 {
                j += 1;
            }
            let (from, to) = (spans[i].0, spans[j - 1].1);
            let run = std::str::from_utf8(&self.bytes[from..to])
                .map_err(|_| CodecError::Malformed("a string that is not UTF-8"))?;
            for &(a, b, _) in &spans[i..j] {
                out.push(
                    run.get(a - from..b - from)
                        .ok_or(CodecError::Malformed("a string that is not UTF-8"))?,
                );
            }
            i = j;
        }
        Ok(out)
    }

    fn str(&mut self) -> Result<&'a str, CodecError> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?)
            .map_err(|_| CodecError::Malformed("a string that is not UTF-8"))
    }

    fn opt_str(&mut self) -> Result<Option<&'a str>, CodecError> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            _ => Err(CodecError::Malformed("an option")),
        }
    }

    /// The block's episodes (the fields of [`EpisodeRef`], in order).
    pub(super) fn episodes(&mut self) -> Result<Vec<EpisodeRef<'a>>, CodecError> {
        let n = self.len()?;
        // An episode takes at least 6 bytes (its absent fields' tags).
        let mut out = Vec::with_capacity(n.min(self.rest().len() / 6));
        for _ in 0..n {
            out.push(EpisodeRef {
                title: self.opt_str()?,
                duration: self.opt_i64()?,
                start: self.opt_str()?,
                series: match self.byte()? {
                    0 => None,
                    1 => Some((self.str()?, self.str()?)),
                    _ => return Err(CodecError::Malformed("an option")),
                },
                kind: self.opt_str()?,
                description: self.opt_str()?,
            });
        }
        Ok(out)
    }

    /// The block's records (the fields of [`CompactRecord`], in order).
    pub(super) fn records(&mut self) -> Result<Vec<CompactRecord>, CodecError> {
        let n = self.len()?;
        // A record takes at least 14 bytes.
        let mut out = Vec::with_capacity(n.min(self.rest().len() / 14));
        for _ in 0..n {
            out.push(CompactRecord {
                action_id: self.i64()?,
                created_us: self.i64()?,
                mpid: self.u32()?,
                session_id: self.u32()?,
                huid: self.u32()?,
                useragent: self.u32()?,
                kind: self.u32()?,
                ip_chain: self.u32()?,
                inpoint: self.opt_i64()?,
                outpoint: self.opt_i64()?,
                length: self.opt_i64()?,
                is_playing: self.bool()?,
                is_live: self.bool()?,
                episode: self.u32()?,
            });
        }
        Ok(out)
    }
}
