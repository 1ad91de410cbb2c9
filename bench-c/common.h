/* common.h -- shared helpers for magbuddy's own C versions of the
 * mimalloc-bench programs (bench-c/).
 *
 * Every program:
 *   - takes its thread count as the first argument;
 *   - draws every random choice from the seeded generator below (per thread,
 *     seeded from the program's seed and the thread's index), never from
 *     addresses, timing or scheduling;
 *   - prints exactly one summary line on stdout, a function of its
 *     parameters and seed only, so it must be byte-identical under every
 *     allocator and on every run;
 *   - prints "time: <seconds>" on stderr (the runner times the whole process
 *     itself and ignores this).
 * A program that finds a block whose contents were changed behind its back
 * (a tag it wrote is different when it reads it back) prints the count of
 * such errors in its summary line, so the line differs and the runner fails.
 */
#ifndef BENCH_C_COMMON_H
#define BENCH_C_COMMON_H

#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* splitmix64: seeds, and a cheap mixer for checksums. */
static inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/* xorshift64* generator, one per thread. */
typedef struct { uint64_t s; } rng_t;
static inline void rng_seed(rng_t *r, uint64_t seed, uint64_t stream) {
  r->s = mix64(seed * 0x100000001b3ULL ^ mix64(stream + 1));
  if (r->s == 0) r->s = 1;
}
static inline uint64_t rng_next(rng_t *r) {
  uint64_t x = r->s;
  x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
  r->s = x;
  return x * 0x2545f4914f6cdd1dULL;
}
/* uniform in [0, n) (n > 0); the tiny modulo bias does not matter here. */
static inline uint64_t rng_below(rng_t *r, uint64_t n) { return (rng_next(r) >> 11) % n; }
/* true with probability pct percent. */
static inline int rng_chance(rng_t *r, unsigned pct) { return rng_below(r, 100) < pct; }
/* uniform double in [0, 1). */
static inline double rng_unit(rng_t *r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

static inline double now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (!p) { fprintf(stderr, "malloc(%zu) returned NULL\n", n); exit(3); }
  return p;
}

static inline long arg_long(int argc, char **argv, int i, long dflt) {
  if (argc > i) {
    char *end;
    long v = strtol(argv[i], &end, 10);
    if (*end || v < 0) { fprintf(stderr, "bad argument %d: %s\n", i, argv[i]); exit(2); }
    return v;
  }
  return dflt;
}

/* Run fn(arg_i) on n threads, arg_i = base + i*stride, and join them. */
static inline void run_threads(int n, void *(*fn)(void *), void *base, size_t stride) {
  pthread_t *t = xmalloc(sizeof(pthread_t) * (size_t)n);
  for (int i = 0; i < n; i++) {
    int e = pthread_create(&t[i], NULL, fn, (char *)base + (size_t)i * stride);
    if (e) { fprintf(stderr, "pthread_create failed: %d\n", e); exit(3); }
  }
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  free(t);
}

static inline void report_time(double t0) { fprintf(stderr, "time: %.3f\n", now_sec() - t0); }

#endif
