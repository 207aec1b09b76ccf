//! Data-parallel training across processes and machines on libtorch's own
//! distributed engine, c10d: a TCPStore for the rendezvous and a Gloo
//! process group for the collectives, reached through a small C++ shim
//! (`csrc/shim.cpp`, compiled by the build script against the provisioned
//! libtorch). No networking of our own.
//!
//! Layer: beside `cloze-models` (it needs tch and nothing of cloze);
//! `cloze-train` drives its [`Collective`] seam and the driver reads the
//! launch contract ([`Launch`]) and joins the group ([`ProcessGroup`]).
//!
//! ```
//! use cloze_dist::{reduce_values, Collective, ReduceOp, Solo};
//! // A single process is a job of one rank: collectives are the identity.
//! let mut losses = [2.5, 1.0];
//! reduce_values(&Solo, &mut losses, ReduceOp::Sum)?;
//! assert_eq!((Solo.rank(), Solo.world_size(), losses), (0, 1, [2.5, 1.0]));
//! # Ok::<(), cloze_dist::Error>(())
//! ```
//!
//! Two processes started with `WORLD_SIZE=2 RANK=r MASTER_ADDR=127.0.0.1
//! MASTER_PORT=29500` each call `ProcessGroup::connect(&Launch::from_env()?.unwrap(),
//! &GroupOptions::default())` and then the same collectives in the same order.

mod collective;
mod error;
mod group;
mod launch;

pub use collective::{
    allreduce_buckets, broadcast_all, broadcast_bytes, broadcast_values, reduce_values,
    AllreduceStats, Collective, ReduceOp, Solo,
};
pub use error::{Error, LostRanks, Result};
pub use group::ProcessGroup;
pub use launch::{GroupOptions, Launch, ProcessEnv, Vars, DEFAULT_PORT};
