/* xmalloc-test.c -- producer/consumer benchmark after Lever & Boreham's
 * xmalloc-test (USENIX 2000), as mimalloc-bench runs it:
 * `xmalloc-test -w <threads> -t 5 -s 64` (<threads> allocating and
 * <threads> freeing threads, 5 s, 64-byte objects).
 *
 * What it does: <threads> producer threads only allocate and <threads>
 * consumer threads only free. A producer allocates a batch of <batch>
 * objects of <size> bytes, fills the first min(size, 128) bytes of each
 * (with a tag from its seeded generator in the first 8) and pushes the batch
 * onto one shared queue (a mutex and two condition variables; at most 100
 * batches waiting); a consumer pops a batch, checks and sums the tags and
 * frees every object -- so every free is a remote free of memory another
 * thread allocated, the pattern thread-local caches find hardest.
 *
 * Relation to the original: same object size (64), same split into
 * allocating and freeing threads (-w of each), same batch size (4096
 * objects), queue bound (100 batches) and fill (first 128 bytes). The
 * original runs for 5 s and reports frees per second; this one has each
 * producer make a fixed <batches> batches, so the work and the output are
 * fixed and the time is what is measured. The original's queue is a LIFO
 * stack, this one is FIFO. The checksum is the sum of all tags, whichever
 * consumer frees them.
 *
 * Usage: xmalloc-test <threads> [batches=2500] [size=64] [batch=4096] [seed=1]
 */
#include "common.h"

typedef struct batch { struct batch *next; void **obj; } batch_t;

static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qnonempty = PTHREAD_COND_INITIALIZER, qnonfull = PTHREAD_COND_INITIALIZER;
static batch_t *qhead, *qtail;
static long qlen, qmax, producers_left;
static long nbatches, bsize, osize, seed;

typedef struct { int id; uint64_t sum, count, errors; char pad[64]; } worker_t;

static void *producer(void *arg) {
  worker_t *w = arg;
  rng_t r; rng_seed(&r, (uint64_t)seed, (uint64_t)w->id);
  for (long i = 0; i < nbatches; i++) {
    batch_t *b = xmalloc(sizeof *b);
    b->obj = xmalloc(sizeof(void *) * (size_t)bsize);
    for (long j = 0; j < bsize; j++) {
      char *p = xmalloc((size_t)osize);
      uint64_t tag = rng_next(&r);
      long fill = osize < 128 ? osize : 128;
      memset(p, (int)(j & 0xff), (size_t)fill);
      memcpy(p, &tag, 8);
      p[fill - 1] = (char)(tag >> 56);
      b->obj[j] = p;
    }
    b->next = NULL;
    pthread_mutex_lock(&qlock);
    while (qlen >= qmax) pthread_cond_wait(&qnonfull, &qlock);
    if (qtail) qtail->next = b; else qhead = b;
    qtail = b; qlen++;
    pthread_cond_signal(&qnonempty);
    pthread_mutex_unlock(&qlock);
  }
  pthread_mutex_lock(&qlock);
  producers_left--;
  pthread_cond_broadcast(&qnonempty);
  pthread_mutex_unlock(&qlock);
  return NULL;
}

static void *consumer(void *arg) {
  worker_t *w = arg;
  for (;;) {
    pthread_mutex_lock(&qlock);
    while (!qhead && producers_left > 0) pthread_cond_wait(&qnonempty, &qlock);
    batch_t *b = qhead;
    if (!b) { pthread_mutex_unlock(&qlock); break; }
    qhead = b->next;
    if (!qhead) qtail = NULL;
    qlen--;
    pthread_cond_signal(&qnonfull);
    pthread_mutex_unlock(&qlock);
    for (long j = 0; j < bsize; j++) {
      char *p = b->obj[j];
      uint64_t tag;
      memcpy(&tag, p, 8);
      if (p[(osize < 128 ? osize : 128) - 1] != (char)(tag >> 56)) w->errors++;
      w->sum += tag; w->count++;
      free(p);
    }
    free(b->obj);
    free(b);
  }
  return NULL;
}

int main(int argc, char **argv) {
  int threads = (int)arg_long(argc, argv, 1, 1);
  nbatches = arg_long(argc, argv, 2, 2500);
  osize = arg_long(argc, argv, 3, 64);
  bsize = arg_long(argc, argv, 4, 4096);
  seed = arg_long(argc, argv, 5, 1);
  if (threads < 1 || osize < 8 || bsize < 1) { fprintf(stderr, "bad arguments\n"); return 2; }
  double t0 = now_sec();
  qmax = 100;
  producers_left = threads;
  worker_t *w = calloc((size_t)(2 * threads), sizeof(worker_t));
  pthread_t *t = xmalloc(sizeof(pthread_t) * (size_t)(2 * threads));
  for (int i = 0; i < 2 * threads; i++) {
    w[i].id = i;
    if (pthread_create(&t[i], NULL, i < threads ? producer : consumer, &w[i])) { fprintf(stderr, "pthread_create failed\n"); return 3; }
  }
  for (int i = 0; i < 2 * threads; i++) pthread_join(t[i], NULL);
  uint64_t sum = 0, count = 0, errors = 0;
  for (int i = threads; i < 2 * threads; i++) { sum += w[i].sum; count += w[i].count; errors += w[i].errors; }
  free(w); free(t);
  printf("xmalloc-test threads=%d batches=%ld batch=%ld size=%ld seed=%ld freed=%llu checksum=%016llx errors=%llu\n",
         threads, nbatches, bsize, osize, seed, (unsigned long long)count, (unsigned long long)sum,
         (unsigned long long)errors);
  report_time(t0);
  return errors != 0;
}
