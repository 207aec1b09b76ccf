//! `cloze bench gemm`: the fp32 GEMM peak that utilisation figures are measured against.

use anyhow::Result;
use clap::Args;

/// Arguments of `cloze bench gemm`.
#[derive(Debug, Args)]
pub struct GemmArgs {
    /// Matrix size n (n x n times n x n).
    #[arg(long, default_value_t = 1024)]
    pub n: i64,
    /// Timed repetitions.
    #[arg(long, default_value_t = 20)]
    pub reps: u32,
    /// libtorch intra-op threads.
    #[arg(long, default_value_t = 2)]
    pub threads: i32,
}

/// Measures GFLOP/s of an n x n fp32 matrix product on the CPU.
pub fn measure_gflops(n: i64, reps: u32) -> f64 {
    let opts = (tch::Kind::Float, tch::Device::Cpu);
    let a = tch::Tensor::randn([n, n], opts);
    let b = tch::Tensor::randn([n, n], opts);
    for _ in 0..3 {
        let _ = a.matmul(&b);
    }
    let t = std::time::Instant::now();
    for _ in 0..reps {
        let _ = a.matmul(&b);
    }
    let secs = t.elapsed().as_secs_f64();
    2.0 * (n as f64).powi(3) * f64::from(reps) / secs / 1e9
}

/// Prints the measured GEMM throughput as a JSON line.
pub fn run(args: GemmArgs) -> Result<()> {
    tch::set_num_threads(args.threads);
    let g = measure_gflops(args.n, args.reps);
    println!(
        "{}",
        serde_json::json!({"what": "gemm_fp32_gflops", "value": (g * 10.0).round() / 10.0, "n": args.n, "threads": args.threads})
    );
    Ok(())
}
