/* rss_phases.c -- resident memory over time through malloc, for
 * preload/eval.sh --rss: a long-running program whose working set comes
 * and goes, run under each allocator by LD_PRELOAD. It never calls
 * malloc_trim: what RSS does after each free is the allocator's own doing.
 *
 * Stages, in order (RSS sampled every 20 ms by a thread that reads
 * /proc/self/statm with open/read, so the sampler itself allocates nothing):
 *   1-5. a phase per size (64 B, 1000 B, 4000 B, 40 000 B, 300 000 B):
 *        allocate 256 MiB of that size, write every byte, free it all in
 *        allocation order, then stay idle for 300 ms;
 *   6.   mixed: 256 MiB of all five sizes in turn, free every other block,
 *        idle, free the rest, idle (a half-used heap, then an empty one);
 *   7.   5 waves of 200 short threads, each making 2000 blocks of 16 B -
 *        8 KiB and swapping them into a shared table of 4096 slots (so most
 *        frees are of another, often exited, thread's block), then idle;
 *   8.   300 fork()s, each child _exit(0)s at once, the parent waits: a
 *        fork copies the page tables of everything mapped and resident, so
 *        memory kept after the waves makes every fork slower.
 *
 * Output: stdout is CSV "ms,rss_mib,stage" (one row per sample); stderr
 * gets one line per stage end ("stage <name>: RSS <n> MiB") and
 * "forks: 300 in <s> s". Usage: rss_phases [waves] ("waves": stages 7 and
 * 8 only, the forks right after the thread waves). */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../tests/wave.h"

#define MIB (1ul << 20)
#define SAMPLES 20000
#define SAMPLE_MS 20

static const char *stage_names[] = {
    "64 B", "1000 B", "4000 B", "40000 B", "300000 B", "mixed", "thread waves", "fork",
};
static atomic_int stage;
static atomic_int done;
static struct {
    long ms, kib;
    int stage;
} samples[SAMPLES];
static atomic_int nsamples;
static struct timespec t0;

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
}

/* Resident KiB from /proc/self/statm (second field, in pages), no malloc. */
static long rss_kib(void) {
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = strchr(buf, ' ');
    return p ? atol(p + 1) * (sysconf(_SC_PAGESIZE) / 1024) : -1;
}

static void *sampler(void *arg) {
    (void)arg;
    while (!atomic_load(&done)) {
        int i = atomic_load(&nsamples);
        if (i < SAMPLES) {
            samples[i].ms = now_ms();
            samples[i].kib = rss_kib();
            samples[i].stage = atomic_load(&stage);
            atomic_store(&nsamples, i + 1);
        }
        usleep(SAMPLE_MS * 1000);
    }
    return 0;
}

static void idle(int ms) { usleep(ms * 1000); }

static void end_stage(void) {
    fprintf(stderr, "stage %s: RSS %ld MiB\n", stage_names[atomic_load(&stage)], rss_kib() >> 10);
}

/* Allocates blocks of `sizes` in turn (written in full) until `bytes` are
 * allocated; returns the array of them, its length in *n. */
static char **fill(const size_t *sizes, int nsizes, size_t bytes, size_t *n) {
    size_t cap = bytes / sizes[0] + 1, total = 0;
    char **v = malloc(cap * sizeof *v);
    for (*n = 0; total < bytes && *n < cap; (*n)++) {
        size_t size = sizes[*n % nsizes];
        v[*n] = malloc(size);
        memset(v[*n], 1, size);
        total += size;
    }
    return v;
}

int main(int argc, char **argv) {
    int all = !(argc > 1 && !strcmp(argv[1], "waves"));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_t sam;
    pthread_create(&sam, 0, sampler, 0);
    idle(100);

    const size_t sizes[] = {64, 1000, 4000, 40000, 300000};
    for (int s = 0; s < 5 && all; s++) {
        atomic_store(&stage, s);
        size_t n;
        char **v = fill(&sizes[s], 1, 256 * MIB, &n);
        for (size_t i = 0; i < n; i++) free(v[i]);
        free(v);
        idle(300);
        end_stage();
    }

    atomic_store(&stage, 5);
    if (all) {
        size_t n;
        char **v = fill(sizes, 5, 256 * MIB, &n);
        for (size_t i = 0; i < n; i += 2) free(v[i]);
        idle(300);
        for (size_t i = 1; i < n; i += 2) free(v[i]);
        free(v);
        idle(300);
        end_stage();
    }

    atomic_store(&stage, 6);
    for (int w = 0; w < 5; w++) {
        pthread_t t[200];
        for (int i = 0; i < 200; i++)
            pthread_create(&t[i], 0, wave_thread, (void *)(size_t)(w * 200 + i + 1));
        for (int i = 0; i < 200; i++) pthread_join(t[i], 0);
    }
    idle(300);
    end_stage();

    atomic_store(&stage, 7);
    long start = now_ms();
    for (int i = 0; i < 300; i++) {
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        if (pid > 0) waitpid(pid, 0, 0);
    }
    long took = now_ms() - start;
    idle(100);
    end_stage();
    fprintf(stderr, "forks: 300 in %.2f s\n", took / 1000.0);

    atomic_store(&done, 1);
    pthread_join(sam, 0);
    int n = atomic_load(&nsamples);
    printf("ms,rss_mib,stage\n");
    for (int i = 0; i < n; i++)
        printf("%ld,%.1f,%s\n", samples[i].ms, samples[i].kib / 1024.0, stage_names[samples[i].stage]);
    return 0;
}
