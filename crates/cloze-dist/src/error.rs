//! Errors of the distributed layer.

use std::time::Duration;

/// What can go wrong setting up or running collectives.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A launch variable (`RANK`, `WORLD_SIZE`, ...) is missing or malformed.
    #[error("launch environment: {var}: {problem}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The rendezvous store could not be reached or hosted, or the process
    /// group could not be formed, within the timeout.
    #[error(
        "could not join the process group as rank {rank} of {world_size} through the store at \
         {addr}:{port} within {timeout:?}: {message}. Check that rank 0 is running, that \
         MASTER_ADDR and MASTER_PORT are the same on every rank and reachable from this machine, \
         and that the port is free on the master"
    )]
    Connect {
        /// `MASTER_ADDR`.
        addr: String,
        /// `MASTER_PORT`.
        port: u16,
        /// This process's rank.
        rank: usize,
        /// The number of ranks.
        world_size: usize,
        /// The timeout.
        timeout: Duration,
        /// libtorch's message.
        message: String,
    },
    /// A collective failed: usually a rank died or stopped answering.
    #[error("{op} failed on rank {rank}: {lost}; c10d said: {message}")]
    Collective {
        /// `allreduce`, `broadcast` or `barrier`.
        op: &'static str,
        /// This process's rank.
        rank: usize,
        /// Which ranks are gone, as far as the survivors can tell.
        lost: LostRanks,
        /// libtorch's message.
        message: String,
    },
    /// Tensors handed to a collective are not what it needs.
    #[error("{0}")]
    BadInput(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// The ranks a failed collective lost, found by the survivors checking in
/// at the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostRanks {
    /// These ranks did not check in.
    Ranks(Vec<usize>),
    /// The store itself is gone: it lives in rank 0's process (or the
    /// torchrun agent's), which has died.
    StoreHost,
    /// Every rank checked in: the failure was not a lost rank (a timeout of
    /// a slow rank, a network error).
    None,
}

impl std::fmt::Display for LostRanks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LostRanks::Ranks(r) if r.len() == 1 => {
                write!(f, "lost rank {} (it exited or stopped answering)", r[0])
            }
            LostRanks::Ranks(r) => {
                let list: Vec<String> = r.iter().map(|x| x.to_string()).collect();
                write!(
                    f,
                    "lost ranks {} (they exited or stopped answering)",
                    list.join(", ")
                )
            }
            LostRanks::StoreHost => write!(
                f,
                "lost rank 0, which hosts the rendezvous store (it exited or stopped answering)"
            ),
            LostRanks::None => write!(f, "no rank is missing (a timeout or network error)"),
        }
    }
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
