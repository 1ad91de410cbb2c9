/* alloc-test.c -- after OLogN Technologies' alloc-test (node-dot-cpp), as
 * mimalloc-bench runs it: `alloc-test <threads>` with its built-in
 * parameters: 2^18 live objects shared out among the threads
 * (maxItems / threads each), random positions and random sizes up to 2^10
 * bytes, the whole of every block written ("full" memory access), seed 41,
 * 10^8 alloc/free operations per thread.
 *
 * What it does: each thread first fills its <items> slots, then performs
 * <iters> operations, each picking a random slot, freeing the block there
 * (after checking its first and last bytes) and allocating a new block of a
 * random size that it then writes completely (memset). Sizes are skewed to
 * small: an exponent e is drawn uniformly from [0, 10) and the size is
 * uniform in [2^e, 2^(e+1)), i.e. 1..1023 bytes, every power-of-two band
 * equally likely. Finally every remaining block is freed. No object crosses
 * threads.
 *
 * Relation to the original: same item count, size bound and access mode;
 * the original's exact size-selection function is not reproduced (this one
 * is log-uniform over the same range) and the runner passes far fewer than
 * 10^8 operations so a run takes about a second here. The checksum is the
 * sum of the sizes allocated and of the byte values read back at each free.
 *
 * Usage: alloc-test <threads> [iters=100000000] [items=262144 total]
 *                   [max_exp=10] [seed=41]
 */
#include "common.h"

typedef struct { int id; long iters, items; int max_exp; uint64_t sum, errors; char pad[64]; } targ_t;
static uint64_t seed;

static void *worker(void *arg) {
  targ_t *t = arg;
  rng_t r; rng_seed(&r, seed, (uint64_t)t->id);
  unsigned char **slot = xmalloc(sizeof(unsigned char *) * (size_t)t->items);
  uint32_t *len = xmalloc(sizeof(uint32_t) * (size_t)t->items);
  uint64_t sum = 0, errors = 0;
  long total = t->items + t->iters;
  for (long k = 0; k < total; k++) {
    long i = k < t->items ? k : (long)rng_below(&r, (uint64_t)t->items);
    if (k >= t->items) {
      unsigned char *p = slot[i];
      uint32_t n = len[i];
      if (p[0] != (unsigned char)n || p[n - 1] != (unsigned char)n) errors++;
      sum += p[n / 2];
      free(p);
    }
    unsigned e = (unsigned)rng_below(&r, (uint64_t)t->max_exp);
    uint32_t n = (uint32_t)((1u << e) + rng_below(&r, 1u << e));
    unsigned char *p = xmalloc(n);
    memset(p, (unsigned char)n, n);
    slot[i] = p; len[i] = n;
    sum += n;
  }
  for (long i = 0; i < t->items; i++) {
    if (slot[i][0] != (unsigned char)len[i]) errors++;
    free(slot[i]);
  }
  free(slot); free(len);
  t->sum = sum; t->errors = errors;
  return NULL;
}

int main(int argc, char **argv) {
  int threads = (int)arg_long(argc, argv, 1, 1);
  long iters = arg_long(argc, argv, 2, 100000000);
  long items = arg_long(argc, argv, 3, 1L << 18);
  int max_exp = (int)arg_long(argc, argv, 4, 10);
  seed = (uint64_t)arg_long(argc, argv, 5, 41);
  if (threads < 1 || items / threads < 1 || max_exp < 1 || max_exp > 24) { fprintf(stderr, "bad arguments\n"); return 2; }
  double t0 = now_sec();
  targ_t *a = calloc((size_t)threads, sizeof(targ_t));
  for (int i = 0; i < threads; i++) a[i] = (targ_t){ .id = i, .iters = iters, .items = items / threads, .max_exp = max_exp };
  run_threads(threads, worker, a, sizeof(targ_t));
  uint64_t sum = 0, errors = 0;
  for (int i = 0; i < threads; i++) { sum += a[i].sum; errors += a[i].errors; }
  free(a);
  printf("alloc-test threads=%d iters=%ld items=%ld max_exp=%d seed=%llu checksum=%llu errors=%llu\n",
         threads, iters, items, max_exp, (unsigned long long)seed, (unsigned long long)sum, (unsigned long long)errors);
  report_time(t0);
  return errors != 0;
}
