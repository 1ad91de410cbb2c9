/* pairs.c -- `pairs <n>`: n malloc(64) + free pairs, nothing else, for
 * counting the shim's instructions per pair under callgrind: run it with
 * n = 10000 and n = 30000 and divide the difference of the two totals by
 * 20000 (start-up and exit cancel out). Command in papers/preload.md. */
#include <stdlib.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 10000;
    for (int i = 0; i < n; i++) {
        void *volatile p = malloc(64);
        free(p);
    }
    return 0;
}
