/* The small malloc+free pair: a ring of 64 live objects of 8-128 bytes,
 * each step frees the oldest and allocates a new one. Counted with
 * callgrind by bench-c/pairs.sh (instructions per pair, loop included). */
#include <stdint.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    void *ring[64] = {0};
    uint32_t x = 12345;
    for (long i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        size_t size = 8 + (x >> 24) % 121;
        int j = i & 63;
        free(ring[j]);
        ring[j] = malloc(size);
        *(volatile char *)ring[j] = 1;
    }
    for (int j = 0; j < 64; j++)
        free(ring[j]);
    return 0;
}
