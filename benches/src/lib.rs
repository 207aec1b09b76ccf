//! Criterion benchmarks for cloze live in `benches/benches/`; this library is empty
//! so the package can hold them. Run them with `cargo xtask bench [NAME]`.
