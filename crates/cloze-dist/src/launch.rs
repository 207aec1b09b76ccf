//! The launch contract: what torchrun (or `cloze launch`, or a scheduler)
//! tells each process through its environment.

use std::time::Duration;

use crate::error::{Error, Result};

/// torchrun's default `MASTER_PORT`.
pub const DEFAULT_PORT: u16 = 29500;

/// One process's place in a job, read from torchrun's variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// `RANK`: this process among all (0 = the one that writes).
    pub rank: usize,
    /// `WORLD_SIZE`: processes in the job.
    pub world_size: usize,
    /// `LOCAL_RANK`: this process among those of its machine.
    pub local_rank: usize,
    /// `LOCAL_WORLD_SIZE`: processes on this machine (torchrun sets it;
    /// without it, the world size is assumed to be on one machine).
    pub local_world_size: usize,
    /// `MASTER_ADDR`: where the rendezvous store listens.
    pub master_addr: String,
    /// `MASTER_PORT`.
    pub master_port: u16,
    /// `TORCHELASTIC_USE_AGENT_STORE=True`: torchrun's agent hosts the store
    /// and every rank, rank 0 included, connects as a client.
    pub agent_store: bool,
    /// `TORCHELASTIC_RESTART_COUNT`: how many times the job was restarted; a
    /// restarted job resumes from its last checkpoint.
    pub restart_count: u32,
}

/// A source of environment variables (the process's, or a map in tests).
pub trait Vars {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process's environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Vars for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Vars for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

fn parse<T: std::str::FromStr>(vars: &dyn Vars, var: &'static str) -> Result<Option<T>> {
    match vars.get(var) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| Error::Env {
            var,
            problem: format!("{v:?} is not a valid number"),
        }),
    }
}

fn required<T: std::str::FromStr>(vars: &dyn Vars, var: &'static str) -> Result<T> {
    parse(vars, var)?.ok_or(Error::Env {
        var,
        problem: "not set (torchrun and `cloze launch` set it with WORLD_SIZE)".into(),
    })
}

impl Launch {
    /// Reads the process's environment: `None` when `WORLD_SIZE` is unset
    /// (a plain single-process run).
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(&ProcessEnv)
    }

    /// [`Launch::from_env`] over any source of variables.
    pub fn from_vars(vars: &dyn Vars) -> Result<Option<Self>> {
        let Some(world_size) = parse::<usize>(vars, "WORLD_SIZE")? else {
            return Ok(None);
        };
        if world_size == 0 {
            return Err(Error::Env {
                var: "WORLD_SIZE",
                problem: "must be at least 1".into(),
            });
        }
        let rank: usize = required(vars, "RANK")?;
        if rank >= world_size {
            return Err(Error::Env {
                var: "RANK",
                problem: format!("{rank} is not below WORLD_SIZE={world_size}"),
            });
        }
        let local_rank = parse(vars, "LOCAL_RANK")?.unwrap_or(rank);
        let local_world_size = parse(vars, "LOCAL_WORLD_SIZE")?.unwrap_or(world_size);
        if local_world_size == 0 || local_rank >= local_world_size {
            return Err(Error::Env {
                var: "LOCAL_RANK",
                problem: format!("{local_rank} is not below LOCAL_WORLD_SIZE={local_world_size}"),
            });
        }
        let master_addr = vars
            .get("MASTER_ADDR")
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| "127.0.0.1".into());
        let master_port = parse(vars, "MASTER_PORT")?.unwrap_or(DEFAULT_PORT);
        let agent_store = vars
            .get("TORCHELASTIC_USE_AGENT_STORE")
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        let restart_count = parse(vars, "TORCHELASTIC_RESTART_COUNT")?.unwrap_or(0);
        Ok(Some(Self {
            rank,
            world_size,
            local_rank,
            local_world_size,
            master_addr,
            master_port,
            agent_store,
            restart_count,
        }))
    }

    /// Whether this process hosts the rendezvous store: rank 0, unless
    /// torchrun's agent hosts it.
    pub fn hosts_store(&self) -> bool {
        self.rank == 0 && !self.agent_store
    }

    /// libtorch threads for this rank when the user set none: the machine's
    /// cores shared evenly among the ranks on it (at least one).
    pub fn default_threads(&self, cores: usize) -> usize {
        (cores / self.local_world_size.max(1)).max(1)
    }
}

/// How a process joins its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOptions {
    /// How long joining, and any one collective, may wait for the other
    /// ranks before failing (torch's default is 30 minutes; a dead rank is
    /// usually noticed at once, because its sockets close).
    pub timeout: Duration,
    /// `GLOO_SOCKET_IFNAME`: the network interface Gloo binds to.
    pub interface: Option<String>,
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(600),
            interface: std::env::var("GLOO_SOCKET_IFNAME")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn no_world_size_is_a_single_process() {
        assert_eq!(Launch::from_vars(&vars(&[("RANK", "0")])).unwrap(), None);
    }

    #[test]
    fn torchrun_variables_are_read() {
        let l = Launch::from_vars(&vars(&[
            ("WORLD_SIZE", "4"),
            ("RANK", "3"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("MASTER_ADDR", "10.0.0.7"),
            ("MASTER_PORT", "29400"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            l,
            Launch {
                rank: 3,
                world_size: 4,
                local_rank: 1,
                local_world_size: 2,
                master_addr: "10.0.0.7".into(),
                master_port: 29400,
                agent_store: true,
                restart_count: 2,
            }
        );
        assert!(!l.hosts_store());
        assert_eq!(l.default_threads(16), 8);
    }

    #[test]
    fn defaults_put_every_rank_on_this_machine() {
        let l = Launch::from_vars(&vars(&[("WORLD_SIZE", "2"), ("RANK", "0")]))
            .unwrap()
            .unwrap();
        assert_eq!((l.local_rank, l.local_world_size), (0, 2));
        assert_eq!(
            (l.master_addr.as_str(), l.master_port),
            ("127.0.0.1", DEFAULT_PORT)
        );
        assert!(l.hosts_store());
        assert_eq!(l.default_threads(1), 1);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = Launch::from_vars(&vars(&[("WORLD_SIZE", "2")])).unwrap_err();
        assert!(e.to_string().contains("RANK"), "{e}");
        let e = Launch::from_vars(&vars(&[("WORLD_SIZE", "2"), ("RANK", "2")])).unwrap_err();
        assert!(e.to_string().contains("not below WORLD_SIZE=2"), "{e}");
        let e = Launch::from_vars(&vars(&[
            ("WORLD_SIZE", "2"),
            ("RANK", "0"),
            ("MASTER_PORT", "http"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("MASTER_PORT"), "{e}");
    }
}
