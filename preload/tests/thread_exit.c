// Thread exit must not leak a handle slot, and many threads claiming at once
// must not break the claim. Run under LD_PRELOAD of the shim (preload/test.sh);
// reads the shim's state through magbuddy_preload_stats (see preload/src/lib.rs).
//
// 1. Waves of `slots_total` threads that each call strsignal and strerror_l
//    with unknown numbers (glibc keeps the message in a per-thread buffer
//    that __libc_thread_freeres frees after the pthread key destructors), do
//    some malloc/free and free the previous wave's blocks (allocated by
//    threads that exited); then odd threads exit while their even
//    neighbours free the odd threads' blocks, and all exit together, with a
//    thread sending them signals whose handler mallocs. After each wave the
//    slots held must be back to what the main thread holds, and a new thread
//    must get a handle.
// 2. Rounds of 128 threads released by a barrier that all malloc at once
//    (first-time claims, far more than 16 at a time): each must end up with
//    a handle or on the shared path because the pool is full, never "no
//    handle yet"; every free slot must be taken; none leaked afterwards.
// With THREAD_EXIT_KEYS=1 a constructor first creates 40 pthread keys, so the
// shim's key comes after the first 32 and glibc callocs the block that holds
// its value inside the shim's claim (the claim is re-entered).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim_stats.h"

static int failures;
#define CHECK(c, ...)                                                          \
  do {                                                                         \
    if (!(c)) {                                                                \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #c);             \
      fprintf(stderr, __VA_ARGS__);                                            \
      fputc('\n', stderr);                                                     \
      failures++;                                                              \
    }                                                                          \
  } while (0)

// --- 1. waves ---------------------------------------------------------------

#ifndef WAVES
#define WAVES 6
#endif
#define PER 8
static size_t wave_n;
static pthread_barrier_t wave_barrier, wave_allocated;
static locale_t c_locale;
static void *blocks[2][64 * PER]; // this wave's blocks, freed by the next wave
static atomic_long handler_mallocs;
static atomic_size_t wave_returned;

static void on_signal(int sig) {
  (void)sig;
  int e = errno;
  void *p = malloc(24);
  if (p) {
    *(volatile char *)p = 1;
    free(p);
    atomic_fetch_add(&handler_mallocs, 1);
  }
  errno = e;
}

struct wave_arg {
  int wave;
  int i;
};

static void *wave_thread(void *arg) {
  struct wave_arg *a = arg;
  pthread_barrier_wait(&wave_barrier);
  // Unknown numbers: glibc formats them into per-thread buffers (malloc).
  volatile size_t sink = strlen(strsignal(100 + a->i));
  sink += strlen(strerror_l(10000 + a->i, c_locale));
  void **mine = &blocks[a->wave & 1][a->i * PER];
  void **prev = &blocks[(a->wave + 1) & 1][a->i * PER];
  for (int k = 0; k < PER; k++) {
    mine[k] = malloc(8 + 24 * k);
    if (mine[k]) memset(mine[k], a->i, 8 + 24 * k);
    free(prev[k]); // the previous wave's, allocated by a thread that exited
    prev[k] = NULL;
  }
  (void)sink;
  pthread_barrier_wait(&wave_allocated);
  if (a->i & 1) {
    atomic_fetch_add(&wave_returned, 1); // from here on it runs its exit path
    return NULL;
  }
  // Free the odd neighbour's blocks while it exits (drops its handle).
  void **next = &blocks[a->wave & 1][(a->i + 1) * PER];
  for (int k = 0; k < PER; k++) {
    free(next[k]);
    next[k] = NULL;
  }
  atomic_fetch_add(&wave_returned, 1);
  return NULL;
}

static atomic_int signaller_stop;
static pthread_t signal_targets[64];

static void *signaller(void *arg) {
  (void)arg;
  while (!atomic_load(&signaller_stop))
    for (size_t i = 0; i < wave_n && !atomic_load(&signaller_stop); i++)
      pthread_kill(signal_targets[i], SIGUSR1);
  return NULL;
}

static void *new_thread(void *arg) {
  size_t *state = arg;
  void *p = malloc(40);
  *state = stats().thread;
  free(p);
  return NULL;
}

// The state of a new thread after one malloc (1: it has a handle).
static size_t new_thread_state(void) {
  pthread_t t;
  size_t state = 99;
  pthread_create(&t, NULL, new_thread, &state);
  pthread_join(t, NULL);
  return state;
}

static void test_waves(size_t base) {
  wave_n = stats().slots_total;
  if (wave_n > 64) wave_n = 64;
  pthread_t *th = signal_targets;
  struct wave_arg args[64];
  for (int w = 0; w < WAVES; w++) {
    pthread_barrier_init(&wave_barrier, NULL, (unsigned)wave_n);
    pthread_barrier_init(&wave_allocated, NULL, (unsigned)wave_n);
    for (size_t i = 0; i < wave_n; i++) {
      args[i] = (struct wave_arg){w, (int)i};
      if (pthread_create(&th[i], NULL, wave_thread, &args[i]) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        exit(1);
      }
    }
    // Signals hit the threads while they work and exit (key destructors,
    // __libc_thread_freeres), and stop before the first join.
    pthread_t sig;
    atomic_store(&signaller_stop, 0);
    pthread_create(&sig, NULL, signaller, NULL);
    while (atomic_load(&wave_returned) < wave_n) sched_yield();
    atomic_store(&wave_returned, 0);
    atomic_store(&signaller_stop, 1);
    pthread_join(sig, NULL);
    for (size_t i = 0; i < wave_n; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&wave_barrier);
    pthread_barrier_destroy(&wave_allocated);
    struct magbuddy_preload_stats s = stats();
    size_t state = new_thread_state();
    printf("thread exit: wave %d (%zu threads): %zu of %zu slots held after the joins "
           "(main thread: %zu); a new thread's state: %zu (1 = handle)\n",
           w, wave_n, s.slots_claimed, s.slots_total, base, state);
    CHECK(s.slots_claimed == base, "wave %d: %zu slots held, want %zu (leaked at exit)", w,
          s.slots_claimed, base);
    CHECK(state == 1, "wave %d: a new thread got state %zu, not a handle", w, state);
  }
  for (size_t i = 0; i < 64 * PER; i++) free(blocks[(WAVES + 1) & 1][i]);
}

// --- 2. many first-time claimers at once ------------------------------------

#define CLAIMERS 128
static pthread_barrier_t go, done;
static size_t claimer_state[CLAIMERS];

static void *claimer(void *arg) {
  size_t i = (size_t)arg;
  pthread_barrier_wait(&go);
  void *p[16];
  for (int k = 0; k < 16; k++) {
    p[k] = malloc(16 + 8 * k);
    if (p[k]) memset(p[k], (int)i, 16 + 8 * k);
  }
  claimer_state[i] = stats().thread;
  pthread_barrier_wait(&done); // all are alive while the states are read
  for (int k = 0; k < 16; k++) free(p[k]);
  return NULL;
}

static void test_claimers(size_t base, size_t total) {
  for (int round = 0; round < 3; round++) {
    pthread_barrier_init(&go, NULL, CLAIMERS);
    pthread_barrier_init(&done, NULL, CLAIMERS);
    pthread_t th[CLAIMERS];
    for (size_t i = 0; i < CLAIMERS; i++) {
      claimer_state[i] = 99;
      if (pthread_create(&th[i], NULL, claimer, (void *)i) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        exit(1);
      }
    }
    for (size_t i = 0; i < CLAIMERS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    pthread_barrier_destroy(&done);
    size_t n[4] = {0};
    size_t other = 0;
    for (size_t i = 0; i < CLAIMERS; i++) {
      if (claimer_state[i] < 4) n[claimer_state[i]]++;
      else other++;
    }
    struct magbuddy_preload_stats s = stats();
    printf("claimers: round %d: %d threads at once: %zu got a handle, %zu shared (pool "
           "full), %zu none yet, %zu other; %zu slots held after the joins\n",
           round, CLAIMERS, n[1], n[2], n[0], n[3] + other, s.slots_claimed);
    CHECK(n[0] == 0 && n[3] == 0 && other == 0, "round %d: threads left without a verdict",
          round);
    CHECK(n[1] == total - base, "round %d: %zu handles, want every free slot (%zu)", round,
          n[1], total - base);
    CHECK(s.slots_claimed == base, "round %d: %zu slots held, want %zu", round,
          s.slots_claimed, base);
  }
}

static pthread_key_t early_keys[40];
static int early_keys_made;

__attribute__((constructor(101))) static void make_early_keys(void) {
  if (!getenv("THREAD_EXIT_KEYS")) return;
  for (int i = 0; i < 40; i++) pthread_key_create(&early_keys[i], NULL);
  early_keys_made = 1;
}

// The first key with a value in this thread (the shim's, in the main thread).
static int first_key_set(void) {
  for (int k = 0; k < 1024; k++)
    if (pthread_getspecific((pthread_key_t)k)) return k;
  return -1;
}

int main(void) {
  if (shim_stats_init("thread_exit")) return 2;
  on_signal_run(SIGUSR1, on_signal);
  c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
  free(malloc(1)); // the main thread holds a handle from here on
  struct magbuddy_preload_stats s = stats();
  if (s.thread != 1) {
    fprintf(stderr, "thread_exit: the main thread has no handle (state %zu, %zu of %zu slots held)\n", s.thread, s.slots_claimed, s.slots_total);
    return 1;
  }
  size_t base = s.slots_claimed;
  int key = first_key_set();
  printf("thread exit: the shim's pthread key is %d%s\n", key,
         early_keys_made ? " (40 keys made first)" : "");
  if (early_keys_made) CHECK(key >= 32, "the shim's key %d is among the first 32", key);
  size_t first = new_thread_state();
  CHECK(first == 1, "a new thread got state %zu before any wave", first);
  CHECK(stats().slots_claimed == base, "a joined thread kept its slot");
  test_waves(base);
  test_claimers(base, s.slots_total);
  printf("thread exit: %ld mallocs from signal handlers\n", atomic_load(&handler_mallocs));
  freelocale(c_locale);
  if (failures) {
    fprintf(stderr, "thread_exit: %d check(s) failed\n", failures);
    return 1;
  }
  printf("thread exit: all checks passed\n");
  return 0;
}
