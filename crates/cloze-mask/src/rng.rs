//! Per-example random streams: the masks of example `i` in epoch `e` under seed `s`
//! depend on `(s, e, i)` alone, never on which thread masked it or in what order.
//! The generator is defined with the project's other streams in `cloze_core::rng`.

/// The random generator every stage draws from.
pub type MaskRng = rand_chacha::ChaCha8Rng;

pub use cloze_core::rng::example_rng;
