//! Process-wide settings of the CPU runtime that make libtorch training faster.

/// Tunes glibc's allocator for libtorch's allocation pattern on the CPU.
///
/// A training step allocates and frees the same large activation and gradient
/// buffers (megabytes each) every step. With glibc's defaults every buffer
/// above the dynamic mmap threshold is a fresh `mmap`, so each step pays page
/// faults and kernel page zeroing for memory it just returned; that was 15-20%
/// of a BERT training step on two cores here. Raising the mmap threshold to its
/// maximum (32 MiB on 64-bit glibc) and keeping freed memory in the heap
/// (trim threshold and top pad) lets the next step reuse the same pages. The
/// price is a peak resident set a few percent higher.
///
/// Call it once at program start, before libtorch allocates. It changes global
/// state of the process, so only binaries (the `cloze` driver, benches) call
/// it, never a library on its own. Returns `false` where it does not apply
/// (not glibc) or glibc refused a value.
pub fn tune_cpu_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        const TRIM_THRESHOLD: libc::c_int = 1 << 30;
        const TOP_PAD: libc::c_int = 256 << 20;
        // SAFETY: mallopt only adjusts allocator parameters; it takes plain integers
        // and is safe to call at any time (glibc serialises it with the arena locks).
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
                && libc::mallopt(libc::M_TOP_PAD, TOP_PAD) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Makes the CPU treat subnormal floats as zero (x86-64 FTZ and DAZ bits) on
/// the calling thread and every thread it starts afterwards.
///
/// Adam's first moment of an embedding row decays by `beta1` every step its
/// token is absent, so after a few hundred steps a share of the moments sits
/// in the subnormal range, where each arithmetic operation costs tens of times
/// a normal one: the demo's training throughput sank from 39 k to 21-27 k
/// tokens/s after step 1,000. With subnormals flushed to zero the first 1,800
/// demo steps took 191 s instead of 224 s, with the same losses to the last
/// bit (what `torch.set_flush_denormal(True)` does in PyTorch).
///
/// Threads inherit the setting when they are created, so call it first thing
/// in `main`, before libtorch starts its thread pool. Like
/// [`tune_cpu_allocator`] it is process state for binaries to set. Returns
/// `false` on other architectures.
pub fn flush_denormals() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        const FTZ: u32 = 1 << 15;
        const DAZ: u32 = 1 << 6;
        // SAFETY: writing MXCSR only changes how this thread rounds subnormal
        // results and inputs; every x86-64 CPU has SSE2 and both bits.
        #[allow(unsafe_code, deprecated)]
        unsafe {
            use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
            _mm_setcsr(_mm_getcsr() | FTZ | DAZ);
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
