//! Two real processes on loopback: collectives, a rank killed with SIGKILL,
//! and an unreachable master. The test re-runs its own binary as the ranks
//! (`CLOZE_DIST_TEST_ROLE` says which test body a child runs).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use cloze_dist::{
    allreduce_buckets, broadcast_bytes, reduce_values, Collective, Error, GroupOptions, Launch,
    LostRanks, ProcessGroup, ReduceOp,
};
use tch::Tensor;

const ROLE: &str = "CLOZE_DIST_TEST_ROLE";

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local address").port()
}

/// Starts this test binary as rank `rank` of `world`, running only `test`.
fn spawn_rank(test: &str, role: &str, rank: usize, world: usize, port: u16) -> Result<Child> {
    Ok(Command::new(std::env::current_exe()?)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?)
}

fn join(timeout_s: u64) -> Result<ProcessGroup> {
    let launch = Launch::from_env()?.context("WORLD_SIZE is set for the child")?;
    Ok(ProcessGroup::connect(
        &launch,
        &GroupOptions {
            timeout: Duration::from_secs(timeout_s),
            interface: None,
        },
    )?)
}

fn output(child: Child) -> Result<(bool, String)> {
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

#[test]
fn collectives_across_two_processes() -> Result<()> {
    if std::env::var(ROLE).as_deref() == Ok("collectives") {
        let g = join(60)?;
        let r = g.rank() as f32;
        // Sum and max of one value per rank.
        let t = Tensor::from_slice(&[r + 1.0, 10.0 * r]);
        g.allreduce(std::slice::from_ref(&t), ReduceOp::Sum)?;
        ensure!(Vec::<f32>::try_from(&t)? == vec![3.0, 10.0], "sum: {t}");
        let mut v = [r as f64];
        reduce_values(&g, &mut v, ReduceOp::Max)?;
        ensure!(v == [1.0], "max: {v:?}");
        // Rank 1's tensor reaches rank 0.
        let b = Tensor::from_slice(&[r, r]);
        g.broadcast(std::slice::from_ref(&b), 1)?;
        ensure!(
            Vec::<f32>::try_from(&b)? == vec![1.0, 1.0],
            "broadcast: {b}"
        );
        // Gradients of two shapes in small buckets.
        let a = Tensor::full([3, 2], r as f64 + 1.0, (tch::Kind::Float, tch::Device::Cpu));
        let c = Tensor::full([5], 2.0 * r as f64, (tch::Kind::Float, tch::Device::Cpu));
        let stats = allreduce_buckets(&g, &[a.shallow_clone(), c.shallow_clone()], 16)?;
        ensure!(stats.buckets == 2 && stats.bytes == 44, "{stats:?}");
        ensure!(
            Vec::<f32>::try_from(a.reshape([-1]))? == vec![3.0; 6],
            "a: {a}"
        );
        ensure!(Vec::<f32>::try_from(&c)? == vec![2.0; 5], "c: {c}");
        // Bytes of rank 0 (lengths differ per rank before the call).
        let mut bytes = vec![b'x'; 3 + g.rank()];
        if g.rank() == 0 {
            bytes = b"config = 1".to_vec();
        }
        broadcast_bytes(&g, &mut bytes, 0)?;
        ensure!(bytes == b"config = 1", "bytes: {bytes:?}");
        g.barrier()?;
        println!("rank {} ok", g.rank());
        return Ok(());
    }
    let port = free_port();
    let test = "collectives_across_two_processes";
    let children = [
        spawn_rank(test, "collectives", 0, 2, port)?,
        spawn_rank(test, "collectives", 1, 2, port)?,
    ];
    for (rank, child) in children.into_iter().enumerate() {
        let (ok, text) = output(child)?;
        ensure!(
            ok && text.contains(&format!("rank {rank} ok")),
            "rank {rank}:\n{text}"
        );
    }
    Ok(())
}

#[test]
fn a_killed_rank_is_named_by_the_survivor() -> Result<()> {
    if std::env::var(ROLE).as_deref() == Ok("survivor") {
        let g = join(30)?;
        let t = Tensor::from_slice(&[1f32]);
        g.allreduce(std::slice::from_ref(&t), ReduceOp::Sum)?;
        println!("ready");
        // The parent kills rank 1 now; the next collective must fail.
        let started = Instant::now();
        let mut result = Ok(());
        while started.elapsed() < Duration::from_secs(60) {
            result = g.allreduce(std::slice::from_ref(&t), ReduceOp::Sum);
            if result.is_err() {
                break;
            }
        }
        match result {
            Err(e @ Error::Collective { .. }) => {
                println!(
                    "failed as expected after {:.1}s: {e}",
                    started.elapsed().as_secs_f64()
                );
                if let Error::Collective { lost, .. } = &e {
                    ensure!(*lost == LostRanks::Ranks(vec![1]), "lost: {lost:?}");
                }
                return Ok(());
            }
            other => anyhow::bail!("expected a failed collective, got {other:?}"),
        }
    }
    if std::env::var(ROLE).as_deref() == Ok("victim") {
        let g = join(30)?;
        let t = Tensor::from_slice(&[1f32]);
        g.allreduce(std::slice::from_ref(&t), ReduceOp::Sum)?;
        println!("ready");
        // Keep answering until killed.
        loop {
            if g.allreduce(std::slice::from_ref(&t), ReduceOp::Sum)
                .is_err()
            {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
    }
    let port = free_port();
    let test = "a_killed_rank_is_named_by_the_survivor";
    let survivor = spawn_rank(test, "survivor", 0, 2, port)?;
    let mut victim = spawn_rank(test, "victim", 1, 2, port)?;
    let mut lines = BufReader::new(victim.stdout.take().context("victim stdout")?).lines();
    loop {
        match lines.next() {
            Some(line) => {
                if line?.contains("ready") {
                    break;
                }
            }
            None => anyhow::bail!("rank 1 ended before it was ready"),
        }
    }
    let killed = Instant::now();
    victim.kill()?; // SIGKILL
    victim.wait()?;
    let (ok, text) = output(survivor)?;
    ensure!(ok, "survivor:\n{text}");
    println!("{text}");
    ensure!(
        text.contains("lost rank 1"),
        "the error names the lost rank:\n{text}"
    );
    ensure!(
        killed.elapsed() < Duration::from_secs(30),
        "noticed within the timeout: {:?}",
        killed.elapsed()
    );
    Ok(())
}

#[test]
fn an_unreachable_master_is_a_clear_error() -> Result<()> {
    // Nothing listens on this port: rank 1 connects as a client and gives up.
    let launch = Launch {
        rank: 1,
        world_size: 2,
        local_rank: 1,
        local_world_size: 2,
        master_addr: "127.0.0.1".into(),
        master_port: free_port(),
        agent_store: false,
        restart_count: 0,
    };
    let started = Instant::now();
    let err = ProcessGroup::connect(
        &launch,
        &GroupOptions {
            timeout: Duration::from_secs(2),
            interface: None,
        },
    )
    .expect_err("nobody hosts the store");
    let text = err.to_string();
    assert!(matches!(err, Error::Connect { .. }), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", launch.master_port)),
        "{text}"
    );
    assert!(text.contains("MASTER_PORT"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}
