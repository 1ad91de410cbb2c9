/* glibc-simple.c -- after glibc's benchtests/bench-malloc-simple.c, as
 * mimalloc-bench runs it: `glibc-simple` (no arguments: block sizes 16, 32
 * and 64 bytes, 2,000,000 allocations per case).
 *
 * What it does: for each block size s in {16, 32, 64} and each batch size n
 * in {25, 100, 400, 1600}, repeat (<iters> / n times): allocate n blocks of
 * s bytes, writing every int of each block, then free all n. Each case is run
 * as a warm-up, then in the main thread before any other thread exists
 * (glibc's single-thread fast path), then in a second thread (a thread
 * arena / thread cache), then in the main thread again after that thread
 * existed (glibc's multi-thread path), as the original does.
 *
 * Relation to the original: same sizes, batch sizes, iteration count and the
 * same four phases; the original is single-threaded by design, so the
 * thread-count argument is accepted and must be 1 (the runner runs it at 1
 * thread only). The checksum sums the last int of every block before it is
 * freed.
 *
 * Usage: glibc-simple [threads=1] [iters=2000000] [base_size=16]
 */
#include "common.h"

#define NUM_ALLOCS 4
static const int allocs[NUM_ALLOCS] = { 25, 100, 400, 1600 };
static long iters;
static int **arr;

static uint64_t run_case(size_t size, int n) {
  uint64_t sum = 0;
  long reps = iters / n;
  size_t ints = size / sizeof(int);
  for (long j = 0; j < reps; j++) {
    for (int i = 0; i < n; i++) {
      int *p = xmalloc(size);
      for (size_t g = 0; g < ints; g++) p[g] = (int)(g + (size_t)i);
      arr[i] = p;
    }
    for (int i = 0; i < n; i++) {
      sum += (uint64_t)arr[i][ints - 1];
      free(arr[i]);
    }
  }
  return sum;
}

static size_t cur_size;
static uint64_t thread_sum;
static void *thread_phase(void *unused) {
  (void)unused;
  for (int i = 0; i < NUM_ALLOCS; i++) thread_sum += run_case(cur_size, allocs[i]);
  return NULL;
}

int main(int argc, char **argv) {
  int threads = (int)arg_long(argc, argv, 1, 1);
  iters = arg_long(argc, argv, 2, 2000000);
  long base = arg_long(argc, argv, 3, 16);
  if (threads != 1 || iters < 1600 || base < (long)sizeof(int)) { fprintf(stderr, "usage: glibc-simple 1 [iters>=1600] [base_size>=4]\n"); return 2; }
  double t0 = now_sec();
  uint64_t sum = 0;
  for (int k = 0; k < 3; k++) {
    size_t size = (size_t)base << k;
    arr = xmalloc(1600 * sizeof(int *));
    for (int i = 0; i < NUM_ALLOCS; i++) sum += run_case(size, allocs[i]);  /* warm-up */
    for (int i = 0; i < NUM_ALLOCS; i++) sum += run_case(size, allocs[i]);  /* main, single-threaded */
    cur_size = size; thread_sum = 0;
    run_threads(1, thread_phase, NULL, 0);                                  /* second thread */
    sum += thread_sum;
    for (int i = 0; i < NUM_ALLOCS; i++) sum += run_case(size, allocs[i]);  /* main, after a thread */
    free(arr);
  }
  printf("glibc-simple threads=1 iters=%ld sizes=%ld,%ld,%ld checksum=%llu\n", iters, base, base * 2, base * 4,
         (unsigned long long)sum);
  report_time(t0);
  return 0;
}
