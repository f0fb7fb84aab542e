//! The sampler/index layer: which raw tokens of a stream each example takes.
//!
//! Sample `k` uses denoiser `d_k = mixture.choose(seed, k)` and the next `T_{d_k}` raw
//! tokens (its planned raw length), so consecutive samples consume the stream exactly once.
//! The index stores only where each sample starts (8 bytes) and its denoiser (1 byte); a
//! sample's tokens are borrowed from the stream when contiguous.

use rayon::prelude::*;

use crate::denoiser::Mixture;
use crate::error::{Error, Result};
use crate::Token;
use crate::source::Line;

/// How samples meet document boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Documents {
    /// Documents are joined into one stream (with `separator` between them when set);
    /// samples may cross boundaries. What does not fill a last sample is the tail.
    Concat,
    /// A sample never crosses a boundary; each document's last sample is shorter.
    Respect,
}

impl Documents {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "concat" => Ok(Self::Concat),
            "respect" => Ok(Self::Respect),
            _ => Err(Error::invalid("documents", format!("{s:?}"), "must be 'concat' or 'respect'")),
        }
    }
}

/// A flat token array split into documents by `doc_offsets` (`[0, …, len]`, non-decreasing).
#[derive(Debug, Clone, Copy)]
pub struct Corpus<'a, T> {
    pub tokens: Line<'a, T>,
    /// `None`: the whole array is one document.
    pub doc_offsets: Option<&'a [u64]>,
    /// Token placed between documents in `Concat` mode (e.g. EOS); `None` joins them as is.
    pub separator: Option<T>,
}

/// Document starts as callers give them: `[0, …, len]`, the starts alone (the final end
/// is appended), or none (one document).
#[must_use]
pub fn finish_offsets(mut starts: Vec<u64>, len: u64) -> Vec<u64> {
    if starts.last().is_some_and(|&l| l < len) {
        starts.push(len);
    }
    if starts.is_empty() {
        starts = vec![0, len];
    }
    starts
}

impl<'a, T: Token> Corpus<'a, T> {
    /// A corpus over `tokens`; `separator` (placed between documents in `Concat` mode) must
    /// be a token of their dtype. `doc_offsets` are checked when the index is built.
    pub fn new(tokens: Line<'a, T>, doc_offsets: Option<&'a [u64]>, separator: Option<i64>) -> Result<Self> {
        let separator = separator
            .map(|s| T::try_from_i64(s).ok_or_else(|| Error::invalid("separator_id", s, "does not fit the dtype of tokens")))
            .transpose()?;
        Ok(Self { tokens, doc_offsets, separator })
    }
}

impl<T: Token> Corpus<'_, T> {
    /// Checks `doc_offsets`: starts at 0, ends at `len(tokens)`, never decreases.
    pub fn validate(&self) -> Result<()> {
        let Some(off) = self.doc_offsets else { return Ok(()) };
        let n = self.tokens.len() as u64;
        if off.first() != Some(&0) || off.last() != Some(&n) {
            return Err(Error::invalid(
                "doc_offsets",
                format!("[{}, …, {}]", off.first().map_or(-1, |&v| v as i64), off.last().map_or(-1, |&v| v as i64)),
                format!("must start at 0 and end at len(tokens)={n}"),
            ));
        }
        if let Some(i) = off.windows(2).position(|w| w[1] < w[0]) {
            return Err(Error::invalid(
                "doc_offsets",
                format!("[…, {}, {}, …]", off[i], off[i + 1]),
                format!("must not decrease (at index {})", i + 1),
            ));
        }
        Ok(())
    }

    fn separators(&self) -> usize {
        match (self.separator, self.doc_offsets) {
            (Some(_), Some(off)) => off.len().saturating_sub(2),
            _ => 0,
        }
    }

    /// Length of the joined stream (`Concat` positions).
    #[must_use]
    pub fn stream_len(&self) -> u64 {
        (self.tokens.len() + self.separators()) as u64
    }

    /// The joined stream's `[start, stop)`: borrowed when no separator falls inside,
    /// gathered into `scratch` otherwise.
    pub fn slice<'s>(&'s self, start: u64, stop: u64, scratch: &'s mut Vec<T>) -> Result<&'s [T]> {
        let (Some(sep), Some(off)) = (self.separator, self.doc_offsets) else {
            return self.tokens.range(start as usize, stop as usize, scratch);
        };
        if start == stop || off.len() < 2 {
            return Ok(&[]);
        }
        // Document j occupies joined positions [off[j] + j, off[j+1] + j); its separator
        // follows at off[j+1] + j. Start in the last document beginning at or before `start`
        // (empty documents share a position; any of them gives the same slice).
        let mut j = {
            let (mut lo, mut hi) = (0usize, off.len() - 1);
            while hi - lo > 1 {
                let mid = usize::midpoint(lo, hi);
                if off[mid] + mid as u64 <= start { lo = mid } else { hi = mid }
            }
            lo
        };
        let end_of = |j: usize| off[j + 1] + j as u64; // separator position of doc j
        if stop <= end_of(j) {
            let shift = j as u64;
            return self.tokens.range((start - shift) as usize, (stop - shift) as usize, scratch);
        }
        scratch.clear();
        crate::error::reserve(scratch, (stop - start) as usize, "tokens")?;
        let mut p = start;
        while p < stop {
            let doc_end = end_of(j);
            if p < doc_end {
                let take = doc_end.min(stop);
                self.tokens.extend_into((p - j as u64) as usize, (take - j as u64) as usize, scratch);
                p = take;
            } else {
                scratch.push(sep); // p == doc_end: the separator after doc j
                p += 1;
                j += 1;
            }
        }
        Ok(scratch)
    }
}

/// Where each sample starts in the (joined) stream and which denoiser it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleIndex {
    /// `starts[k]..starts[k+1]` is sample `k`; one more entry than samples.
    starts: Vec<u64>,
    denoisers: Vec<u8>,
    /// Tokens at the end of the stream that no sample uses (`Concat` only).
    pub tail: u64,
}

/// Expected raw length of a sample: the mixture's rates weigh the planned lengths.
fn mean_length(mixture: &Mixture, raw_lengths: &[usize]) -> f64 {
    let (mut sum, mut last) = (0.0, 0.0);
    for (&c, &l) in mixture.cumulative().iter().zip(raw_lengths) {
        sum += (c - last) * l as f64;
        last = c;
    }
    sum / last // the total weight
}

impl SampleIndex {
    /// Builds the index: `raw_lengths[d]` is denoiser `d`'s planned raw length.
    pub fn build<T: Token>(
        corpus: &Corpus<'_, T>,
        mixture: &Mixture,
        raw_lengths: &[usize],
        documents: Documents,
        seed: u64,
    ) -> Result<Self> {
        corpus.validate()?;
        if documents == Documents::Respect && corpus.separator.is_some() {
            // Respect-mode spans are token positions; a separator would shift them.
            return Err(Error::invalid("separator_id", "set", "only joins documents with documents='concat'"));
        }
        if raw_lengths.len() != mixture.denoisers().len() || raw_lengths.contains(&0) {
            return Err(Error::Internal(format!("raw lengths {raw_lengths:?} do not match the mixture")));
        }
        if mixture.denoisers().len() > 256 {
            return Err(Error::invalid("mixture", mixture.denoisers().len(), "at most 256 denoisers"));
        }
        let total = corpus.stream_len();
        let mean = mean_length(mixture, raw_lengths);
        // About as many samples as the stream holds, one percent over; drawn in blocks of
        // that estimate, so a short estimate only means another block.
        let expected = |rest: u64| ((rest as f64 / mean) * 1.01) as usize + 2;
        let mut starts = crate::error::with_capacity(expected(total) + 1, "tokens")?;
        let mut denoisers = crate::error::with_capacity(expected(total), "tokens")?;
        let mut pos = 0u64;
        let tail = if documents == Documents::Concat {
            // Choices depend on the key alone: draw them in parallel, then walk their
            // lengths until the stream runs out.
            const CHUNK: usize = 1 << 14;
            let mut drawn = 0usize;
            'walk: loop {
                let block = expected(total - pos).clamp(256, 1 << 24);
                denoisers.resize(drawn + block, 0);
                denoisers[drawn..].par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
                    for (j, d) in chunk.iter_mut().enumerate() {
                        *d = mixture.choose(seed, (drawn + c * CHUNK + j) as u64) as u8;
                    }
                });
                for &d in &denoisers[drawn..] {
                    let t = raw_lengths[usize::from(d)] as u64;
                    if pos + t > total {
                        break 'walk;
                    }
                    starts.push(pos);
                    pos += t;
                }
                drawn += block;
            }
            denoisers.truncate(starts.len());
            total - pos
        } else {
            let whole = [0, corpus.tokens.len() as u64];
            let mut k = 0u64;
            for w in corpus.doc_offsets.unwrap_or(&whole).windows(2) {
                pos = w[0];
                while pos < w[1] {
                    let d = mixture.choose(seed, k);
                    starts.push(pos);
                    denoisers.push(d as u8);
                    pos = (pos + raw_lengths[d] as u64).min(w[1]);
                    k += 1;
                }
            }
            0
        };
        starts.push(pos);
        starts.shrink_to_fit();
        denoisers.shrink_to_fit();
        Ok(Self { starts, denoisers, tail })
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.denoisers.len()
    }
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.denoisers.is_empty()
    }
    /// Sample `k`'s `[start, stop)` in the stream.
    #[must_use]
    pub fn span(&self, k: usize) -> (u64, u64) {
        (self.starts[k], self.starts[k + 1])
    }
    #[must_use]
    pub fn denoiser(&self, k: usize) -> usize {
        usize::from(self.denoisers[k])
    }
    /// Bytes the index holds per sample.
    #[must_use]
    pub const fn bytes_per_sample() -> usize {
        std::mem::size_of::<u64>() + std::mem::size_of::<u8>()
    }

    /// Heap bytes the index holds.
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.starts.capacity() * size_of::<u64>() + self.denoisers.capacity()
    }
}
