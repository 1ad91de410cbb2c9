/* wave.h -- the thread-wave workload shared by memory_return.c (a test)
 * and preload/bench/rss_phases.c (a benchmark): a short thread that makes
 * 2000 blocks of 16 B - 8 KiB, each replacing a random slot's block in a
 * table shared by all threads (so most frees are of another, often exited,
 * thread's block). Waves of 200 such threads once made the shim's RSS grow
 * without bound. */
#ifndef MAGBUDDY_WAVE_H
#define MAGBUDDY_WAVE_H
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 4096
static void *slots[SLOTS];
static pthread_mutex_t slots_mu = PTHREAD_MUTEX_INITIALIZER;

/* `arg`: a seed (the thread's number in its wave, from 1). */
static void *wave_thread(void *arg) {
    unsigned s = (unsigned)(size_t)arg * 2654435761u;
    for (int i = 0; i < 2000; i++) {
        s = s * 1103515245 + 12345;
        size_t size = 16 + (s >> 8) % 8000;
        void *p = malloc(size);
        memset(p, 1, size);
        int k = (s >> 4) % SLOTS;
        pthread_mutex_lock(&slots_mu);
        void *old = slots[k];
        slots[k] = p;
        pthread_mutex_unlock(&slots_mu);
        free(old);
    }
    return 0;
}
#endif
