/* rptest.c -- after rpmalloc's benchmark, as mimalloc-bench runs it:
 * `rptest <threads> 0 1 2 500 1000 100 8 16000` (random sizes, linear
 * drop-off distribution, cross-thread rate 2, 500 loops, 1000 live
 * allocations per thread, 100 operations per loop, sizes 8..16000).
 *
 * What it does: each thread keeps <slots> pointer slots. Per loop it frees
 * about 0.8 x <ops> x U slots (U a per-loop factor in [0.3, 1.0) from a
 * table), walking the slots with one prime stride, then allocates about
 * <ops> x U' blocks into slots walked with another prime stride (freeing any
 * block still there), writing the block's first word and one byte per 4 KiB
 * page and the last byte. Every <cross>-th loop it also allocates a batch
 * of the same number of blocks and pushes the batch onto the next thread's
 * lock-free inbox; at the start of each loop a thread frees every batch in
 * its inbox (remote frees). Sizes follow rpmalloc's "linear drop-off": with
 * u0, u1, u2 uniform in [0,1), size = min + (max-min) x u2 x |u0 + u1 - 1|,
 * so small sizes are most common. The whole is done twice (two iterations,
 * emptying every slot and inbox between them), as in the original.
 *
 * Relation to the original: same parameters and loop structure; the
 * original draws from fixed tables of random numbers and measures a rate,
 * this one draws from per-thread seeded generators and measures the time of
 * fixed work; its cross-thread batches go round-robin to the other threads,
 * as in the original. The checksum is the sum of the sizes allocated (fixed
 * by the seeds) and a check that the sum of sizes read back from freed
 * blocks equals it.
 *
 * Built with -DLIVE_STATS it also prints the peak of the program's live
 * bytes (sum of sizes allocated and not yet freed) on stderr, to tell the
 * program's own backlog of cross-thread batches from memory the allocator
 * keeps; that build adds an atomic operation per call and is not timed.
 *
 * Usage: rptest <threads> [loops=500] [slots=1000] [ops=100] [min=8]
 *               [max=16000] [cross=2] [seed=7]
 */
#include "common.h"

typedef struct batch { struct batch *next; long n; char **obj; } batch_t;

typedef struct {
  int id;
  batch_t *inbox; /* lock-free stack, pushed by others */
  uint64_t alloc_bytes, freed_bytes, errors, ops;
  char pad[64];
} targ_t;

static int nthreads;
static long loops, slots, opcount, min_size, max_size, cross;
static uint64_t seed;
static targ_t *targs;
static pthread_barrier_t barrier;

#ifdef LIVE_STATS /* diagnostic build: peak live bytes on stderr (adds an atomic per call) */
static int64_t live_bytes, peak_live;
static void live_add(int64_t d) {
  int64_t v = __atomic_add_fetch(&live_bytes, d, __ATOMIC_RELAXED), p;
  while (v > (p = __atomic_load_n(&peak_live, __ATOMIC_RELAXED)) &&
         !__atomic_compare_exchange_n(&peak_live, &p, v, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
}
#else
#define live_add(d) ((void)0)
#endif

static char *alloc_block(rng_t *r, uint64_t *bytes) {
  double u0 = rng_unit(r), u1 = rng_unit(r), u2 = rng_unit(r);
  double w = u0 + u1 - 1.0; if (w < 0) w = -w;
  size_t n = (size_t)min_size + (size_t)((double)(max_size - min_size) * u2 * w);
  if (n < 8) n = 8;
  char *p = xmalloc(n);
  uint32_t v = (uint32_t)n; /* size in bytes [0,4); n >= 8 keeps it clear of the last byte */
  memcpy(p, &v, 4);
  for (size_t pg = 4096; pg + 1 < n; pg += 4096) p[pg] = 1;
  p[n - 1] = (char)n;
  *bytes += n;
  live_add((int64_t)n);
  return p;
}

static void free_block(char *p, targ_t *t) {
  uint32_t n;
  memcpy(&n, p, 4);
  if (p[n - 1] != (char)n) t->errors++;
  t->freed_bytes += n;
  live_add(-(int64_t)n);
  free(p);
}

static void drain_inbox(targ_t *t) {
  batch_t *b = __atomic_exchange_n(&t->inbox, NULL, __ATOMIC_ACQUIRE);
  while (b) {
    batch_t *next = b->next;
    for (long i = 0; i < b->n; i++) free_block(b->obj[i], t);
    t->ops += (uint64_t)b->n;
    free(b->obj);
    free(b);
    b = next;
  }
}

static void push_batch(targ_t *to, batch_t *b) {
  batch_t *old = __atomic_load_n(&to->inbox, __ATOMIC_RELAXED);
  do b->next = old;
  while (!__atomic_compare_exchange_n(&to->inbox, &old, b, 1, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
}

static long next_prime_coprime(long from, long m) {
  for (long p = from;; p++) {
    int prime = p > 1;
    for (long d = 2; d * d <= p; d++) if (p % d == 0) { prime = 0; break; }
    if (prime && m % p != 0) return p;
  }
}

static void *worker(void *arg) {
  targ_t *t = arg;
  rng_t r; rng_seed(&r, seed, (uint64_t)t->id);
  char **ptr = calloc((size_t)slots, sizeof(char *));
  long alloc_stride = next_prime_coprime(2, slots);
  long free_stride = next_prime_coprime(alloc_stride + 1, slots);
  int cross_to = t->id;
  for (int iter = 0; iter < 2; iter++) {
    long ai = 0, fi = 0;
    for (long loop = 0; loop < loops; loop++) {
      drain_inbox(t);
      long nfree = (long)(0.8 * (double)opcount * (0.3 + 0.7 * rng_unit(&r)));
      long nalloc = (long)((double)opcount * (0.3 + 0.7 * rng_unit(&r)));
      for (long i = 0; i < nfree; i++) {
        if (ptr[fi]) { free_block(ptr[fi], t); ptr[fi] = NULL; t->ops++; }
        fi = (fi + free_stride) % slots;
      }
      for (long i = 0; i < nalloc; i++) {
        if (ptr[ai]) { free_block(ptr[ai], t); t->ops++; }
        ptr[ai] = alloc_block(&r, &t->alloc_bytes);
        t->ops++;
        ai = (ai + alloc_stride) % slots;
      }
      if (nthreads > 1 && cross > 0 && loop % cross == 0) {
        batch_t *b = xmalloc(sizeof *b);
        b->n = nalloc;
        b->obj = xmalloc(sizeof(char *) * (size_t)(nalloc + 1));
        for (long i = 0; i < nalloc; i++) b->obj[i] = alloc_block(&r, &t->alloc_bytes);
        t->ops += (uint64_t)nalloc;
        cross_to = (cross_to + 1) % nthreads;
        if (cross_to == t->id) cross_to = (cross_to + 1) % nthreads;
        push_batch(&targs[cross_to], b);
      }
    }
    for (long i = 0; i < slots; i++) if (ptr[i]) { free_block(ptr[i], t); ptr[i] = NULL; t->ops++; }
    pthread_barrier_wait(&barrier); /* nobody pushes after this */
    drain_inbox(t);
    pthread_barrier_wait(&barrier);
  }
  free(ptr);
  return NULL;
}

int main(int argc, char **argv) {
  nthreads = (int)arg_long(argc, argv, 1, 1);
  loops = arg_long(argc, argv, 2, 500);
  slots = arg_long(argc, argv, 3, 1000);
  opcount = arg_long(argc, argv, 4, 100);
  min_size = arg_long(argc, argv, 5, 8);
  max_size = arg_long(argc, argv, 6, 16000);
  cross = arg_long(argc, argv, 7, 2);
  seed = (uint64_t)arg_long(argc, argv, 8, 7);
  if (nthreads < 1 || slots < 2 || max_size < min_size) { fprintf(stderr, "bad arguments\n"); return 2; }
  double t0 = now_sec();
  targs = calloc((size_t)nthreads, sizeof(targ_t));
  for (int i = 0; i < nthreads; i++) targs[i].id = i;
  pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
  run_threads(nthreads, worker, targs, sizeof(targ_t));
  uint64_t a = 0, f = 0, e = 0, ops = 0;
  for (int i = 0; i < nthreads; i++) { a += targs[i].alloc_bytes; f += targs[i].freed_bytes; e += targs[i].errors; ops += targs[i].ops; }
  free(targs);
  printf("rptest threads=%d loops=%ld slots=%ld ops=%ld size=%ld..%ld cross=%ld seed=%llu memory_ops=%llu bytes_allocated=%llu bytes_freed=%llu errors=%llu\n",
         nthreads, loops, slots, opcount, min_size, max_size, cross, (unsigned long long)seed,
         (unsigned long long)ops, (unsigned long long)a, (unsigned long long)f, (unsigned long long)e);
#ifdef LIVE_STATS
  fprintf(stderr, "peak live bytes: %lld\n", (long long)peak_live);
#endif
  report_time(t0);
  return e != 0 || a != f;
}
