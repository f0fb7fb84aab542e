//! Token ids as callers hold them: slices, or memory read in place through byte strides
//! (NumPy views such as `rows[::2]` or `rows[:, :n]`, Fortran order, misaligned buffers),
//! which are no `&[T]` and are never copied whole.

use std::marker::PhantomData;

use crate::Token;
use crate::error::{Error, Result, reserve};

/// `len` token ids in `bytes`, element `i` at byte `origin + i · step` (native byte order,
/// any alignment; `step` may be negative or zero).
#[derive(Debug, Clone, Copy)]
pub struct Strided<'a, T> {
    bytes: &'a [u8],
    origin: usize,
    step: isize,
    len: usize,
    token: PhantomData<T>,
}

impl<'a, T: Token> Strided<'a, T> {
    /// Checks that every element lies inside `bytes`.
    pub fn new(bytes: &'a [u8], origin: usize, step: isize, len: usize) -> Result<Self> {
        let s = Self { bytes, origin, step, len, token: PhantomData };
        let last = origin as i128 + step as i128 * len.saturating_sub(1) as i128;
        let fits = |at: i128| at >= 0 && at + T::BYTES as i128 <= bytes.len() as i128;
        if len > 0 && !(fits(origin as i128) && fits(last)) {
            return Err(Error::Internal(format!(
                "{len} elements of {} bytes from byte {origin} by {step} leave a {}-byte buffer",
                T::BYTES,
                bytes.len()
            )));
        }
        Ok(s)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The same memory from element `i` on, `len` elements (checked by the caller).
    #[must_use]
    pub fn skip(&self, i: usize, len: usize) -> Self {
        let origin = (self.origin as isize + self.step * i as isize) as usize;
        Self { origin, len, ..*self }
    }

    /// Appends elements `[start, stop)` to `out`.
    pub fn extend_into(&self, start: usize, stop: usize, out: &mut Vec<T>) {
        let mut at = self.origin as isize + self.step * start as isize;
        out.extend((start..stop).map(|_| {
            let b = at as usize;
            at += self.step;
            T::from_ne_slice(&self.bytes[b..b + T::BYTES])
        }));
    }
}

/// One run of tokens: borrowed as a slice, or read through its strides.
#[derive(Debug, Clone, Copy)]
pub enum Line<'a, T> {
    Slice(&'a [T]),
    Strided(Strided<'a, T>),
}

impl<T: Token> Line<'_, T> {
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::Slice(s) => s.len(),
            Self::Strided(s) => s.len(),
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements `[start, stop)`: borrowed from a slice, gathered into `scratch` otherwise.
    pub fn range<'s>(&'s self, start: usize, stop: usize, scratch: &'s mut Vec<T>) -> Result<&'s [T]> {
        match self {
            Self::Slice(s) => Ok(&s[start..stop]),
            Self::Strided(s) => {
                scratch.clear();
                reserve(scratch, stop - start, "tokens")?;
                s.extend_into(start, stop, scratch);
                Ok(scratch)
            }
        }
    }

    /// Appends elements `[start, stop)` to `out`.
    pub fn extend_into(&self, start: usize, stop: usize, out: &mut Vec<T>) {
        match self {
            Self::Slice(s) => out.extend_from_slice(&s[start..stop]),
            Self::Strided(s) => s.extend_into(start, stop, out),
        }
    }
}

impl<'a, T> From<&'a [T]> for Line<'a, T> {
    fn from(s: &'a [T]) -> Self {
        Self::Slice(s)
    }
}

impl<'a, T> From<&'a Vec<T>> for Line<'a, T> {
    fn from(s: &'a Vec<T>) -> Self {
        Self::Slice(s)
    }
}

impl<'a, T, const N: usize> From<&'a [T; N]> for Line<'a, T> {
    fn from(s: &'a [T; N]) -> Self {
        Self::Slice(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tokens` laid out `step` bytes apart from byte `origin` (any alignment).
    fn spread(tokens: &[i32], origin: usize, step: isize) -> Vec<u8> {
        let n = tokens.len() as isize;
        let size = (origin as isize + (n - 1).max(0) * step.abs()) as usize + 4;
        let mut bytes = vec![0xAB; size + origin];
        for (i, t) in tokens.iter().enumerate() {
            let at = (origin as isize + i as isize * step) as usize;
            bytes[at..at + 4].copy_from_slice(&t.to_ne_bytes());
        }
        bytes
    }

    #[test]
    fn strided_reads_equal_the_slice() {
        let tokens: Vec<i32> = (0..50).map(|i| i * 7 - 3).collect();
        for (origin, step) in [(0, 4), (1, 4), (3, 9), (0, 12), (49 * 8 + 2, -8)] {
            let bytes = spread(&tokens, origin, step);
            let line = Line::Strided(Strided::<i32>::new(&bytes, origin, step, tokens.len()).unwrap());
            let mut scratch = Vec::new();
            assert_eq!(line.range(0, 50, &mut scratch).unwrap(), &tokens[..], "origin {origin} step {step}");
            assert_eq!(line.range(10, 17, &mut scratch).unwrap(), &tokens[10..17]);
            let mut out = vec![1];
            line.extend_into(48, 50, &mut out);
            assert_eq!(out, [1, tokens[48], tokens[49]]);
            let Line::Strided(s) = line else { unreachable!() };
            let tail = Line::Strided(s.skip(5, 3));
            assert_eq!(tail.range(0, 3, &mut scratch).unwrap(), &tokens[5..8]);
        }
    }

    #[test]
    fn strided_views_must_lie_inside_their_bytes() {
        let bytes = [0u8; 16];
        assert!(Strided::<i32>::new(&bytes, 0, 4, 4).is_ok());
        assert!(Strided::<i32>::new(&bytes, 1, 4, 4).is_err());
        assert!(Strided::<i32>::new(&bytes, 12, -4, 4).is_ok());
        assert!(Strided::<i32>::new(&bytes, 8, -4, 4).is_err());
        assert!(Strided::<i32>::new(&bytes, 100, 4, 0).is_ok());
    }
}
