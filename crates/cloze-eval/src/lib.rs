//! `cloze-eval`: being built; see docs/ARCHITECTURE.md for its place in the layers.
