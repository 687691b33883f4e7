//! A persistent thread pool for data-parallel kernels.
//!
//! Kernels split their work into `n` independent tasks (usually ranges of output rows) and call
//! [`ThreadPool::run`]. The calling thread works too, so a pool of `threads` uses `threads - 1`
//! background workers. Workers spin briefly after each job (decode steps arrive back to back, a few
//! tens of microseconds apart) and then park on a condition variable, so an idle pool costs nothing.
//!
//! Dispatch allocates nothing: the job is a borrowed `&dyn Fn(usize)` published through a mutex,
//! and task indices are claimed from one atomic counter tagged with the job's generation, so a worker
//! that wakes late can never run an index of a newer job with an older closure.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// How many times a worker polls for a new job before parking.
const SPIN_ROUNDS: u32 = 20_000;

type JobFn = dyn Fn(usize) + Sync;

/// A type-erased pointer to the caller's closure. Only dereferenced while the caller is blocked in
/// [`ThreadPool::run`], which keeps the closure alive.
#[derive(Clone, Copy)]
struct JobPtr(*const JobFn);
// SAFETY: the pointee is `Sync`, and the pointer is only used while `run` keeps it alive.
unsafe impl Send for JobPtr {}
// SAFETY: as above; sharing the pointer only allows shared calls of a `Sync` closure.
unsafe impl Sync for JobPtr {}

struct Shared {
    /// Generation of the current job; bumped for each `run`.
    generation: AtomicU64,
    /// High 32 bits: generation tag; low 32 bits: next task index to claim.
    claim: AtomicU64,
    /// Tasks of the current job not yet finished.
    pending: AtomicUsize,
    /// The current job and its task count, read by workers once per generation.
    job: Mutex<Option<(u64, JobPtr, usize)>>,
    wake: Condvar,
    shutdown: AtomicBool,
    /// Set when a task panicked; `run` re-raises after the job completes.
    panicked: AtomicBool,
}

/// A fixed-size pool of worker threads. See the module docs.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
    /// Serialises concurrent `run` calls from different threads.
    dispatch: Mutex<()>,
    /// `run` is not re-entrant; a nested call runs serially on the calling thread.
    busy: AtomicBool,
    _not_sync_cell: UnsafeCell<()>,
}

// SAFETY: all shared state is in atomics/mutexes; the UnsafeCell marker holds no data.
unsafe impl Sync for ThreadPool {}

impl ThreadPool {
    /// A pool that runs jobs on `threads` threads in total (the caller plus `threads - 1` workers).
    /// `threads == 0` means the number of available CPUs.
    pub fn new(threads: usize) -> ThreadPool {
        let threads =
            if threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { threads };
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            claim: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            job: Mutex::new(None),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
        });
        let workers = (1..threads)
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("tern-worker-{i}"))
                    .spawn(move || worker_loop(&shared))
                    .expect("failed to spawn a tern worker thread")
            })
            .collect();
        ThreadPool {
            shared,
            workers,
            threads,
            dispatch: Mutex::new(()),
            busy: AtomicBool::new(false),
            _not_sync_cell: UnsafeCell::new(()),
        }
    }

    /// Total threads that execute a job (including the caller).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(i)` for every `i in 0..n`, spread over the pool; returns when all have finished.
    /// Panics in `f` are propagated to the caller after every task has run.
    pub fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        if n == 0 {
            return;
        }
        if n == 1 || self.threads == 1 || self.busy.swap(true, Ordering::Acquire) {
            // Serial path: one task, a single thread, or a nested call from inside a task.
            (0..n).for_each(f);
            return;
        }
        let _guard = self.dispatch.lock().unwrap_or_else(|e| e.into_inner());
        let sh = &*self.shared;
        let gen = sh.generation.load(Ordering::Relaxed) + 1;
        // SAFETY: the lifetime is erased only for publication; `run` does not return before
        // `pending` reaches zero, i.e. before every call of `f` has finished, and workers never
        // call a job of an older generation (the claim counter is tagged).
        let erased: &'static JobFn = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), &'static JobFn>(f) };
        let ptr = JobPtr(erased as *const JobFn);
        sh.pending.store(n, Ordering::Relaxed);
        sh.claim.store((gen & 0xFFFF_FFFF) << 32, Ordering::Relaxed);
        {
            let mut job = sh.job.lock().unwrap_or_else(|e| e.into_inner());
            *job = Some((gen, ptr, n));
            sh.generation.store(gen, Ordering::Release);
        }
        sh.wake.notify_all();
        run_tasks(sh, gen, ptr, n);
        let mut spins = 0u32;
        while sh.pending.load(Ordering::Acquire) != 0 {
            spins += 1;
            if spins < SPIN_ROUNDS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        self.busy.store(false, Ordering::Release);
        if sh.panicked.swap(false, Ordering::AcqRel) {
            panic!("a tern kernel task panicked");
        }
    }

    /// Splits `0..len` into about `threads * 4` contiguous chunks (each a multiple of `align`,
    /// except the last) and runs `f(start, end)` for each.
    pub fn for_range(&self, len: usize, align: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        let align = align.max(1);
        let units = len.div_ceil(align);
        if units == 0 {
            return;
        }
        let chunks = (self.threads * 4).min(units).max(1);
        let per = units.div_ceil(chunks);
        let chunks = units.div_ceil(per);
        self.run(chunks, &|c| {
            let start = c * per * align;
            let end = ((c + 1) * per * align).min(len);
            if start < end {
                f(start, end);
            }
        });
    }
}

fn run_tasks(sh: &Shared, gen: u64, job: JobPtr, n: usize) {
    let tag = (gen & 0xFFFF_FFFF) << 32;
    loop {
        let cur = sh.claim.load(Ordering::Acquire);
        if cur & 0xFFFF_FFFF_0000_0000 != tag {
            return; // a newer job started: this one is finished
        }
        let idx = (cur & 0xFFFF_FFFF) as usize;
        if idx >= n {
            return;
        }
        if sh.claim.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire).is_err() {
            continue;
        }
        // SAFETY: we claimed index `idx` of generation `gen`, so that job's `run` is still blocked
        // waiting for `pending` to reach zero and the closure is alive.
        let f = unsafe { &*job.0 };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(idx))).is_err() {
            sh.panicked.store(true, Ordering::Release);
        }
        sh.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

fn worker_loop(sh: &Shared) {
    let mut seen = 0u64;
    loop {
        // Spin for a new generation, then park.
        let mut spins = 0u32;
        loop {
            if sh.shutdown.load(Ordering::Acquire) {
                return;
            }
            if sh.generation.load(Ordering::Acquire) != seen {
                break;
            }
            spins += 1;
            if spins < SPIN_ROUNDS {
                std::hint::spin_loop();
                continue;
            }
            let job = sh.job.lock().unwrap_or_else(|e| e.into_inner());
            if sh.generation.load(Ordering::Acquire) == seen && !sh.shutdown.load(Ordering::Acquire) {
                drop(sh.wake.wait(job).unwrap_or_else(|e| e.into_inner()));
            }
            spins = 0;
        }
        let current = {
            let job = sh.job.lock().unwrap_or_else(|e| e.into_inner());
            *job
        };
        if let Some((gen, ptr, n)) = current {
            seen = gen;
            run_tasks(sh, gen, ptr, n);
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        {
            let _job = self.shared.job.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn runs_every_task_once() {
        let pool = ThreadPool::new(3);
        for n in [1usize, 2, 7, 100, 1000] {
            let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
            pool.run(n, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn many_back_to_back_jobs() {
        let pool = ThreadPool::new(2);
        let total = AtomicUsize::new(0);
        for _ in 0..5000 {
            pool.run(4, &|i| {
                total.fetch_add(i + 1, Ordering::Relaxed);
            });
        }
        assert_eq!(total.load(Ordering::Relaxed), 5000 * 10);
    }

    #[test]
    fn for_range_covers_exactly() {
        let pool = ThreadPool::new(2);
        let len = 1037;
        let hits: Vec<AtomicU32> = (0..len).map(|_| AtomicU32::new(0)).collect();
        pool.for_range(len, 16, &|s, e| {
            assert!(s % 16 == 0);
            for h in &hits[s..e] {
                h.fetch_add(1, Ordering::Relaxed);
            }
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
    }

    #[test]
    fn nested_run_is_serial_not_deadlock() {
        let pool = ThreadPool::new(2);
        let total = AtomicUsize::new(0);
        pool.run(4, &|_| {
            pool.run(3, &|_| {
                total.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(total.load(Ordering::Relaxed), 12);
    }

    #[test]
    fn panic_propagates() {
        let pool = ThreadPool::new(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(8, &|i| {
                if i == 5 {
                    panic!("boom");
                }
            })
        }));
        assert!(r.is_err());
        // The pool still works afterwards.
        let total = AtomicUsize::new(0);
        pool.run(8, &|_| {
            total.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(total.load(Ordering::Relaxed), 8);
    }
}
