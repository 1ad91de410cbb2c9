// Signal handlers that interrupt malloc and free on the handle's fast path
// (preload/test.sh). While a call uses the thread's handle, the shim's state
// word says BUSY (magbuddy_preload_stats reports thread = 5), and a call
// re-entered from a signal handler must take the shared path: it may not
// use the handle the interrupted call is in the middle of. A handler that
// did would hand one block to two owners or lose one; the main loop keeps a
// ring of blocks stamped with their owner's pattern and checks each before
// freeing it, and the handlers write over what they allocate.
//
// SIGPROF fires on CPU time, so most signals land inside the loop; it runs
// until enough of them found the state BUSY (bounded by an iteration count,
// not by time).
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "shim_stats.h"

static size_t thread_state(void) { return stats().thread; }

static atomic_long busy_seen, ready_seen, other_seen, handler_failed;

static void on_prof(int sig) {
  (void)sig;
  size_t t = thread_state();
  if (t == 5) atomic_fetch_add(&busy_seen, 1);
  else if (t == 1) atomic_fetch_add(&ready_seen, 1);
  else atomic_fetch_add(&other_seen, 1);
  // Blocks of the loop's classes, each kept until a later signal (so a
  // handler that used the interrupted call's magazine would change it under
  // that call), and a cached page block, written over and freed.
  static unsigned char *held[8];
  static size_t held_len[8];
  static uint64_t n;
  int k = (int)(n % 8);
  if (held[k] && !(held[k][0] == 0xa5 && held[k][held_len[k] - 1] == 0xa5))
    atomic_fetch_add(&handler_failed, 1);
  free(held[k]);
  held_len[k] = 16 + (n * 37) % 113;
  held[k] = malloc(held_len[k]);
  if (held[k]) memset(held[k], 0xa5, held_len[k]);
  else atomic_fetch_add(&handler_failed, 1);
  n++;
  unsigned char *p = malloc(8192);
  if (p) {
    memset(p, 0xa5, 8192);
    free(p);
  } else {
    atomic_fetch_add(&handler_failed, 1);
  }
  // The state the interrupted call left is back.
  if (thread_state() != t) atomic_fetch_add(&handler_failed, 1);
}

static void stamp(unsigned char *p, size_t n, uint64_t v) {
  memcpy(p, &v, 8);
  memcpy(p + n - 8, &v, 8);
}

static int stamped(const unsigned char *p, size_t n, uint64_t v) {
  return memcmp(p, &v, 8) == 0 && memcmp(p + n - 8, &v, 8) == 0;
}

int main(void) {
  if (shim_stats_init("reentry")) return 1;
  free(malloc(1)); // claims this thread's handle
  if (thread_state() != 1) {
    fprintf(stderr, "reentry: no handle after the first malloc\n");
    return 1;
  }
  on_signal_run(SIGPROF, on_prof);
  struct itimerval it = {{0, 100}, {0, 100}};
  setitimer(ITIMER_PROF, &it, NULL);

  enum { RING = 64 };
  unsigned char *ring[RING] = {0};
  size_t len[RING] = {0};
  uint64_t tag[RING] = {0};
  long corrupt = 0, failed = 0, i;
  uint32_t x = 12345;
  for (i = 0; i < 400000000L && atomic_load(&busy_seen) < 30; i++) {
    int j = i & (RING - 1);
    if (ring[j] && !stamped(ring[j], len[j], tag[j])) corrupt++;
    free(ring[j]);
    x = x * 1664525u + 1013904223u;
    len[j] = 16 + (x >> 24) % 113;
    ring[j] = malloc(len[j]);
    if (!ring[j]) {
      failed++;
      continue;
    }
    tag[j] = ((uint64_t)i << 8) | (uint64_t)j;
    stamp(ring[j], len[j], tag[j]);
  }
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_PROF, &off, NULL);
  for (int j = 0; j < RING; j++) {
    if (ring[j] && !stamped(ring[j], len[j], tag[j])) corrupt++;
    free(ring[j]);
  }
  printf("reentry: %ld pairs; signals found the handle busy %ld, ready %ld, other %ld\n", i,
         atomic_load(&busy_seen), atomic_load(&ready_seen), atomic_load(&other_seen));
  int bad = 0;
  if (corrupt || failed || atomic_load(&handler_failed)) {
    fprintf(stderr, "reentry: %ld corrupted, %ld failed mallocs, %ld handler failures\n", corrupt,
            failed, atomic_load(&handler_failed));
    bad = 1;
  }
  if (atomic_load(&busy_seen) == 0) {
    fprintf(stderr, "reentry: no signal landed inside a call\n");
    bad = 1;
  }
  if (atomic_load(&other_seen) != 0 || thread_state() != 1) {
    fprintf(stderr, "reentry: the thread lost its handle\n");
    bad = 1;
  }
  if (!bad) printf("reentry: all checks passed\n");
  return bad;
}
