//! The sampler of [`crate::index`] over documents that arrive one at a time (a streaming
//! dataset): the same samples, keys and packed rows as [`crate::Engine::index`] over the
//! documents' concatenation, computed as the documents come, holding only the tokens not yet
//! emitted.
//!
//! Sample `k` draws its denoiser from `(seed, k)` exactly as [`crate::SampleIndex::build`] does
//! and takes its planned raw length from the stream (`Concat`: across documents, separators
//! between them; `Respect`: within a document, whose last sample is shorter); packed rows are
//! closed by the same [`NextFit`] rule that [`crate::pack`] runs. Items (samples, or packed
//! rows) are emitted once every sample they hold is known.
//!
//! Memory: the buffer holds the tokens from the first sample not yet emitted to the end of the
//! last document pushed: the samples ready to emit (at most what a caller lets accumulate:
//! one batch, plus the rest of the document that filled it), plus fewer than one raw length of
//! tokens that no sample has taken yet. It is never the stream. A [`Resume`] point holds only
//! the tokens before the last document pushed that are not yet emitted.

use std::collections::VecDeque;

use crate::denoise::example_bounds;
use crate::engine::{Bins, Engine, Output};
use crate::error::{Error, Result, Where};
use crate::pack::NextFit;
use crate::source::{Documents, Line, RowSource};
use crate::{Token, alloc};

/// Where a stream stands between two emitted items: enough to continue it exactly from a
/// source reopened at document `document`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resume {
    /// Key of the next sample to emit.
    pub key: u64,
    /// Index of the document to read next from the reopened source (earlier ones are done).
    pub document: u64,
    /// Stream positions of that document's segment (its separator, then its tokens) already
    /// consumed.
    pub offset: u64,
    /// Stream tokens before that document not yet emitted (fewer than one raw length plus the
    /// samples ready but not emitted when the document was pulled).
    pub pending: Vec<i64>,
    /// Stream position of the resume point (`pending[0]`'s when there are pending tokens).
    pub position: u64,
    /// Items emitted before it.
    pub items: u64,
}

/// Counts of a stream: nothing pushed goes unaccounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamCounts {
    /// Documents pushed (the source's documents read, counting those before a resume point).
    pub documents: u64,
    /// Samples emitted.
    pub samples: u64,
    /// Items (samples, or packed rows) emitted.
    pub items: u64,
    /// Stream positions the emitted samples used (tokens, and separators in `Concat` mode).
    pub tokens: u64,
    /// At the end (`Concat`): stream positions no sample uses.
    pub tail: u64,
    /// Tokens held now.
    pub buffered: usize,
}

/// Rows fixed in advance: their lengths are never asked for.
type FixedBins = Bins<fn(usize) -> usize>;

/// Samples of the buffer as rows to denoise; a bad token is named by its stream position, as
/// a dataset names it in its `tokens`.
struct Pending<'a, T> {
    buffer: &'a [T],
    /// Each sample's `(start in buffer, length)`.
    spans: &'a [(usize, usize)],
    /// Stream position of `buffer[0]`.
    base: u64,
}

impl<T: Token> RowSource<T> for Pending<'_, T> {
    fn len(&self) -> usize {
        self.spans.len()
    }
    fn row_len(&self, i: usize) -> usize {
        self.spans[i].1
    }
    fn row<'s>(&'s self, i: usize, _: &'s mut Vec<T>) -> Result<&'s [T]> {
        let (s, n) = self.spans[i];
        Ok(&self.buffer[s..s + n])
    }
    fn locate(&self, i: usize, e: Error) -> Error {
        let start = self.base as usize + self.spans[i].0;
        match e {
            Error::TokenOutOfRange { position, token, reason, .. } => {
                Error::TokenOutOfRange { where_: Where::arg("tokens"), position: start + position, token, reason }
            }
            Error::SentinelCollision { position, token, .. } => {
                Error::SentinelCollision { where_: Where::arg("tokens"), position: start + position, token }
            }
            other => other.at_row(i),
        }
    }
}

/// A sampler and denoiser over documents pushed one at a time, holding tokens as `T` (the
/// documents' dtype: what a dataset over their concatenation would read).
#[derive(Debug, Clone)]
pub struct Stream<T> {
    engine: Engine,
    documents: Documents,
    separator: Option<i64>,
    /// Tokens from `base` on: samples cut but not emitted, then tokens no sample has taken.
    buffer: Vec<T>,
    base: u64,
    /// Buffer index where the next sample starts.
    cut: usize,
    /// Samples cut, not emitted: `(start in buffer, length)`; `ready[0]` is sample `key`.
    ready: VecDeque<(usize, usize)>,
    key: u64,
    /// Packed: the open row, and the sample counts of the rows closed but not emitted.
    fit: Option<NextFit>,
    closed: VecDeque<usize>,
    /// Documents pushed, and the stream position where the last one's segment starts.
    pushed: u64,
    segment: u64,
    /// After a resume: positions of the next document's segment to skip (`None` once read).
    skip: Option<u64>,
    finished: bool,
    counts: StreamCounts,
}

impl<T: Token> Stream<T> {
    /// A stream of `engine`'s examples (a dataset's engine, with the `denoiser` field).
    pub fn new(engine: Engine, documents: Documents, separator: Option<i64>) -> Result<Self> {
        if documents == Documents::Respect && separator.is_some() {
            return Err(Error::invalid("separator_id", "set", "only joins documents with documents='concat'"));
        }
        if let Some(s) = separator {
            engine.config().sentinels.check_id("separator_id", s, engine.config().dtype.max_id())?;
        }
        if engine.config().mixture.denoisers().len() > 256 {
            return Err(Error::invalid("mixture", engine.config().mixture.denoisers().len(), "at most 256 denoisers"));
        }
        let fit = engine.config().pack.then(|| NextFit::new(engine.layout()));
        Ok(Self {
            engine,
            documents,
            separator,
            buffer: Vec::new(),
            base: 0,
            cut: 0,
            ready: VecDeque::new(),
            key: 0,
            fit,
            closed: VecDeque::new(),
            pushed: 0,
            segment: 0,
            skip: None,
            finished: false,
            counts: StreamCounts::default(),
        })
    }

    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The stream continued from `resume` (see [`Stream::resume_point`]): the source is read
    /// again from document `resume.document`.
    pub fn resume(&mut self, resume: &Resume) -> Result<()> {
        if self.pushed > 0 || self.key > 0 || self.finished {
            return Err(Error::invalid("state", "given", "load a state into a stream that has not started"));
        }
        if resume.offset > 0 && !resume.pending.is_empty() {
            return Err(Error::invalid("state", "inconsistent", "pending tokens and an offset into the next document"));
        }
        self.key = resume.key;
        self.pushed = resume.document;
        self.base = resume.position;
        self.counts.documents = resume.document;
        self.skip = Some(resume.offset);
        self.buffer = resume.pending.iter().map_while(|&t| T::try_from_i64(t)).collect();
        if self.buffer.len() < resume.pending.len() {
            return Err(Error::invalid("state['pending']", "given", "holds tokens outside the documents' dtype"));
        }
        self.counts.tokens = resume.position;
        self.counts.samples = resume.key;
        self.counts.items = resume.items;
        if self.documents == Documents::Respect {
            // The rest of the last document read before the resume point.
            self.cut_document(0)
        } else {
            self.cut_concat()
        }
    }

    /// Where the stream stands now: emitted items are done, the rest is read again.
    #[must_use]
    pub fn resume_point(&self) -> Resume {
        let start = self.ready.front().map_or(self.cut, |&(s, _)| s); // buffer index of the next sample
        let position = self.base + start as u64;
        let (document, offset, stop) = match self.skip {
            // Resumed, the next document not read yet: everything held precedes it.
            Some(skip) => (self.pushed, skip, self.buffer.len()),
            None if self.pushed == 0 => (0, 0, self.buffer.len()),
            None => {
                let seg = self.segment;
                if position < seg {
                    (self.pushed - 1, 0, (seg - self.base) as usize)
                } else {
                    (self.pushed - 1, position - seg, start)
                }
            }
        };
        Resume {
            key: self.key,
            document,
            offset,
            pending: self.buffer[start..stop].iter().map(|t| t.to_i64()).collect(),
            position,
            items: self.counts.items,
        }
    }

    /// Appends the next document; cuts every sample it completes. `Ok(false)`: a token (or the
    /// separator) does not fit `T`, and nothing changed: [`Stream::retype`] to a wider type.
    pub fn push<U: Token>(&mut self, doc: Line<'_, U>) -> Result<bool> {
        if self.finished {
            return Err(Error::invalid("documents", "pushed", "the stream has finished"));
        }
        let skip = self.skip.unwrap_or(0);
        let sep = usize::from(self.documents == Documents::Concat && self.pushed > 0 && self.separator.is_some());
        let end = self.base + self.buffer.len() as u64;
        let segment_len = (sep + doc.len()) as u64;
        let skip = skip.min(segment_len);
        let first = self.buffer.len();
        alloc::reserve(&mut self.buffer, (segment_len - skip) as usize, "documents")?;
        if sep == 1 && skip == 0 {
            match self.separator.and_then(T::try_from_i64) {
                Some(t) => self.buffer.push(t),
                None => return Ok(false),
            }
        }
        let from = (skip as usize).saturating_sub(sep);
        let mut tmp = Vec::new();
        let d: &[U] = match doc {
            Line::Slice(d) => &d[from..],
            Line::Strided(d) => {
                alloc::reserve(&mut tmp, d.len() - from, "documents")?;
                d.extend_into(from, d.len(), &mut tmp);
                &tmp
            }
        };
        // Two passes that vectorise (and fold away when `U` is `T`): every token fits, then the copy.
        if !d.iter().all(|u| T::try_from_i64(u.to_i64()).is_some()) {
            self.buffer.truncate(first);
            return Ok(false);
        }
        let Some(zero) = T::try_from_i64(0) else { return Ok(false) };
        self.buffer.extend(d.iter().map(|u| T::try_from_i64(u.to_i64()).unwrap_or(zero)));
        self.skip = None;
        self.segment = end - skip.min(end); // virtual when part of it was consumed before a resume
        self.pushed += 1;
        self.counts.documents = self.pushed;
        match self.documents {
            Documents::Concat => self.cut_concat()?,
            Documents::Respect => self.cut_document(first)?,
        }
        Ok(true)
    }

    /// This stream holding its tokens as `U`; `Err(self)` when one does not fit.
    pub fn retype<U: Token>(self) -> std::result::Result<Stream<U>, Box<Self>> {
        let buffer: Vec<U> = self.buffer.iter().map_while(|t| U::try_from_i64(t.to_i64())).collect();
        if buffer.len() < self.buffer.len() {
            return Err(Box::new(self));
        }
        let Self {
            engine,
            documents,
            separator,
            base,
            cut,
            ready,
            key,
            fit,
            closed,
            pushed,
            segment,
            skip,
            finished,
            counts,
            ..
        } = self;
        Ok(Stream {
            engine,
            documents,
            separator,
            buffer,
            base,
            cut,
            ready,
            key,
            fit,
            closed,
            pushed,
            segment,
            skip,
            finished,
            counts,
        })
    }

    fn raw_length(&self, key: u64) -> usize {
        let cfg = self.engine.row_config();
        cfg.max_raw[cfg.mixture.choose(cfg.seed, key)]
    }

    fn next_key(&self) -> u64 {
        self.key + self.ready.len() as u64
    }

    /// `Concat`: cuts samples while the buffer holds the next one's raw length.
    fn cut_concat(&mut self) -> Result<()> {
        loop {
            let t = self.raw_length(self.next_key());
            if self.cut + t > self.buffer.len() {
                return Ok(());
            }
            self.add_sample(self.cut, t)?;
            self.cut += t;
        }
    }

    /// `Respect`: cuts the document at `buffer[first..]` whole (`first` may be `cut`, after a
    /// resume point inside it).
    fn cut_document(&mut self, first: usize) -> Result<()> {
        let mut pos = first;
        let end = self.buffer.len();
        while pos < end {
            let t = self.raw_length(self.next_key()).min(end - pos);
            self.add_sample(pos, t)?;
            pos += t;
        }
        self.cut = end;
        Ok(())
    }

    /// Sample `next_key()` at `buffer[start..start + len]`: checked as the dataset checks it,
    /// placed in the open row when packing.
    fn add_sample(&mut self, start: usize, len: usize) -> Result<()> {
        let k = self.next_key();
        let cfg = self.engine.row_config();
        if let Some(fit) = &mut self.fit {
            let (_, li, lt) = example_bounds(&cfg, len, k).map_err(|e| e.at_row(k as usize))?;
            let open = fit.open_examples();
            if fit.place(k as usize, li, lt)? {
                self.closed.push_back(open);
            }
        } else if self.documents == Documents::Respect {
            example_bounds(&cfg, len, k).map_err(|e| {
                Error::invalid(
                    "documents",
                    "'respect'",
                    format!("sample {k} ({len} tokens, a document's end) cannot be denoised: {e}"),
                )
            })?;
        }
        self.ready.push_back((start, len));
        Ok(())
    }

    /// The source has no more documents: the open row closes, the rest is the tail.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if let Some(fit) = &mut self.fit {
            let open = fit.open_examples();
            if open > 0 {
                self.closed.push_back(open);
            }
            fit.close();
        }
        self.counts.tail = (self.buffer.len() - self.cut) as u64;
    }

    /// Items ready to emit.
    #[must_use]
    pub fn ready_items(&self) -> usize {
        if self.fit.is_some() { self.closed.len() } else { self.ready.len() }
    }

    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    #[must_use]
    pub fn counts(&self) -> StreamCounts {
        StreamCounts { buffered: self.buffer.len(), ..self.counts }
    }

    /// Denoises the next `n` items (at most those ready) into one batch, as a dataset's
    /// `run_items` over the same items; `None` when none is ready.
    pub fn emit(&mut self, n: usize) -> Result<Option<Output>> {
        let items = n.min(self.ready_items());
        if items == 0 {
            return Ok(None);
        }
        let (samples, bins): (usize, FixedBins) = if self.fit.is_some() {
            let mut bins = vec![0];
            for &c in self.closed.iter().take(items) {
                bins.push(bins[bins.len() - 1] + c);
            }
            (bins[items], Bins::Given(bins))
        } else {
            (items, Bins::One)
        };
        let spans: Vec<(usize, usize)> = self.ready.iter().take(samples).copied().collect();
        let keys: Vec<u64> = (self.key..self.key + samples as u64).collect();
        let source = Pending { buffer: &self.buffer, spans: &spans, base: self.base };
        // A sample is its denoiser's raw length or shorter: nothing to cut (as a dataset's items).
        let out = self.engine.run_counted(&source, &keys, bins, crate::Stats::default())?;
        self.closed.drain(..if self.fit.is_some() { items } else { 0 });
        self.ready.drain(..samples);
        self.key += samples as u64;
        self.counts.samples += samples as u64;
        self.counts.items += items as u64;
        self.counts.tokens += spans.iter().map(|&(_, n)| n as u64).sum::<u64>();
        self.compact();
        Ok(Some(out))
    }

    /// Drops the emitted tokens once they are most of the buffer (or all of it).
    fn compact(&mut self) {
        let start = self.ready.front().map_or(self.cut, |&(s, _)| s);
        if start == 0 || (start < self.buffer.len() / 2 && !self.ready.is_empty()) {
            return;
        }
        self.buffer.drain(..start);
        self.base += start as u64;
        self.cut -= start;
        for r in &mut self.ready {
            r.0 -= start;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{Budget, Config, Denoiser, Kind, Mixture, Overflow, Sentinels, SpanParams, finish_offsets};

    fn engine(pack: bool, decoder: bool) -> Engine {
        let span = |mu, r| Denoiser::new(Kind::SpanCorruption(SpanParams::new(r, mu, None, false).unwrap()), vec![7]).unwrap();
        let mixture = Mixture::new(vec![
            (span(3.0, 0.15), 1.0),
            (span(8.0, 0.5), 1.0),
            (Denoiser::new(Kind::PrefixLm { suffix_density: 0.5 }, vec![]).unwrap(), 1.0),
        ])
        .unwrap();
        let sentinels = Sentinels::t5(1000, 60, Overflow::Cap, true).unwrap();
        let budget =
            if decoder { Budget::Decoder { sequence: 48 } } else { Budget::EncoderDecoder { inputs: 32, targets: None } };
        let mut config = Config::new(mixture, sentinels, budget);
        config.pack = pack;
        config.seed = 11;
        Engine::new(config).unwrap().with_denoiser_field()
    }

    /// The dataset's items over the concatenation, one batch of `n` items at a time.
    fn dataset(e: &Engine, docs: &[Vec<i64>], mode: Documents, sep: Option<i64>, n: usize) -> Result<Vec<Output>> {
        let tokens: Vec<i64> = docs.concat();
        let starts = docs.iter().scan(0u64, |p, d| Some(std::mem::replace(p, *p + d.len() as u64))).collect();
        let offsets = finish_offsets(starts, tokens.len() as u64);
        let corpus = e.corpus(Line::Slice(&tokens), Some(&offsets), sep)?;
        let index = e.index(&corpus, mode)?;
        let ids: Vec<u64> = (0..index.len() as u64).collect();
        ids.chunks(n).map(|c| e.run_items(&corpus, &index, c)).collect()
    }

    /// The stream's batches of `n` items; stopped after `stop` batches, resumed in a new stream.
    fn stream(e: &Engine, docs: &[Vec<i64>], mode: Documents, sep: Option<i64>, n: usize, stop: usize) -> Result<Vec<Output>> {
        let (mut s, mut out, mut next) = (Stream::<i32>::new(e.clone(), mode, sep)?, Vec::new(), 0usize);
        loop {
            if out.len() == stop {
                let r = s.resume_point();
                s = Stream::new(e.clone(), mode, sep)?;
                s.resume(&r)?;
                next = r.document as usize;
                // The reopened source: its first documents skipped, the next one's offset with it.
            }
            while s.ready_items() < n && !s.is_finished() {
                match docs.get(next) {
                    Some(d) => assert!(s.push(Line::Slice(d))?),
                    None => s.finish(),
                }
                next += 1;
            }
            match s.emit(n)? {
                Some(o) => out.push(o),
                None => return Ok(out),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn stream_equals_the_dataset_and_resumes_exactly(
            lens in prop::collection::vec(prop_oneof![0usize..4, 0usize..40, 0usize..200], 1..12),
            respect in any::<bool>(),
            sep in any::<bool>(),
            pack in any::<bool>(),
            decoder in any::<bool>(),
            n in 1usize..4,
            stop in 0usize..6,
        ) {
            let mode = if respect { Documents::Respect } else { Documents::Concat };
            let sep = (sep && !respect).then_some(1);
            let docs: Vec<Vec<i64>> = lens.iter().enumerate().map(|(d, &l)| (0..l).map(|i| 2 + ((d * 31 + i * 7) % 900) as i64).collect()).collect();
            let e = engine(pack, decoder);
            match dataset(&e, &docs, mode, sep, n) {
                Ok(want) => {
                    let got = stream(&e, &docs, mode, sep, n, usize::MAX).unwrap();
                    prop_assert_eq!(got.iter().map(|o| &o.fields).collect::<Vec<_>>(), want.iter().map(|o| &o.fields).collect::<Vec<_>>());
                    let resumed = stream(&e, &docs, mode, sep, n, stop).unwrap();
                    prop_assert_eq!(resumed.iter().map(|o| &o.fields).collect::<Vec<_>>(), want.iter().map(|o| &o.fields).collect::<Vec<_>>());
                }
                Err(err) => prop_assert_eq!(stream(&e, &docs, mode, sep, n, usize::MAX).err(), Some(err)),
            }
        }
    }

    #[test]
    fn the_buffer_stays_within_a_raw_length_and_a_document() {
        let e = engine(false, false);
        let max_raw = *e.raw_lengths().iter().max().unwrap();
        let mut s = Stream::<u16>::new(e, Documents::Concat, Some(1)).unwrap();
        for d in 0..5000usize {
            let doc: Vec<i64> = (0..(d * 37) % 150).map(|i| 2 + (i % 500) as i64).collect();
            assert!(s.push(Line::Slice(&doc)).unwrap());
            assert!(s.counts().buffered <= max_raw + doc.len() + 1 + s.ready.iter().map(|r| r.1).sum::<usize>());
            while s.emit(4).unwrap().is_some_and(|_| s.ready_items() > 0) {}
            assert!(s.counts().buffered < max_raw, "{} tokens held after emitting", s.counts().buffered);
        }
    }

    #[test]
    fn a_token_too_wide_refuses_the_push_and_a_wider_stream_takes_it() {
        let e = engine(false, false);
        let docs: Vec<Vec<i64>> = vec![(2..400).collect(), vec![900; 40], (2..300).collect()];
        let want = dataset(&e, &docs, Documents::Concat, Some(1), 2).unwrap();
        let mut s = Stream::<u16>::new(e.clone(), Documents::Concat, Some(1)).unwrap();
        let narrow: Vec<u16> = (2..400).collect();
        assert!(s.push(Line::Slice(&narrow)).unwrap());
        let before = s.resume_point();
        assert!(!s.push(Line::Slice(&[900i64, 70_000])).unwrap(), "70000 is no u16");
        assert_eq!(s.resume_point(), before, "a refused push changes nothing");
        let mut s: Stream<i64> = s.retype().unwrap();
        for d in &docs[1..] {
            assert!(s.push(Line::Slice(d)).unwrap());
        }
        s.finish();
        let mut got = Vec::new();
        while let Some(o) = s.emit(2).unwrap() {
            got.push(o.fields);
        }
        assert_eq!(got, want.into_iter().map(|o| o.fields).collect::<Vec<_>>());
    }
}
