//! How many worker threads a caller may ask for.
//!
//! Every operation runs on a rayon pool of the requested size. An unbounded request is a denial
//! of service (a million threads take minutes to spawn and drive the load average into the
//! thousands) and never faster: these kernels are memory-bound, so more threads than cores only
//! add scheduling. Requests above [`PER_CORE`] x the logical cores are therefore refused, before
//! any thread starts.

use crate::cube::{err, CubeError};

/// The most threads per logical core a caller may ask for.
pub const PER_CORE: usize = 4;

/// The logical cores this process may run on (affinity and cgroup quota included), at least 1.
pub fn logical_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most threads a caller may ask for on a machine of `cores` logical cores.
pub fn bound(cores: usize) -> usize {
    cores.max(1).saturating_mul(PER_CORE)
}

/// The most threads a caller may ask for on this machine.
pub fn max_threads() -> usize {
    bound(logical_cores())
}

/// The pool size for `requested` threads on `cores` logical cores: 0 means one per core; more
/// than [`bound`] is an error naming the request and the bound.
pub fn resolve(requested: usize, cores: usize) -> Result<usize, CubeError> {
    let cores = cores.max(1);
    if requested == 0 {
        return Ok(cores);
    }
    let max = bound(cores);
    if requested > max {
        return err(format!(
            "threads={requested} is more than the maximum of {max} ({PER_CORE}x the {cores} \
             logical cores); use 0 for one thread per core"
        ));
    }
    Ok(requested)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_one_per_core_and_the_bound_is_allowed() {
        assert_eq!(resolve(0, 6), Ok(6));
        assert_eq!(resolve(0, 0), Ok(1));
        assert_eq!(resolve(1, 2), Ok(1));
        assert_eq!(resolve(8, 2), Ok(8));
        assert!(max_threads() >= PER_CORE);
    }

    #[test]
    fn above_the_bound_is_an_error_naming_both() {
        let e = resolve(9, 2).unwrap_err();
        assert!(
            e.0.contains("threads=9 is more than the maximum of 8"),
            "{e}"
        );
        assert!(resolve(1_000_000, 16).is_err());
        assert!(resolve(usize::MAX, 1).is_err());
        assert_eq!(bound(usize::MAX), usize::MAX);
    }
}
