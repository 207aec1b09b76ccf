//! `cloze launch`: starts the ranks of a data-parallel job on this machine
//! the way torchrun does, for users without Python.
//!
//! Each of `--nproc-per-node` children is this same binary running the
//! given command, with torchrun's variables set (`RANK`, `LOCAL_RANK`,
//! `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `GROUP_RANK`, `MASTER_ADDR`,
//! `MASTER_PORT`, `TORCHELASTIC_RESTART_COUNT`). Rank 0 hosts the
//! rendezvous store. When a rank fails, the others notice at their next
//! exchange and exit with an error naming it; the launcher waits for them a
//! little, stops any that remain, and exits with the first failure's status.
//! Ctrl-C reaches every rank from the terminal: they stop together after the
//! current step and rank 0 writes the checkpoint.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

/// Arguments of `cloze launch`.
#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Ranks to start on this machine.
    #[arg(long, default_value_t = 1)]
    pub nproc_per_node: usize,
    /// Machines in the job (start `cloze launch` on each, with its --node-rank).
    #[arg(long, default_value_t = 1)]
    pub nnodes: usize,
    /// This machine's index among --nnodes (0 hosts rank 0 and the store).
    #[arg(long, default_value_t = 0)]
    pub node_rank: usize,
    /// Address of node 0, reachable from every machine.
    #[arg(long, default_value = "127.0.0.1")]
    pub master_addr: String,
    /// Port of the rendezvous store on node 0 (default: a free port when the
    /// job is on one machine, else 29500, torchrun's).
    #[arg(long)]
    pub master_port: Option<u16>,
    /// Seconds to wait for the other ranks to exit after one failed, before
    /// stopping them.
    #[arg(long, default_value_t = 30)]
    pub grace: u64,
    /// The command every rank runs, after `--`: `pretrain --data D --out RUN ...`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Picks a free port on this machine (single-machine jobs).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// How a rank ended, in words.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(9)) => "was killed (SIGKILL)".into(),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => "ended".into(),
    }
}

/// Runs `cloze launch`.
pub fn run(a: LaunchArgs) -> Result<()> {
    if a.nproc_per_node == 0 || a.nnodes == 0 {
        bail!("--nproc-per-node and --nnodes must be at least 1");
    }
    if a.node_rank >= a.nnodes {
        bail!(
            "--node-rank {} is not below --nnodes {}",
            a.node_rank,
            a.nnodes
        );
    }
    // Global flags (`-q`, `--threads N`) may come first.
    if !a.command.iter().any(|w| w == "pretrain") {
        bail!(
            "cloze launch runs `pretrain` (the only data-parallel command): \
             cloze launch --nproc-per-node N -- pretrain --data DIR --out RUN ..."
        );
    }
    let port = match a.master_port {
        Some(p) => p,
        None if a.nnodes == 1 => free_port()?,
        None => cloze_dist::DEFAULT_PORT,
    };
    let world = a.nproc_per_node * a.nnodes;
    let exe = std::env::current_exe().context("locating the cloze binary")?;
    // Ctrl-C is for the ranks (they share the terminal's process group):
    // the launcher keeps waiting for them to checkpoint and exit.
    ctrlc::set_handler(|| {}).context("installing the Ctrl-C handler")?;
    let mut children: Vec<(usize, Child)> = Vec::with_capacity(a.nproc_per_node);
    for local in 0..a.nproc_per_node {
        let rank = a.node_rank * a.nproc_per_node + local;
        let child = Command::new(&exe)
            .args(&a.command)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", local.to_string())
            .env("WORLD_SIZE", world.to_string())
            .env("LOCAL_WORLD_SIZE", a.nproc_per_node.to_string())
            .env("GROUP_RANK", a.node_rank.to_string())
            .env("MASTER_ADDR", &a.master_addr)
            .env("MASTER_PORT", port.to_string())
            .env("TORCHELASTIC_RESTART_COUNT", "0")
            .spawn()
            .with_context(|| format!("starting rank {rank}"))?;
        children.push((rank, child));
    }
    eprintln!(
        "launched ranks {}..{} of {world} (store {}:{port})",
        a.node_rank * a.nproc_per_node,
        (a.node_rank + 1) * a.nproc_per_node - 1,
        a.master_addr
    );
    wait_all(children, Duration::from_secs(a.grace))
}

/// Waits for every rank; after the first failure, gives the others `grace`
/// to exit on their own, then kills them.
fn wait_all(mut running: Vec<(usize, Child)>, grace: Duration) -> Result<()> {
    let mut first_failure: Option<(usize, ExitStatus)> = None;
    let mut failed_at: Option<Instant> = None;
    while !running.is_empty() {
        let mut still = Vec::with_capacity(running.len());
        for (rank, mut child) in running {
            match child.try_wait()? {
                Some(status) => {
                    if !status.success() && first_failure.is_none() {
                        eprintln!("cloze launch: rank {rank} {}", describe(status));
                        first_failure = Some((rank, status));
                        failed_at = Some(Instant::now());
                    }
                }
                None => still.push((rank, child)),
            }
        }
        running = still;
        if let Some(t) = failed_at {
            if t.elapsed() > grace && !running.is_empty() {
                for (rank, child) in &mut running {
                    eprintln!("cloze launch: stopping rank {rank}, still running {grace:?} after the failure");
                    let _ = child.kill();
                }
                for (_, child) in &mut running {
                    let _ = child.wait();
                }
                running.clear();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    match first_failure {
        None => Ok(()),
        Some((rank, status)) => {
            let code = status.code().unwrap_or(1);
            if code == i32::from(crate::cmd::interrupt::EXIT_INTERRUPTED) {
                return Err(anyhow::Error::new(crate::cmd::interrupt::Interrupted(
                    "the ranks stopped after Ctrl-C; rank 0 wrote a checkpoint (continue with `-- pretrain --resume RUN`)".into(),
                )));
            }
            bail!("rank {rank} {}; the job failed", describe(status))
        }
    }
}
