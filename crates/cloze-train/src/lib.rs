//! `cloze-train`: being built; see docs/ARCHITECTURE.md for its place in the layers.
