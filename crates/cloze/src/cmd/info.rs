//! `cloze info`: what this binary runs on.

use anyhow::Result;
use clap::Args;

/// Arguments of `cloze info`.
#[derive(Debug, Args)]
pub struct InfoArgs {}

/// Prints the libtorch build, device and threading facts.
pub fn run(_args: InfoArgs) -> Result<()> {
    println!("cloze {}", env!("CARGO_PKG_VERSION"));
    println!("libtorch intra-op threads: {}", tch::get_num_threads());
    println!(
        "cuda available: {} ({} devices)",
        tch::Cuda::is_available(),
        tch::Cuda::device_count()
    );
    Ok(())
}
