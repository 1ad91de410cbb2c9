// A live block that holds the shim's free-tag value at bytes 4..8 (any
// program may store it) is freed while a magazine it was a round of is
// flushed: short-lived threads free 64 B blocks into their magazines and
// exit (the magazines go to the depot), another thread empties the depot
// (malloc_trim) in a loop, and the main thread allocates 64 B blocks,
// stores the value and frees each once. Before the drain fix of 2026-11-30
// (1aaac3a, verify profile) the shim aborted with "double free" in 2 of 3
// runs of 2 s. Runs for the number of seconds given (default 2).
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile int stop;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *short_lived(void *arg) {
  (void)arg;
  void *v[200];
  for (int i = 0; i < 200; i++) v[i] = malloc(64);
  for (int i = 0; i < 200; i++) free(v[i]);
  return NULL;
}

static void *spawner(void *arg) {
  (void)arg;
  while (!stop) {
    pthread_t t;
    if (pthread_create(&t, NULL, short_lived, NULL) == 0) pthread_join(t, NULL);
  }
  return NULL;
}

static void *trimmer(void *arg) {
  (void)arg;
  while (!stop) malloc_trim(0);
  return NULL;
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 2.0;
  const uint32_t tag = 0x6d627501u;
  pthread_t s, t;
  pthread_create(&s, NULL, spawner, NULL);
  pthread_create(&t, NULL, trimmer, NULL);
  long frees = 0;
  for (double t0 = now(); now() - t0 < secs;) {
    unsigned char *v[300];
    for (int i = 0; i < 300; i++) {
      v[i] = malloc(64);
      if (!v[i]) abort();
      memset(v[i], 0, 64);
      memcpy(v[i] + 4, &tag, sizeof tag);
    }
    for (int i = 0; i < 300; i++, frees++) free(v[i]);
  }
  stop = 1;
  pthread_join(s, NULL);
  pthread_join(t, NULL);
  printf("tag_race: %ld frees of live blocks holding the tag, none refused\n", frees);
  return 0;
}
