//! Denoised rows as stored arrays and back: what a lean shard holds (the token buffers and the
//! segments, nothing [`format`] can derive), checked on the way back so that a damaged shard
//! is an error naming the array, never a panic inside the formatter.

use super::{Denoised, Family, Field, Format, Layout, Options, Segment, format};
use crate::OutToken;
use crate::error::{Error, Result};

/// Columns of the segment table: `(denoiser, inputs, targets)` per segment.
pub const SEGMENT_COLUMNS: usize = 3;

impl Segment {
    /// `segments` as a flat `[n, 3]` table, row after row.
    #[must_use]
    pub fn table(segments: &[Self]) -> Vec<u32> {
        segments.iter().flat_map(|s| [s.denoiser, s.inputs, s.targets]).collect()
    }

    /// The segments of a flat `[n, 3]` table (what [`Segment::table`] gives).
    pub fn from_table(values: &[i64]) -> Result<Vec<Self>> {
        if values.len() % SEGMENT_COLUMNS != 0 {
            return Err(Error::invalid("segments", format!("{} values", values.len()), "expected a [n, 3] table"));
        }
        let field = |i: usize, v: i64| {
            u32::try_from(v).map_err(|_| {
                let (row, col) = (i / SEGMENT_COLUMNS, i % SEGMENT_COLUMNS);
                Error::invalid("segments", format!("{v} at [{row}, {col}]"), "must be in [0, 2**32)")
            })
        };
        values
            .chunks_exact(SEGMENT_COLUMNS)
            .enumerate()
            .map(|(r, c)| {
                let at = r * SEGMENT_COLUMNS;
                Ok(Self { denoiser: field(at, c[0])?, inputs: field(at + 1, c[1])?, targets: field(at + 2, c[2])? })
            })
            .collect()
    }
}

impl<O: OutToken> Denoised<O> {
    /// Rows of `layout` from their buffers (`[rows, width]` each, row after row; the decoder
    /// family has no `second`), their segments and `row_starts` (`rows + 1` entries): every
    /// segment must fit its row, as the formatter assumes.
    pub fn new(layout: Layout, first: Vec<O>, second: Vec<O>, segments: Vec<Segment>, row_starts: Vec<usize>) -> Result<Self> {
        let (w0, w1) = layout.widths;
        let Some(rows) = row_starts.len().checked_sub(1) else {
            return Err(Error::invalid("row_starts", "[]", "needs rows + 1 entries, the first 0"));
        };
        if row_starts[0] != 0 || row_starts[rows] != segments.len() {
            return Err(Error::invalid(
                "row_starts",
                format!("{}..{}", row_starts[0], row_starts[rows]),
                format!("must run from 0 to the number of segments ({})", segments.len()),
            ));
        }
        if let Some(r) = row_starts.windows(2).position(|w| w[0] > w[1]) {
            return Err(Error::invalid("row_starts", format!("[{r}]={}", row_starts[r]), "must not decrease"));
        }
        if layout.family == Family::Decoder && w1 != 0 {
            return Err(Error::invalid("second", format!("width {w1}"), "decoder rows have no second buffer"));
        }
        for (arg, buffer, width) in [("first", &first, w0), ("second", &second, w1)] {
            if rows.checked_mul(width) != Some(buffer.len()) {
                return Err(Error::invalid(
                    arg,
                    format!("{} values", buffer.len()),
                    format!("expected {rows} rows of {width} (as row_starts says)"),
                ));
            }
        }
        for r in 0..rows {
            let segs = &segments[row_starts[r]..row_starts[r + 1]];
            let sum = |f: fn(&Segment) -> u64| segs.iter().map(f).sum::<u64>();
            let (inputs, targets) = (sum(|s| u64::from(s.inputs)), sum(|s| u64::from(s.targets)));
            let fits = match layout.family {
                Family::EncoderDecoder => inputs <= w0 as u64 && targets <= w1 as u64,
                Family::Decoder => inputs + targets <= w0 as u64,
            };
            if !fits {
                return Err(Error::invalid(
                    "segments",
                    format!("row {r}: {inputs} inputs and {targets} targets"),
                    format!("do not fit rows of widths {:?}", layout.widths),
                ));
            }
            if let Some(s) = segs.iter().find(|s| i64::from(s.denoiser) > O::MAX) {
                return Err(Error::invalid("segments", format!("row {r}: denoiser {}", s.denoiser), "does not fit the dtype"));
            }
        }
        Ok(Self { rows, family: layout.family, widths: layout.widths, first, second, segments, row_starts })
    }

    /// [`Denoised::new`] with the segments as a flat `[n, 3]` table and the row starts as
    /// integers (what a shard stores).
    pub fn from_table(layout: Layout, first: Vec<O>, second: Vec<O>, segments: &[i64], row_starts: &[i64]) -> Result<Self> {
        let starts = row_starts
            .iter()
            .map(|&s| usize::try_from(s).map_err(|_| Error::invalid("row_starts", s, "must be >= 0")))
            .collect::<Result<Vec<_>>>()?;
        Self::new(layout, first, second, Segment::from_table(segments)?, starts)
    }
}

/// [`format`] of rows read back from storage: `d`'s family must be `format`'s, and unpacked
/// rows hold one segment each (as the engine writes them).
pub fn reformat<O: OutToken>(d: Denoised<O>, format_: Format, pad: O, opts: Options) -> Result<Vec<Field<O>>> {
    if format_.family() != d.family {
        return Err(Error::invalid("format", format!("{:?}", format_.name()), format!("does not name {:?} rows", d.family)));
    }
    let crowded = if opts.packed { None } else { d.row_starts.windows(2).position(|w| w[1] - w[0] != 1) };
    if let Some(r) = crowded {
        return Err(Error::invalid(
            "segments",
            format!("row {r}: {} segments", d.row_starts[r + 1] - d.row_starts[r]),
            "unpacked rows hold one segment each",
        ));
    }
    format(d, format_, pad, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Selection;

    fn layout(family: Family, widths: (usize, usize)) -> Layout {
        Layout { family, widths }
    }

    fn rows() -> Denoised<i32> {
        let seg = |denoiser, inputs, targets| Segment { denoiser, inputs, targets };
        Denoised {
            rows: 2,
            family: Family::EncoderDecoder,
            widths: (4, 3),
            first: vec![5, 6, 1, 0, 7, 1, 8, 1],
            second: vec![9, 1, 0, 4, 1, 0],
            segments: vec![seg(0, 3, 2), seg(1, 2, 2), seg(0, 2, 0)],
            row_starts: vec![0, 1, 3],
        }
    }

    #[test]
    fn a_stored_table_rebuilds_the_same_rows_and_fields() {
        let d = rows();
        let table: Vec<i64> = Segment::table(&d.segments).into_iter().map(i64::from).collect();
        let starts: Vec<i64> = d.row_starts.iter().map(|&s| s as i64).collect();
        let back = Denoised::from_table(layout(d.family, d.widths), d.first.clone(), d.second.clone(), &table, &starts).unwrap();
        assert_eq!(back, d);
        let opts = Options { packed: true, denoiser: true, ..Options::default() };
        for fmt in [Format::Hf, Format::Seqio] {
            assert_eq!(reformat(back.clone(), fmt, 0, opts).unwrap(), format(d.clone(), fmt, 0, opts).unwrap());
        }
        let some = Options { fields: Some(Selection::new(Format::Hf, opts, &["labels"]).unwrap()), ..opts };
        assert_eq!(reformat(back, Format::Hf, 0, some).unwrap(), format(d, Format::Hf, 0, some).unwrap());
    }

    #[test]
    fn damaged_arrays_are_errors_naming_them() {
        let d = rows();
        let l = layout(d.family, d.widths);
        let table: Vec<i64> = Segment::table(&d.segments).into_iter().map(i64::from).collect();
        let arg = |r: Result<Denoised<i32>>| match r {
            Err(Error::Invalid { arg, .. }) => arg,
            other => panic!("{other:?}"),
        };
        assert_eq!(arg(Denoised::from_table(l, d.first.clone(), d.second.clone(), &table, &[0, 3, 1, 3])), "row_starts");
        assert_eq!(arg(Denoised::from_table(l, d.first.clone(), d.second.clone(), &table, &[0, 2])), "row_starts");
        assert_eq!(arg(Denoised::from_table(l, d.first.clone(), d.second.clone(), &table, &[-1, 3])), "row_starts");
        assert_eq!(arg(Denoised::from_table(l, d.first.clone(), d.second.clone(), &table, &[])), "row_starts");
        assert_eq!(arg(Denoised::from_table(l, d.first[1..].to_vec(), d.second.clone(), &table, &[0, 1, 3])), "first");
        assert_eq!(arg(Denoised::from_table(l, d.first.clone(), vec![], &table, &[0, 1, 3])), "second");
        assert_eq!(arg(Denoised::from_table(l, d.first.clone(), d.second.clone(), &table[1..], &[0, 1, 3])), "segments");
        let mut wide = table.clone();
        wide[1] = 5; // 5 inputs in a row of 4
        assert_eq!(arg(Denoised::from_table(l, d.first.clone(), d.second.clone(), &wide, &[0, 1, 3])), "segments");
        wide[1] = -3;
        assert_eq!(arg(Denoised::from_table(l, d.first.clone(), d.second.clone(), &wide, &[0, 1, 3])), "segments");
        let dec = layout(Family::Decoder, (4, 0));
        let over = [0, 3, 2]; // a decoder row holds inputs and targets: 5 > 4
        assert_eq!(arg(Denoised::from_table(dec, vec![0; 4], vec![], &over, &[0, 1])), "segments");
        // Two segments in a row of an unpacked shard.
        let unpacked = Options::default();
        assert!(matches!(reformat(d.clone(), Format::Hf, 0, unpacked), Err(Error::Invalid { arg: "segments", .. })));
        assert!(matches!(reformat(d, Format::Decoder, 0, unpacked), Err(Error::Invalid { arg: "format", .. })));
    }
}
