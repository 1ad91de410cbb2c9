/* glibc-thread.c -- after glibc's benchtests/bench-malloc-thread.c, as
 * mimalloc-bench runs it: `glibc-thread <threads>` (working set 1024 blocks
 * per thread, sizes 4..32768 bytes with an inverse-square distribution,
 * seed 88, 2 s per run).
 *
 * What it does: a table of 8000 block sizes drawn from the inverse-square
 * distribution on [4, 32768] (so most blocks are small) and a table of 4096
 * slot offsets in [0, 1024) are made once from the seed. Each thread owns a
 * working set of 1024 slots and, <iters> times, takes the next offset and
 * the next size from the tables, frees the block in that slot and allocates
 * a new one of that size, writing every byte of it. Every thread walks the
 * same tables from the start, as in the original. No object crosses threads.
 *
 * Relation to the original: same tables' sizes, distribution, working set and
 * per-byte writes; the original runs for 2 s and counts iterations, this one
 * does a fixed <iters> per thread and is timed. The tables come from this
 * program's generator rather than rand(). The checksum sums a byte read back
 * from each block before it is freed, plus the sizes.
 *
 * Usage: glibc-thread <threads> [iters=2000000] [seed=88]
 */
#include "common.h"
#include <math.h>

#define WORKING_SET 1024
#define NUM_SIZES 8000
#define NUM_OFFSETS (WORKING_SET * 4)
#define MIN_SIZE 4
#define MAX_SIZE 32768

static unsigned sizes[NUM_SIZES], offsets[NUM_OFFSETS];
static long iters;

typedef struct { uint64_t sum, errors; char pad[64]; } targ_t;

static void *worker(void *arg) {
  targ_t *t = arg;
  unsigned char *set[WORKING_SET];
  unsigned len[WORKING_SET];
  memset(set, 0, sizeof set);
  unsigned si = 0, oi = 0;
  uint64_t sum = 0, errors = 0;
  for (long k = 0; k < iters; k++) {
    unsigned o = offsets[oi]; oi = oi + 1 == NUM_OFFSETS ? 0 : oi + 1;
    unsigned n = sizes[si]; si = si + 1 == NUM_SIZES ? 0 : si + 1;
    if (set[o]) {
      unsigned m = len[o];
      if (set[o][m - 1] != (unsigned char)(m - 1)) errors++;
      sum += set[o][m / 2];
      free(set[o]);
    }
    unsigned char *p = xmalloc(n);
    for (unsigned i = 0; i < n; i++) p[i] = (unsigned char)i;
    set[o] = p; len[o] = n;
    sum += n;
  }
  for (int i = 0; i < WORKING_SET; i++) free(set[i]);
  t->sum = sum; t->errors = errors;
  return NULL;
}

int main(int argc, char **argv) {
  int threads = (int)arg_long(argc, argv, 1, 1);
  iters = arg_long(argc, argv, 2, 2000000);
  long seed = arg_long(argc, argv, 3, 88);
  if (threads < 1) { fprintf(stderr, "bad arguments\n"); return 2; }
  double t0 = now_sec();
  rng_t r; rng_seed(&r, (uint64_t)seed, 0);
  /* inverse square: inverse CDF of p(x) ~ x^-2 on [MIN, MAX] */
  const double lo = 1.0 / MIN_SIZE, hi = 1.0 / MAX_SIZE;
  for (int i = 0; i < NUM_SIZES; i++) {
    double u = rng_unit(&r);
    unsigned n = (unsigned)(1.0 / (lo + (hi - lo) * u));
    sizes[i] = n < MIN_SIZE ? MIN_SIZE : n > MAX_SIZE ? MAX_SIZE : n;
  }
  for (int i = 0; i < NUM_OFFSETS; i++) offsets[i] = (unsigned)rng_below(&r, WORKING_SET);
  targ_t *a = calloc((size_t)threads, sizeof(targ_t));
  run_threads(threads, worker, a, sizeof(targ_t));
  uint64_t sum = 0, errors = 0;
  for (int i = 0; i < threads; i++) { sum += a[i].sum; errors += a[i].errors; }
  free(a);
  printf("glibc-thread threads=%d iters=%ld seed=%ld checksum=%llu errors=%llu\n", threads, iters, seed,
         (unsigned long long)sum, (unsigned long long)errors);
  report_time(t0);
  return errors != 0;
}
