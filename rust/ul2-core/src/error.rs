//! One error type for the whole core. Every message starts with `arg=value:` so a user can
//! see which of the things they passed was wrong; the bindings map each variant to
//! `ValueError` (or a `ValueError` subclass) without rewording it.

use std::fmt;

/// Everything that can go wrong in `ul2-core`. All variants but [`Error::Internal`] are the
/// caller's mistake and carry enough to say what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A scalar or configuration value outside its domain (NaN density, μ ≤ 0, …).
    #[error("{arg}={value}: {reason}")]
    Invalid { arg: &'static str, value: String, reason: String },
    /// More noise spans than sentinel ids with `on_overflow="error"`.
    #[error("{where_}{spans} noise spans need {needed} sentinel ids but only {available} are available; {fix}")]
    SentinelOverflow { where_: Where, spans: usize, needed: usize, available: usize, fix: &'static str },
    /// An input token equal to a sentinel id: reconstruction would be ambiguous.
    #[error("{where_}token {token} at position {position} is a sentinel id; remove it or pass check_collisions=False")]
    SentinelCollision { where_: Where, position: usize, token: i64 },
    /// A token id that is negative, outside the vocabulary or not representable in the output dtype.
    #[error("{where_}token {token} at position {position} {reason}")]
    TokenOutOfRange { where_: Where, position: usize, token: i64, reason: String },
    /// A row whose outputs do not fit the budget; nothing is ever cut silently.
    #[error("{where_}{what} length {length} exceeds {budget}={limit}; {fix}")]
    DoesNotFit { where_: Where, what: &'static str, length: usize, budget: &'static str, limit: usize, fix: String },
    /// An index past the end of what it indexes (the bindings raise `IndexError`).
    #[error("{arg}: {index} is out of range for a dataset of {len} {what}")]
    OutOfRange { arg: &'static str, index: u64, len: u64, what: &'static str },
    /// An error of one denoiser of a mixture.
    #[error("mixture[{index}]: {error}")]
    InMixture { index: usize, error: Box<Error> },
    /// Memory for a buffer whose size follows from `arg` could not be had (the machine's
    /// memory or the process's address-space limit); the bindings raise `MemoryError`.
    #[error("{arg}: cannot allocate {bytes} bytes; lower the batch size or the lengths")]
    OutOfMemory { arg: &'static str, bytes: usize },
    /// A broken internal invariant: a bug in ul2, never reachable from user input.
    #[error("internal error (please report): {0}")]
    Internal(String),
}

/// Which argument, and which row of it, an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Where {
    pub arg: &'static str,
    pub row: Option<usize>,
}

impl Where {
    #[must_use]
    pub const fn arg(arg: &'static str) -> Self {
        Self { arg, row: None }
    }
    #[must_use]
    pub const fn row(arg: &'static str, row: usize) -> Self {
        Self { arg, row: Some(row) }
    }
}

impl fmt::Display for Where {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.row {
            Some(r) => write!(f, "{}[{r}]: ", self.arg),
            None => write!(f, "{}: ", self.arg),
        }
    }
}

impl Error {
    pub(crate) fn invalid(arg: &'static str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        Self::Invalid { arg, value: value.to_string(), reason: reason.into() }
    }

    /// This error, raised for denoiser `index` of a mixture.
    #[must_use]
    pub fn in_mixture(self, index: usize) -> Self {
        Self::InMixture { index, error: Box::new(self) }
    }

    /// The error itself, under any mixture position it was raised at.
    #[must_use]
    pub fn root(&self) -> &Self {
        match self {
            Self::InMixture { error, .. } => error.root(),
            other => other,
        }
    }

    /// Attach a row index to an error raised for a single row.
    #[must_use]
    pub fn at_row(self, row: usize) -> Self {
        match self {
            Self::InMixture { index, error } => (*error).at_row(row).in_mixture(index),
            mut e => {
                if let Self::SentinelOverflow { where_, .. }
                | Self::SentinelCollision { where_, .. }
                | Self::TokenOutOfRange { where_, .. }
                | Self::DoesNotFit { where_, .. } = &mut e
                {
                    where_.row = Some(row);
                }
                e
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A float as Python prints it (`nan`, `inf`, `1e-300`, `0.15`), for messages.
pub(crate) fn real(v: f64) -> String {
    if v.is_nan() { "nan".to_owned() } else { format!("{v:?}") }
}
