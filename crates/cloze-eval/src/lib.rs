//! placeholder
pub mod mlm_eval;
