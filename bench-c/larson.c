/* larson.c -- server-thread benchmark after Larson & Krishnan (1998), in the
 * form mimalloc-bench runs it: `larson 5 8 1000 5000 100 4141 <threads>`
 * (5 s, block sizes 8..1000 bytes, 5000 blocks per thread, 100 rounds,
 * seed 4141).
 *
 * What it does: the main thread allocates <blocks> blocks for each of
 * <threads> slots, sizes uniform in [min,max]. Each slot is then worked by a
 * chain of threads: a thread does <rounds> x <blocks> steps, each step
 * picking a random block of its slot, freeing it and allocating a new one of
 * random size (writing a tag into its first and last bytes); then it starts a
 * successor thread that inherits the slot's blocks, exits, and the successor
 * frees what its predecessor allocated -- the objects move between threads as
 * in a server that hands connections to new worker threads. The <threads>
 * chains run concurrently.
 *
 * Relation to the original: same sizes, blocks per thread, rounds per thread
 * and seed meaning; the original stops after a fixed time (5 s) and reports
 * throughput, this one runs a fixed number of thread generations per chain
 * (<generations>) so the work, and hence the output, is fixed and the time is
 * what is measured. Every random choice comes from a per-chain generator, so
 * the checksum (sum of tags read back at every free) does not depend on
 * timing or the allocator.
 *
 * Usage: larson <threads> [generations=20] [rounds=100] [blocks=5000]
 *               [min=8] [max=1000] [seed=4141]
 */
#include "common.h"

typedef struct {
  int chain;
  long gen, generations, rounds, blocks, min, max;
  rng_t rng;
  char **blk;
  uint64_t sum, ops, errors;
} chain_t;

/* Each block holds its tag in bytes [0,8), its size in [8,12) and the tag's
 * top byte in its last byte; min is clamped to 16 to make room. */
static void *chain_thread(void *arg) {
  chain_t *c = arg;
  long steps = c->rounds * c->blocks;
  for (long s = 0; s < steps; s++) {
    uint64_t v = rng_below(&c->rng, (uint64_t)c->blocks);
    char *old = c->blk[v];
    uint64_t tag; uint32_t n;
    memcpy(&tag, old, 8); memcpy(&n, old + 8, 4);
    if ((char)(tag >> 56) != old[n - 1]) c->errors++;
    c->sum += tag;
    free(old);
    n = (uint32_t)(c->min + (long)rng_below(&c->rng, (uint64_t)(c->max - c->min + 1)));
    char *p = xmalloc(n);
    tag = rng_next(&c->rng);
    memcpy(p, &tag, 8); memcpy(p + 8, &n, 4); p[n - 1] = (char)(tag >> 56);
    c->blk[v] = p;
  }
  c->ops += (uint64_t)steps;
  if (__atomic_add_fetch(&c->gen, 1, __ATOMIC_RELAXED) < c->generations) { /* main polls gen */
    /* hand the slot to a fresh thread, as larson does */
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, chain_thread, c)) { fprintf(stderr, "pthread_create failed\n"); exit(3); }
    pthread_attr_destroy(&a);
  } else {
    __atomic_store_n(&c->gen, -1L, __ATOMIC_RELEASE); /* done */
  }
  return NULL;
}

int main(int argc, char **argv) {
  int threads = (int)arg_long(argc, argv, 1, 1);
  long generations = arg_long(argc, argv, 2, 20);
  long rounds = arg_long(argc, argv, 3, 100);
  long blocks = arg_long(argc, argv, 4, 5000);
  long min = arg_long(argc, argv, 5, 8);
  long max = arg_long(argc, argv, 6, 1000);
  long seed = arg_long(argc, argv, 7, 4141);
  if (threads < 1 || generations < 1 || blocks < 1 || max < min) { fprintf(stderr, "bad arguments\n"); return 2; }
  if (min < 16) min = 16; /* room for the tag and size; the original's 8-byte minimum rounds up to 16 in most allocators anyway */
  double t0 = now_sec();
  chain_t *c = xmalloc(sizeof(chain_t) * (size_t)threads);
  for (int i = 0; i < threads; i++) {
    c[i] = (chain_t){ .chain = i, .gen = 0, .generations = generations, .rounds = rounds,
                      .blocks = blocks, .min = min, .max = max };
    rng_seed(&c[i].rng, (uint64_t)seed, (uint64_t)i);
    c[i].blk = xmalloc(sizeof(char *) * (size_t)blocks);
    for (long b = 0; b < blocks; b++) {
      uint32_t n = (uint32_t)(min + (long)rng_below(&c[i].rng, (uint64_t)(max - min + 1)));
      char *p = xmalloc(n);
      uint64_t tag = rng_next(&c[i].rng);
      memcpy(p, &tag, 8); memcpy(p + 8, &n, 4); p[n - 1] = (char)(tag >> 56);
      c[i].blk[b] = p;
    }
  }
  for (int i = 0; i < threads; i++) {
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, chain_thread, &c[i])) { fprintf(stderr, "pthread_create failed\n"); return 3; }
    pthread_attr_destroy(&a);
  }
  /* wait for every chain's last generation */
  for (int i = 0; i < threads; i++) {
    struct timespec ts = { 0, 1000000 };
    while (__atomic_load_n(&c[i].gen, __ATOMIC_ACQUIRE) != -1L) nanosleep(&ts, NULL);
  }
  uint64_t sum = 0, ops = 0, errors = 0;
  for (int i = 0; i < threads; i++) {
    for (long b = 0; b < blocks; b++) {
      uint64_t tag; uint32_t n;
      memcpy(&tag, c[i].blk[b], 8); memcpy(&n, c[i].blk[b] + 8, 4);
      if ((char)(tag >> 56) != c[i].blk[b][n - 1]) errors++;
      sum += tag;
      free(c[i].blk[b]);
    }
    free(c[i].blk);
    sum += c[i].sum; ops += c[i].ops; errors += c[i].errors;
  }
  free(c);
  printf("larson threads=%d generations=%ld rounds=%ld blocks=%ld size=%ld..%ld seed=%ld ops=%llu checksum=%016llx errors=%llu\n",
         threads, generations, rounds, blocks, min, max, seed, (unsigned long long)ops,
         (unsigned long long)sum, (unsigned long long)errors);
  report_time(t0);
  return errors != 0;
}
