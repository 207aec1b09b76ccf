//! Placeholder bench target; the models engineer replaces it.
fn main() {}
