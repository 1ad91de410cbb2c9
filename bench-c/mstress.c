/* mstress.c -- stress test after mimalloc's test-stress.c, as mimalloc-bench
 * runs it: `mstress <threads> 50 25` (scale 50, 25 iterations).
 *
 * What it does: <iterations> rounds; each round starts <threads> fresh
 * threads. Thread t makes 100 x <scale> x (t % 8 + 1) allocations and half
 * as many "retained" ones, in a random order: an ordinary allocation is an
 * array of 2^k words (k < 5), a retained one of 2^k words (k < 7), and 1 in
 * 100 is large (x100 words, or of those 1 in 100 x10000 and otherwise 1 in
 * 10 x1000). Each word is filled with a cookie. After each step, with probability 66 % a
 * random live ordinary allocation is freed, and with probability 25 % one is
 * swapped (atomic exchange) with a random slot of a shared array of 1000
 * transfer slots, so objects move to, and are freed by, other threads
 * (including threads of later rounds). At the end of its run a thread frees
 * everything it holds. After each round the main thread frees each transfer
 * slot with probability 50 % (all of them after the last round). Every free
 * checks every word's cookie.
 *
 * Relation to the original: same sizes, probabilities, transfer array and
 * round structure as mimalloc-bench's mstress.c (mimalloc's test-stress.c);
 * written anew. Its chance(p) is true with probability (p+1) %, this one's
 * with p %. What each thread allocates depends only on its seeded generator (seeded from round
 * and thread), so the total words allocated is fixed; which thread frees
 * what is not, but the total words freed must equal it, and both are printed
 * with the count of corrupted words (cookie mismatches), which must be 0.
 *
 * Usage: mstress <threads> [scale=50] [iterations=25] [seed=43]
 */
#include "common.h"

#define TRANSFERS 1000
static void *volatile transfer[TRANSFERS];
static long scale;
static uint64_t seed;
static uint64_t total_alloc, total_freed, total_errors; /* atomics */

static void *alloc_items(size_t items, rng_t *r, uint64_t *words) {
  if (rng_chance(r, 1)) {
    if (rng_chance(r, 1)) items *= 10000;
    else if (rng_chance(r, 10)) items *= 1000;
    else items *= 100;
  }
  uintptr_t *p = xmalloc(items * sizeof(uintptr_t) + sizeof(uintptr_t));
  p[0] = items;
  uintptr_t cookie = (uintptr_t)mix64(items);
  for (size_t i = 0; i < items; i++) p[i + 1] = (uintptr_t)i ^ cookie;
  *words += items;
  return p;
}

static void free_items(void *q, uint64_t *words, uint64_t *errors) {
  if (!q) return;
  uintptr_t *p = q;
  size_t items = p[0];
  uintptr_t cookie = (uintptr_t)mix64(items);
  for (size_t i = 0; i < items; i++)
    if (p[i + 1] != ((uintptr_t)i ^ cookie)) (*errors)++;
  *words += items;
  free(p);
}

typedef struct { long round; int tid; } targ_t;

static void *stress(void *arg) {
  targ_t *a = arg;
  rng_t r; rng_seed(&r, seed, (uint64_t)a->round * 1000003u + (uint64_t)a->tid);
  uint64_t alloced = 0, freed = 0, errors = 0;
  size_t allocs = 100 * (size_t)scale * (size_t)(a->tid % 8 + 1);
  size_t retain = allocs / 2;
  size_t data_size = 0, data_top = 0, retain_top = 0;
  void **data = NULL;
  void **retained = xmalloc(sizeof(void *) * (retain + 1));
  while (allocs > 0 || retain > 0) {
    if (retain == 0 || (rng_chance(&r, 50) && allocs > 0)) {
      allocs--;
      if (data_top >= data_size) {
        data_size += 100000;
        data = realloc(data, data_size * sizeof(void *));
        if (!data) { fprintf(stderr, "realloc failed\n"); exit(3); }
      }
      data[data_top++] = alloc_items((size_t)1 << rng_below(&r, 5), &r, &alloced);
    } else {
      retained[retain_top++] = alloc_items((size_t)1 << rng_below(&r, 7), &r, &alloced);
      retain--;
    }
    if (rng_chance(&r, 66) && data_top > 0) {
      size_t i = rng_below(&r, data_top);
      free_items(data[i], &freed, &errors);
      data[i] = NULL;
    }
    if (rng_chance(&r, 25) && data_top > 0) {
      size_t i = rng_below(&r, data_top);
      size_t j = rng_below(&r, TRANSFERS);
      data[i] = __atomic_exchange_n(&transfer[j], data[i], __ATOMIC_ACQ_REL);
    }
  }
  for (size_t i = 0; i < retain_top; i++) free_items(retained[i], &freed, &errors);
  for (size_t i = 0; i < data_top; i++) free_items(data[i], &freed, &errors);
  free(retained);
  free(data);
  __atomic_fetch_add(&total_alloc, alloced, __ATOMIC_RELAXED);
  __atomic_fetch_add(&total_freed, freed, __ATOMIC_RELAXED);
  __atomic_fetch_add(&total_errors, errors, __ATOMIC_RELAXED);
  return NULL;
}

int main(int argc, char **argv) {
  int threads = (int)arg_long(argc, argv, 1, 1);
  scale = arg_long(argc, argv, 2, 50);
  long iterations = arg_long(argc, argv, 3, 25);
  seed = (uint64_t)arg_long(argc, argv, 4, 43);
  if (threads < 1 || iterations < 1) { fprintf(stderr, "bad arguments\n"); return 2; }
  double t0 = now_sec();
  rng_t r; rng_seed(&r, seed, 0xffffffffu);
  targ_t *a = xmalloc(sizeof(targ_t) * (size_t)threads);
  uint64_t freed = 0, errors = 0;
  for (long n = 0; n < iterations; n++) {
    for (int t = 0; t < threads; t++) a[t] = (targ_t){ n, t };
    run_threads(threads, stress, a, sizeof(targ_t));
    for (int i = 0; i < TRANSFERS; i++) {
      if (rng_chance(&r, 50) || n + 1 == iterations) {
        free_items(transfer[i], &freed, &errors);
        transfer[i] = NULL;
      }
    }
  }
  free(a);
  total_freed += freed; total_errors += errors;
  printf("mstress threads=%d scale=%ld iterations=%ld seed=%llu words_allocated=%llu words_freed=%llu errors=%llu\n",
         threads, scale, iterations, (unsigned long long)seed, (unsigned long long)total_alloc,
         (unsigned long long)total_freed, (unsigned long long)total_errors);
  report_time(t0);
  return total_errors != 0 || total_alloc != total_freed;
}
