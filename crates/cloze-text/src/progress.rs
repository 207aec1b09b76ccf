//! Progress reporting: libraries call a [`Progress`]; only the driver draws bars.

/// Receives progress from long-running operations. Methods may be called from
/// several threads at once (rayon workers), hence `Sync`.
pub trait Progress: Sync {
    /// A new stage starts; `total` is its amount of work in `unit`s when known.
    fn stage(&self, _name: &str, _total: Option<u64>, _unit: &str) {}
    /// `n` more units of the current stage are done.
    fn advance(&self, _n: u64) {}
    /// The current stage is finished.
    fn finish(&self) {}
    /// A one-line message for the user (e.g. where a download went).
    fn message(&self, _text: &str) {}
    /// Whether the caller wants the operation to stop (the driver answers true
    /// after Ctrl-C). Long operations poll it between units of work (a chunk
    /// of documents, a batch of lines) and then return [`crate::Error::Cancelled`]
    /// without publishing anything.
    fn cancelled(&self) -> bool {
        false
    }
}

/// Ignores all progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
