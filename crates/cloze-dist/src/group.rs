//! [`ProcessGroup`]: a c10d TCPStore plus a Gloo process group, through the
//! C++ shim in `csrc/shim.cpp`.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::time::{Duration, Instant};

use tch::Tensor;

use crate::collective::{Collective, ReduceOp};
use crate::error::{Error, LostRanks, Result};
use crate::launch::{GroupOptions, Launch};

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn cloze_dist_connect(
        host: *const c_char,
        port: u16,
        is_server: c_int,
        prefix: *const c_char,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        iface: *const c_char,
        device_host: *const c_char,
        err: *mut *mut c_char,
    ) -> *mut c_void;
    fn cloze_dist_free(g: *mut c_void);
    fn cloze_dist_free_message(s: *mut c_char);
    fn cloze_dist_allreduce(
        g: *mut c_void,
        tensors: *mut *mut c_void,
        n: usize,
        op: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    fn cloze_dist_broadcast(
        g: *mut c_void,
        tensors: *mut *mut c_void,
        n: usize,
        root: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    fn cloze_dist_barrier(g: *mut c_void, err: *mut *mut c_char) -> c_int;
    fn cloze_dist_store_set(g: *mut c_void, key: *const c_char, err: *mut *mut c_char) -> c_int;
    fn cloze_dist_store_check(
        g: *mut c_void,
        key: *const c_char,
        present: *mut c_int,
        err: *mut *mut c_char,
    ) -> c_int;
}

/// Takes the shim's malloc'd message (if any) into a `String`.
fn take_message(err: *mut c_char) -> String {
    if err.is_null() {
        return "unknown error".into();
    }
    // SAFETY: the shim hands out a NUL-terminated string from malloc, which
    // is read once and then freed by the shim's own free.
    let s = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: `err` came from the shim's malloc and is freed exactly once.
    unsafe { cloze_dist_free_message(err) };
    s
}

fn c_string(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::BadInput(format!("{what} contains a NUL byte")))
}

/// This process's membership of a job: the store and the Gloo group.
///
/// Collectives block until every rank has called the same one with tensors
/// of the same shapes, or until the timeout; a rank that died makes them
/// fail at once (its sockets close) with an error naming it.
pub struct ProcessGroup {
    raw: *mut c_void,
    rank: usize,
    world_size: usize,
    /// How long the survivors of a failure wait for each other to check in.
    check_in: Duration,
    /// Failures seen so far (each gets its own check-in keys).
    failures: std::cell::Cell<u32>,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .finish_non_exhaustive()
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `cloze_dist_connect` and is freed once.
        unsafe { cloze_dist_free(self.raw) };
    }
}

impl ProcessGroup {
    /// Joins the job `launch` describes: hosts the store (rank 0 without an
    /// agent store) or connects to it, then forms the Gloo group. Keys live
    /// under a prefix of the restart count, so a restarted job never reads
    /// the previous attempt's keys from a store that outlived it.
    pub fn connect(launch: &Launch, opts: &GroupOptions) -> Result<Self> {
        let host = c_string(&launch.master_addr, "MASTER_ADDR")?;
        let prefix = c_string(
            &format!("cloze/attempt_{}/", launch.restart_count),
            "prefix",
        )?;
        let iface = c_string(
            opts.interface.as_deref().unwrap_or(""),
            "GLOO_SOCKET_IFNAME",
        )?;
        // On one machine (a loopback master) Gloo binds to loopback, so it
        // works without a resolvable hostname; across machines it binds to
        // the address of this machine's hostname, as torch does.
        let loopback = matches!(
            launch.master_addr.as_str(),
            "127.0.0.1" | "localhost" | "::1"
        );
        let device_host = c_string(if loopback { "127.0.0.1" } else { "" }, "host")?;
        let timeout_ms = i64::try_from(opts.timeout.as_millis()).unwrap_or(i64::MAX);
        let rank = c_int::try_from(launch.rank)
            .map_err(|_| Error::BadInput(format!("rank {} is too large", launch.rank)))?;
        let world = c_int::try_from(launch.world_size).map_err(|_| {
            Error::BadInput(format!("world size {} is too large", launch.world_size))
        })?;
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: every pointer is a live NUL-terminated string for the call;
        // the shim catches every exception and reports it through `err`.
        let raw = unsafe {
            cloze_dist_connect(
                host.as_ptr(),
                launch.master_port,
                c_int::from(launch.hosts_store()),
                prefix.as_ptr(),
                rank,
                world,
                timeout_ms,
                iface.as_ptr(),
                device_host.as_ptr(),
                &mut err,
            )
        };
        if raw.is_null() {
            return Err(Error::Connect {
                addr: launch.master_addr.clone(),
                port: launch.master_port,
                rank: launch.rank,
                world_size: launch.world_size,
                timeout: opts.timeout,
                message: take_message(err),
            });
        }
        Ok(Self {
            raw,
            rank: launch.rank,
            world_size: launch.world_size,
            check_in: opts.timeout.min(Duration::from_secs(5)),
            failures: std::cell::Cell::new(0),
        })
    }

    /// Turns a failed collective's status into an error naming the ranks
    /// that are gone.
    fn check(&self, op: &'static str, status: c_int, err: *mut c_char) -> Result<()> {
        if status == 0 {
            return Ok(());
        }
        let message = take_message(err);
        Err(Error::Collective {
            op,
            rank: self.rank,
            lost: self.find_lost(),
            message,
        })
    }

    /// After a failure: every survivor sets its key at the store and waits a
    /// few seconds for the others'; those that never appear are the lost
    /// ranks. If the store itself is unreachable, its host is gone.
    fn find_lost(&self) -> LostRanks {
        let n = self.failures.get();
        self.failures.set(n + 1);
        let key = |r: usize| format!("failure_{n}/alive_{r}");
        if self.store_set(&key(self.rank)).is_err() {
            return LostRanks::StoreHost;
        }
        let deadline = Instant::now() + self.check_in;
        loop {
            let mut missing = Vec::new();
            for r in 0..self.world_size {
                match self.store_check(&key(r)) {
                    Ok(true) => {}
                    Ok(false) => missing.push(r),
                    Err(_) => return LostRanks::StoreHost,
                }
            }
            if missing.is_empty() {
                return LostRanks::None;
            }
            if Instant::now() >= deadline {
                return LostRanks::Ranks(missing);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn store_set(&self, key: &str) -> Result<()> {
        let key = c_string(key, "key")?;
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: `raw` is live; `key` outlives the call.
        let status = unsafe { cloze_dist_store_set(self.raw, key.as_ptr(), &mut err) };
        if status == 0 {
            Ok(())
        } else {
            Err(Error::BadInput(take_message(err)))
        }
    }

    fn store_check(&self, key: &str) -> Result<bool> {
        let key = c_string(key, "key")?;
        let mut err: *mut c_char = std::ptr::null_mut();
        let mut present: c_int = 0;
        // SAFETY: `raw` is live; `key` and `present` outlive the call.
        let status =
            unsafe { cloze_dist_store_check(self.raw, key.as_ptr(), &mut present, &mut err) };
        if status == 0 {
            Ok(present != 0)
        } else {
            Err(Error::BadInput(take_message(err)))
        }
    }
}

/// The C++ tensor handles of `tensors`, checked to be dense.
fn handles(tensors: &[Tensor]) -> Result<Vec<*mut c_void>> {
    tensors
        .iter()
        .map(|t| {
            if t.is_contiguous() {
                Ok(t.as_ptr() as *mut c_void)
            } else {
                Err(Error::BadInput(
                    "collectives need contiguous tensors".into(),
                ))
            }
        })
        .collect()
}

impl Collective for ProcessGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn allreduce(&self, tensors: &[Tensor], op: ReduceOp) -> Result<()> {
        let mut h = handles(tensors)?;
        let mut err: *mut c_char = std::ptr::null_mut();
        let op = match op {
            ReduceOp::Sum => 0,
            ReduceOp::Max => 1,
            ReduceOp::Min => 2,
        };
        // SAFETY: the handles point at tensors borrowed for the whole call;
        // the shim takes new references and writes the results in place.
        let status =
            unsafe { cloze_dist_allreduce(self.raw, h.as_mut_ptr(), h.len(), op, &mut err) };
        self.check("allreduce", status, err)
    }

    fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        let mut h = handles(tensors)?;
        let root = c_int::try_from(root)
            .map_err(|_| Error::BadInput(format!("root rank {root} is too large")))?;
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: as in `allreduce`.
        let status =
            unsafe { cloze_dist_broadcast(self.raw, h.as_mut_ptr(), h.len(), root, &mut err) };
        self.check("broadcast", status, err)
    }

    fn barrier(&self) -> Result<()> {
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: `raw` is live.
        let status = unsafe { cloze_dist_barrier(self.raw, &mut err) };
        self.check("barrier", status, err)
    }
}
