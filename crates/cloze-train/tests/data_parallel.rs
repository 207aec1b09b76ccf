//! Data parallelism on real processes (Gloo over loopback): two ranks with
//! half the global batch each follow one process's loss curve, hold
//! bit-identical parameters after every step, write nothing but through
//! rank 0, and a two-rank checkpoint resumes with one rank or two and
//! continues the same data order. The test re-runs its own binary as the
//! ranks (`CLOZE_DP_ROLE`).

mod common;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use cloze_dist::{Collective, GroupOptions, Launch, ProcessGroup};
use cloze_train::config::{LoopConfig, TrainConfig};
use cloze_train::trainer::{Observer, Trainer};
use common::{model, torch_lock, Synthetic};
use tch::Tensor;

const ROLE: &str = "CLOZE_DP_ROLE";

/// The shared configuration: no dropout (ranks draw their own masks, which
/// one process cannot reproduce), a global batch of 8 in 2 micro-batches.
fn config(max_steps: u64) -> TrainConfig {
    let mut cfg = common::config(max_steps);
    cfg.model.hidden_dropout_prob = 0.0;
    cfg.model.attention_probs_dropout_prob = 0.0;
    cfg.checkpoint.every_steps = 3;
    cfg.checkpoint.keep_last = 10;
    cfg
}

fn data() -> Synthetic {
    Synthetic {
        n: 60,
        seed: 5,
        pairs: false,
    }
}

/// Records each step's global loss and a digest of every parameter's bits.
struct Steps {
    vars: Vec<Tensor>,
    lines: Vec<String>,
    /// Ask to stop (as Ctrl-C does) once this step is done.
    stop_at: Option<u64>,
    done: u64,
}

impl Steps {
    fn new(vs: &tch::nn::VarStore) -> Self {
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            vars: named.into_iter().map(|(_, t)| t).collect(),
            lines: Vec::new(),
            stop_at: None,
            done: 0,
        }
    }
    fn digest(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for v in &self.vars {
            let flat: Vec<f32> = Vec::try_from(v.reshape([-1])).unwrap_or_default();
            for x in flat {
                x.to_bits().hash(&mut h);
            }
        }
        h.finish()
    }
}

impl Observer for Steps {
    fn on_step(&mut self, step: u64, _max: u64, loss: f64, _lr: f64, _tps: f64) {
        let line = format!("step {step} loss {loss:.17e} params {:016x}", self.digest());
        println!("{line}");
        self.lines.push(line);
        self.done = step;
    }
    fn should_stop(&mut self) -> bool {
        self.stop_at.is_some_and(|s| self.done >= s)
    }
}

/// `(step, loss, digest)` of the lines a run printed.
fn parse(text: &str) -> Vec<(u64, f64, String)> {
    text.lines()
        .filter_map(|l| {
            // The test harness's "test NAME ... " may precede the first line.
            let l = &l[l.find("step ")?..];
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                ["step", s, "loss", x, "params", d] => {
                    Some((s.parse().ok()?, x.parse().ok()?, d.to_string()))
                }
                _ => None,
            }
        })
        .collect()
}

/// Body of a rank: train `RUN` (fresh, or resumed when `RESUME` is set) to
/// `STEPS` in a job of `WORLD_SIZE` ranks.
fn rank_main() -> Result<()> {
    let launch = Launch::from_env()?.context("launched as a rank")?;
    let steps: u64 = std::env::var("STEPS")?.parse()?;
    let run = PathBuf::from(std::env::var("RUN")?);
    let resume = std::env::var("RESUME").is_ok();
    let group = ProcessGroup::connect(
        &launch,
        &GroupOptions {
            timeout: Duration::from_secs(60),
            interface: None,
        },
    )?;
    tch::set_num_threads(1);
    let cfg = config(steps);
    let m = model(&cfg, false);
    let lc = LoopConfig::from_train(&cfg)?;
    let t = if group.is_writer() {
        if resume {
            Trainer::resume_loop(lc, &m, &m.vs, &run, None)?
        } else {
            Trainer::start(lc, &m, &m.vs, &run)?
        }
    } else {
        Trainer::follower(lc, &m, &m.vs, &run)?
    };
    let mut t = t.with_collective(&group, &m.vs)?;
    let mut obs = Steps::new(&m.vs);
    obs.stop_at = std::env::var("STOP_AT").ok().and_then(|s| s.parse().ok());
    t.run(&data(), None, &mut obs)?;
    println!("offset {} epoch {}", t.state().offset, t.state().epoch);
    Ok(())
}

/// Starts a job of `world` ranks on `run` and returns each rank's output.
fn job(
    test: &str,
    world: usize,
    run: &Path,
    follower_dir: &Path,
    steps: u64,
    resume: bool,
    stop_at: Option<u64>,
) -> Result<Vec<String>> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let children = (0..world)
        .map(|rank| {
            let dir = if rank == 0 { run } else { follower_dir };
            let mut c = Command::new(std::env::current_exe()?);
            c.args([test, "--exact", "--nocapture", "--test-threads=1"])
                .env(ROLE, "rank")
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env("STEPS", steps.to_string())
                .env("RUN", dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if resume {
                c.env("RESUME", "1");
            }
            if let Some(s) = stop_at {
                c.env("STOP_AT", s.to_string());
            }
            Ok(c.spawn()?)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut outs = Vec::new();
    for (rank, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "rank {rank} failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        outs.push(text);
    }
    Ok(outs)
}

/// One process over the whole global batch, in this process.
fn single(run: &Path, steps: u64, resume: bool) -> Result<Vec<(u64, f64, String)>> {
    let _g = torch_lock();
    tch::set_num_threads(1);
    let cfg = config(steps);
    let m = model(&cfg, false);
    let lc = LoopConfig::from_train(&cfg)?;
    let mut t = if resume {
        Trainer::resume_loop(lc, &m, &m.vs, run, None)?
    } else {
        Trainer::start(lc, &m, &m.vs, run)?
    };
    let mut obs = Steps::new(&m.vs);
    t.run(&data(), None, &mut obs)?;
    Ok(parse(&obs.lines.join("\n")))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-5 * a.abs().max(1.0)
}

fn entries(dir: &Path) -> Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    v.sort();
    Ok(v)
}

#[test]
fn two_ranks_follow_one_process_and_resume_with_one_or_two() -> Result<()> {
    if std::env::var(ROLE).is_ok() {
        return rank_main();
    }
    let test = "two_ranks_follow_one_process_and_resume_with_one_or_two";
    let tmp = tempfile::tempdir()?;
    let p = |s: &str| tmp.path().join(s);
    for d in ["follower", "follower2"] {
        std::fs::create_dir(p(d))?;
    }

    // The reference: one process, global batch 8, 24 steps.
    let reference = single(&p("one"), 24, false)?;
    ensure!(reference.len() == 24);

    // Two ranks, 4 examples each, 24 steps.
    let outs = job(test, 2, &p("two"), &p("follower"), 24, false, None)?;
    let (r0, r1) = (parse(&outs[0]), parse(&outs[1]));
    ensure!(r0.len() == 24 && r1.len() == 24, "{outs:?}");
    for ((a, b), one) in r0.iter().zip(&r1).zip(&reference) {
        ensure!(a.0 == b.0 && a.0 == one.0);
        ensure!(a.2 == b.2, "step {}: the ranks' parameters differ", a.0);
        ensure!(a.1 == b.1, "step {}: the ranks log different losses", a.0);
        ensure!(
            close(a.1, one.1),
            "step {}: two ranks {} vs one process {}",
            a.0,
            a.1,
            one.1
        );
    }
    ensure!(reference[23].1 < reference[0].1, "it learns");
    // Only rank 0 wrote; the follower's directory is untouched.
    ensure!(entries(&p("follower"))?.is_empty());
    ensure!(entries(&p("two"))?.contains(&"checkpoints".to_string()));

    // A two-rank run stopped after step 12 (as by Ctrl-C: a checkpoint is
    // written), continued to 24 by one process and by two.
    job(test, 2, &p("half"), &p("follower2"), 24, false, Some(12))?;
    let copy = p("half-copy");
    let status = Command::new("cp")
        .arg("-a")
        .arg(p("half"))
        .arg(&copy)
        .status()?;
    ensure!(status.success());
    let one_more = single(&p("half"), 24, true)?;
    let two_more = parse(&job(test, 2, &copy, &p("follower2"), 24, true, None)?[0]);
    ensure!(one_more.len() == 12 && two_more.len() == 12);
    for ((a, b), r) in one_more.iter().zip(&two_more).zip(&reference[12..]) {
        ensure!(a.0 == r.0 && b.0 == r.0);
        ensure!(
            close(a.1, r.1),
            "step {}: resumed by one {} vs reference {}",
            a.0,
            a.1,
            r.1
        );
        ensure!(
            close(b.1, r.1),
            "step {}: resumed by two {} vs reference {}",
            b.0,
            b.1,
            r.1
        );
    }
    ensure!(entries(&p("follower2"))?.is_empty());
    Ok(())
}
