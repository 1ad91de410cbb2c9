/* Memory comes back: phases that allocate 128 MiB of one size, free it
 * all and call malloc_trim(0) must leave RSS small; so must freeing 512 MiB
 * without malloc_trim (the heap trims by itself); calloc(1, 1 GiB) must
 * not touch its pages; waves of 200 short threads handing blocks to each
 * other must reuse freed memory (glibc: about 90 MiB; the shim before it
 * searched from the heap's bottom: 2.6 GiB after three waves). RSS, not
 * time, is asserted. Run under the shim by preload/test.sh. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wave.h"

static long rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kib = atol(line + 6);
    if (f) fclose(f);
    return kib >> 10;
}

int main(void) {
    const size_t sizes[] = {64, 1000, 4000, 40000, 300000};
    int failed = 0;
    for (int s = 0; s < 5; s++) {
        size_t n = (128u << 20) / sizes[s];
        char **v = malloc(n * sizeof *v);
        for (size_t i = 0; i < n; i++) {
            v[i] = malloc(sizes[s]);
            memset(v[i], 1, sizes[s]);
        }
        long full = rss_mib();
        for (size_t i = 0; i < n; i++) free(v[i]);
        free(v);
        malloc_trim(0);
        long trimmed = rss_mib();
        printf("memory_return: %zu B phase: RSS %ld MiB full, %ld MiB after free + malloc_trim\n",
               sizes[s], full, trimmed);
        if (trimmed > 32) {
            printf("memory_return: FAIL: %ld MiB after malloc_trim (limit 32)\n", trimmed);
            failed = 1;
        }
    }
    /* Without malloc_trim: 512 MiB in blocks of 64 B to 300 KB (mixed, so
     * every path home is taken), all freed; the heap trims by itself once
     * 64 MiB came home (MAGBUDDY_TRIM_EVERY), so RSS must fall without the
     * program asking. glibc keeps most of this (its heap top is trimmed, the
     * rest waits for malloc_trim). */
    {
        const size_t mixed[] = {64, 1000, 4000, 40000, 300000};
        size_t n = 0, cap = (512u << 20) / 64, bytes = 0;
        char **v = malloc(cap * sizeof *v);
        for (size_t i = 0; bytes < (512u << 20); i++) {
            size_t size = mixed[i % 5];
            v[n] = malloc(size);
            memset(v[n++], 1, size);
            bytes += size;
        }
        long full = rss_mib();
        for (size_t i = 0; i < n; i++) free(v[i]);
        free(v);
        long freed = rss_mib();
        printf("memory_return: 512 MiB mixed: RSS %ld MiB full, %ld MiB after free (no malloc_trim)\n",
               full, freed);
        if (freed > 64) {
            printf("memory_return: FAIL: %ld MiB after freeing 512 MiB without malloc_trim (limit 64)\n",
                   freed);
            failed = 1;
        }
    }
    long before = rss_mib();
    char *c = calloc(1, 1u << 30);
    long after = rss_mib();
    int zero = c && c[0] == 0 && c[(1u << 30) - 1] == 0 && c[12345] == 0;
    printf("memory_return: calloc(1, 1 GiB): RSS %ld -> %ld MiB, zero %d\n", before, after, zero);
    if (!c || !zero || after - before > 16) {
        printf("memory_return: FAIL: calloc(1, 1 GiB) touched its pages or is not zero\n");
        failed = 1;
    }
    /* Dirty it, free it, take it again: still zero. */
    memset(c, 7, 1u << 20);
    free(c);
    c = calloc(1, 1u << 30);
    if (!c || c[0] != 0 || c[(1u << 20) - 1] != 0) {
        printf("memory_return: FAIL: a reused calloc block is not zero\n");
        failed = 1;
    }
    free(c);
    long waves = 0;
    for (int w = 0; w < 3; w++) {
        pthread_t t[200];
        for (int i = 0; i < 200; i++)
            pthread_create(&t[i], 0, wave_thread, (void *)(size_t)(w * 200 + i + 1));
        for (int i = 0; i < 200; i++) pthread_join(t[i], 0);
        waves = rss_mib();
    }
    printf("memory_return: 3 waves of 200 threads: RSS %ld MiB\n", waves);
    if (waves > 200) {
        printf("memory_return: FAIL: %ld MiB after the thread waves (limit 200)\n", waves);
        failed = 1;
    }
    if (!failed) printf("memory_return: all checks passed\n");
    return failed;
}
