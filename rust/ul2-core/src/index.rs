//! The sampler/index layer: which raw tokens of a stream each example takes.
//!
//! Sample `k` uses denoiser `d_k = mixture.choose(seed, k)` and the next `T_{d_k}` raw
//! tokens (its planned raw length), so consecutive samples consume the stream exactly once.
//! The index stores only where each sample starts (8 bytes) and its denoiser (1 byte); a
//! sample's tokens are borrowed from the stream when contiguous.

use rayon::prelude::*;

use crate::Token;
use crate::denoise::Mixture;
use crate::error::{Error, Result};
use crate::source::{Corpus, Documents};

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
        let mut starts = crate::alloc::with_capacity(expected(total) + 1, "tokens")?;
        let mut denoisers = crate::alloc::with_capacity(expected(total), "tokens")?;
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
