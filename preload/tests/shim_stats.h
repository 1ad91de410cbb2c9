/* shim_stats.h -- the shim's introspection (magbuddy_preload_stats, see
 * preload/src/lib.rs) for the tests that read a thread's state, and the
 * signal set-up they share. shim_stats_init() first; it fails outside the
 * shim. */
#ifndef MAGBUDDY_SHIM_STATS_H
#define MAGBUDDY_SHIM_STATS_H
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

struct magbuddy_preload_stats {
  size_t slots_claimed; // handle slots held by threads now
  size_t slots_total;   // handle slots in the pool
  size_t thread;        // 0 no handle yet, 1 handle, 2 shared (pool full), 3 shared (exiting),
                        // 4 inside its claim, 5 inside a call that uses its handle
};
static void (*stats_fn)(struct magbuddy_preload_stats *);

static struct magbuddy_preload_stats stats(void) {
  struct magbuddy_preload_stats s;
  stats_fn(&s);
  return s;
}

/* 0 under the shim; otherwise says so on stderr (as `prog`) and returns -1. */
static int shim_stats_init(const char *prog) {
  stats_fn = (void (*)(struct magbuddy_preload_stats *))dlsym(RTLD_DEFAULT,
                                                              "magbuddy_preload_stats");
  if (!stats_fn) {
    fprintf(stderr, "%s: run under LD_PRELOAD of the magbuddy shim\n", prog);
    return -1;
  }
  return 0;
}

/* Runs `handler` on `sig`, restarting interrupted system calls. */
static void on_signal_run(int sig, void (*handler)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, NULL);
}
#endif
