//! `cloze bench gemm`: the GEMM peak (fp32 or bf16) that utilisation figures are
//! measured against.

use anyhow::Result;
use clap::Args;
use cloze_models::Precision;

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
    /// Element type of the product.
    #[arg(long, default_value_t = Precision::Fp32)]
    pub precision: Precision,
}

/// Measures GFLOP/s of an n x n matrix product on the CPU in `precision`.
pub fn measure_gflops(n: i64, reps: u32, precision: Precision) -> f64 {
    let opts = (precision.kind(), tch::Device::Cpu);
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
    anyhow::ensure!(
        args.precision != Precision::Int8,
        "bench gemm times fp32 or bf16 products; int8 linears are timed by `cloze bench encode --precision int8`"
    );
    let g = measure_gflops(args.n, args.reps, args.precision);
    println!(
        "{}",
        serde_json::json!({"what": format!("gemm_{}_gflops", args.precision), "value": (g * 10.0).round() / 10.0, "n": args.n, "threads": args.threads})
    );
    Ok(())
}
