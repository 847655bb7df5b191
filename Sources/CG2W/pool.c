// A fixed pool of worker threads for the forward pass, built for many short parallel sections:
// decoding one GPT-2 124M token runs ~60 of them, each 30-300 us. Waking a sleeping thread costs
// tens of microseconds (measured: libdispatch's concurrentPerform on Linux starts its second
// thread ~100 us late, so a 100 us section runs almost serially), so after a section the workers
// spin (with `pause`) for a while before they sleep on a condition variable.
//
// One word of state, (epoch:24 | jobs:20 | next:20), is published by the caller and claimed with
// compare-and-swap: a job is taken only from the run the word describes, so a worker that wakes
// late never takes a job from a finished run, and the caller (worker 0) takes the jobs of a worker
// that has not woken yet instead of waiting for it.
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE  // sched_getaffinity
#endif
#include "cg2w.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

enum { JOB_BITS = 20, EPOCH_SHIFT = 2 * JOB_BITS };
#define JOB_MASK ((UINT64_C(1) << JOB_BITS) - 1)
// How long an idle worker spins before it sleeps: longer than the serial gaps inside a forward
// pass and between generated tokens (sampling, printing), short enough not to burn a core for long.
// With more threads than CPUs, spinning would take the CPU from the threads with work (measured:
// 64 threads on 2 CPUs decoded 60x slower), so then workers sleep at once and the caller yields.
#define SPIN_NANOSECONDS 3000000LL

struct g2w_pool {
    _Alignas(64) _Atomic uint64_t state;  // epoch | jobs | next
    _Alignas(64) _Atomic size_t done;     // jobs finished in the current run
    _Alignas(64) g2w_pool_task task;      // set before a run is published, read after a claim
    void *context;
    _Atomic int sleepers;
    _Atomic int stopping;
    long long spin_ns;  // SPIN_NANOSECONDS, or 0 when there are more threads than CPUs
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    pthread_mutex_t run_mutex;  // one run at a time: sessions on several threads may share a pool
    size_t threads;  // including the caller
    pthread_t *handles;
    struct worker_arg { struct g2w_pool *pool; size_t index; } *args;
};

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

// Claims and runs jobs of the run described by the state word until none is left; returns how many.
static size_t run_jobs(struct g2w_pool *p, size_t worker) {
    size_t ran = 0;
    uint64_t s = atomic_load_explicit(&p->state, memory_order_acquire);
    for (;;) {
        uint64_t next = s & JOB_MASK, jobs = (s >> JOB_BITS) & JOB_MASK;
        if (next >= jobs) break;
        if (!atomic_compare_exchange_weak_explicit(&p->state, &s, s + 1, memory_order_acq_rel, memory_order_acquire)) continue;
        p->task(p->context, (size_t)next, worker);  // the run cannot end before this job is done
        ran++;
        s = atomic_load_explicit(&p->state, memory_order_acquire);
    }
    return ran;
}

static void *worker_main(void *arg) {
    struct worker_arg *a = arg;
    struct g2w_pool *p = a->pool;
    uint64_t seen = 0;  // the epoch at creation (a run may be published before this thread starts)
    for (;;) {
        long long spin_start = now_ns();
        unsigned spins = 0;
        while ((atomic_load_explicit(&p->state, memory_order_acquire) >> EPOCH_SHIFT) == seen) {
            cpu_relax();
            if (++spins % 1024 == 0 && p->spin_ns) sched_yield();  // ~50 us: let another runnable thread have this CPU
            if (p->spin_ns == 0 || (spins % 1024 == 0 && now_ns() - spin_start > p->spin_ns)) {
                pthread_mutex_lock(&p->mutex);
                atomic_fetch_add(&p->sleepers, 1);
                while ((atomic_load(&p->state) >> EPOCH_SHIFT) == seen) pthread_cond_wait(&p->wake, &p->mutex);
                atomic_fetch_sub(&p->sleepers, 1);
                pthread_mutex_unlock(&p->mutex);
            }
        }
        seen = atomic_load(&p->state) >> EPOCH_SHIFT;
        if (atomic_load(&p->stopping)) return NULL;
        size_t ran = run_jobs(p, a->index);
        if (ran) atomic_fetch_add_explicit(&p->done, ran, memory_order_release);
    }
}

// Publishes a run of `jobs` jobs (a new epoch) and wakes sleeping workers.
static void publish(struct g2w_pool *p, size_t jobs) {
    uint64_t epoch = (atomic_load(&p->state) >> EPOCH_SHIFT) + 1;
    atomic_store(&p->state, epoch << EPOCH_SHIFT | (uint64_t)jobs << JOB_BITS);  // next = 0; the epoch wraps at 2^24
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mutex);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mutex);
    }
}

// CPUs this process may run on (its affinity mask where the system has one).
static size_t available_cpus(void) {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) { int n = CPU_COUNT(&set); if (n > 0) return (size_t)n; }
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (size_t)n : 1;
}

g2w_pool *g2w_pool_create(size_t threads) {
    struct g2w_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->threads = threads < 1 ? 1 : threads;
    p->spin_ns = p->threads <= available_cpus() ? SPIN_NANOSECONDS : 0;
    pthread_mutex_init(&p->mutex, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_mutex_init(&p->run_mutex, NULL);
    atomic_init(&p->state, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->stopping, 0);
    size_t extra = p->threads - 1;
    p->handles = calloc(extra ? extra : 1, sizeof *p->handles);
    p->args = calloc(extra ? extra : 1, sizeof *p->args);
    if (!p->handles || !p->args) { free(p->handles); free(p->args); free(p); return NULL; }
    for (size_t i = 0; i < extra; i++) {
        p->args[i] = (struct worker_arg){p, i + 1};
        if (pthread_create(&p->handles[i], NULL, worker_main, &p->args[i]) != 0) {
            p->threads = i + 1;  // run with the threads that did start
            break;
        }
    }
    return p;
}

size_t g2w_pool_threads(const g2w_pool *p) { return p->threads; }

void g2w_pool_destroy(g2w_pool *p) {
    if (!p) return;
    atomic_store(&p->stopping, 1);
    publish(p, 0);
    for (size_t i = 0; i + 1 < p->threads; i++) pthread_join(p->handles[i], NULL);
    pthread_mutex_destroy(&p->mutex);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->run_mutex);
    free(p->handles);
    free(p->args);
    free(p);
}

void g2w_pool_run(g2w_pool *p, size_t jobs, g2w_pool_task task, void *context) {
    if (jobs == 0) return;
    if (p->threads == 1 || jobs == 1 || jobs > JOB_MASK) {
        for (size_t j = 0; j < jobs; j++) task(context, j, 0);
        return;
    }
    // Callers on other threads wait for this run to end (uncontended: ~20 ns per run, ~60 runs per
    // decoded token). A task must not start a run on the same pool.
    pthread_mutex_lock(&p->run_mutex);
    p->task = task;
    p->context = context;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    publish(p, jobs);  // seq_cst: orders the writes above before the claims
    size_t ran = run_jobs(p, 0);
    if (ran) atomic_fetch_add_explicit(&p->done, ran, memory_order_relaxed);
    for (unsigned spins = 1; atomic_load_explicit(&p->done, memory_order_acquire) < jobs; spins++) {
        if (p->spin_ns && spins % 1024 != 0) cpu_relax(); else sched_yield();
    }
    pthread_mutex_unlock(&p->run_mutex);
}
