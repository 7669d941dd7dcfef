//! The allocator, and how memory goes back to the system.
//!
//! Allocation dominates Pingora's per-request profile and mimalloc measured faster (bench/).
//! Left to its defaults, though, it kept memory a gateway needs back: huge pages on its arena,
//! and the memory of connections that had ended, for good. Declared here rather than in the
//! binary so that everything about memory is in one room.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3's `mi_option_purge_delay` (its `mi_option_e` has no Rust name for it yet).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// At start, before the workers run.
///
/// Transparent huge pages: mimalloc asks for them on its arena (`MADV_HUGEPAGE`; built with
/// `no_thp` it does not, and this disables them for the whole process, best effort): where the
/// kernel has free huge pages an idle harp held 10 MB more (28 instead of 16 MiB RSS, varying
/// from start to start). A proxy's working set is small and scattered and gains nothing
/// measurable from 2 MiB pages, and admins compare RSS.
///
/// Purging: freed pages go back to the system as soon as they are free, instead of a second
/// later and only once the freeing thread allocates again (after a flood, the threads go idle
/// and never do). Pages are reused before they are freed, so steady traffic does not pay.
pub fn tune() {
    let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments (full-width, as the kernel reads
    // unsigned longs from the variadic call) and touches no memory of ours; mi_option_set sets
    // an integer option, any value valid for this one.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

/// Gives the system back what the calling thread's heap holds free, including what other
/// threads freed into it: a connection's task and stream are allocated by the thread that
/// accepted it and freed by the worker that served it, and mimalloc takes such frees back only
/// when the allocating thread allocates again or collects. An accept loop calls this once its
/// connections have ended. Cheap (the thread's own pages), never needed for correctness.
pub fn give_back_freed() {
    // SAFETY: collects the calling thread's heap; no pointers are involved.
    unsafe { libmimalloc_sys::mi_collect(false) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option index is mimalloc v3's purge delay: its default is 1000 ms, and setting it
    /// reads back.
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads an integer option.
        let before = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(before, 1000);
        tune();
        // SAFETY: as above.
        let after = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(after, 0);
    }
}
