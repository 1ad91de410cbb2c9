/* cache-thrash.c -- active false sharing, after Hoard's cache-thrash
 * (Berger et al., 2000), as mimalloc-bench runs it:
 * `cache-thrash <threads> 1000 1 2000000 <procs>` (iterations 1000, object
 * size 1 byte, 2,000,000 repetitions).
 *
 * What it does: <threads> threads each, <iterations> times, allocate a
 * <size>-byte object, write each of its bytes <repetitions> times (volatile
 * stores) and free it. Nothing is shared by the program; if the allocator
 * gives two threads' objects one cache line (e.g. from one shared free
 * list), the threads' writes fight over it: active false sharing, seen as a
 * slowdown at 2+ threads. cache-scratch is the passive variant.
 *
 * Relation to the original: same structure and arguments; the runner passes
 * fewer repetitions (see run.sh) so a run takes about a second here. The
 * checksum is the sum of the final byte values, a function of the parameters.
 *
 * Usage: cache-thrash <threads> [iterations=1000] [size=1] [repetitions=2000000]
 */
#include "common.h"

typedef struct { long iterations, size, reps; uint64_t sum; char pad[64]; } arg_t;

static void *worker(void *p) {
  arg_t *a = p;
  uint64_t sum = 0;
  for (long i = 0; i < a->iterations; i++) {
    volatile char *o = xmalloc((size_t)a->size);
    for (long k = 0; k < a->size; k++) o[k] = (char)(i + k);
    for (long r = 0; r < a->reps; r++)
      for (long k = 0; k < a->size; k++) o[k] = (char)(o[k] + 1);
    for (long k = 0; k < a->size; k++) sum += (unsigned char)o[k];
    free((void *)o);
  }
  a->sum = sum;
  return NULL;
}

int main(int argc, char **argv) {
  int threads = (int)arg_long(argc, argv, 1, 1);
  long iterations = arg_long(argc, argv, 2, 1000);
  long size = arg_long(argc, argv, 3, 1);
  long reps = arg_long(argc, argv, 4, 2000000);
  if (threads < 1 || size < 1) { fprintf(stderr, "bad arguments\n"); return 2; }
  double t0 = now_sec();
  arg_t *a = calloc((size_t)threads, sizeof(arg_t));
  for (int i = 0; i < threads; i++) a[i] = (arg_t){ .iterations = iterations, .size = size, .reps = reps };
  run_threads(threads, worker, a, sizeof(arg_t));
  uint64_t sum = 0;
  for (int i = 0; i < threads; i++) sum += a[i].sum;
  free(a);
  printf("cache-thrash threads=%d iterations=%ld size=%ld repetitions=%ld checksum=%llu\n",
         threads, iterations, size, reps, (unsigned long long)sum);
  report_time(t0);
  return 0;
}
