// Edge cases of every function the magbuddy shim exports. Run under
// LD_PRELOAD=libmagbuddy_preload.so (preload/test.sh); checks its own results
// and exits non-zero on the first failure. Also passes under glibc, except
// where glibc's policy differs (noted), so the checks are the shim's own.
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;
#define CHECK(c)                                                              \
  do {                                                                        \
    if (!(c)) {                                                               \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c);            \
      failures++;                                                             \
    }                                                                         \
  } while (0)

static int aligned_to(void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static int all_zero(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

static void test_malloc(void) {
  void *a = malloc(0), *b = malloc(0);
  CHECK(a && b && a != b);
  CHECK(aligned_to(a, 16));
  free(a);
  free(b);
  for (size_t s = 1; s <= (1 << 22); s = s * 3 + 1) {
    unsigned char *p = malloc(s);
    CHECK(p && aligned_to(p, 16));
    CHECK(malloc_usable_size(p) >= s);
    memset(p, 0xab, s);
    free(p);
  }
  errno = 0;
  CHECK(malloc(SIZE_MAX) == NULL && errno == ENOMEM);
  errno = 0;
  CHECK(malloc(SIZE_MAX / 2) == NULL && errno == ENOMEM);
  errno = 0;
  CHECK(malloc((size_t)1 << 50) == NULL && errno == ENOMEM);
  free(NULL);
  CHECK(malloc_usable_size(NULL) == 0);
}

static void test_calloc(void) {
  // Dirty some blocks, free them, then calloc must still return zeroes.
  for (int round = 0; round < 4; round++) {
    void *ps[64];
    for (int i = 0; i < 64; i++) {
      ps[i] = malloc(100 + 37 * i);
      memset(ps[i], 0xff, 100 + 37 * i);
    }
    for (int i = 0; i < 64; i++) free(ps[i]);
    for (int i = 0; i < 64; i++) {
      ps[i] = calloc(1, 100 + 37 * i);
      CHECK(ps[i] && all_zero(ps[i], 100 + 37 * i));
    }
    for (int i = 0; i < 64; i++) free(ps[i]);
  }
  unsigned char *big = malloc(1 << 20);
  memset(big, 0x5a, 1 << 20);
  free(big);
  big = calloc(1 << 10, 1 << 10);
  CHECK(big && all_zero(big, 1 << 20));
  free(big);
  void *z = calloc(0, 0), *z2 = calloc(0, 5);
  CHECK(z && z2 && z != z2);
  free(z);
  free(z2);
  errno = 0;
  CHECK(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);  // overflow
  errno = 0;
  CHECK(calloc((size_t)1 << 33, (size_t)1 << 33) == NULL && errno == ENOMEM);
  errno = 0;
  CHECK(calloc(1, SIZE_MAX) == NULL && errno == ENOMEM);
}

/* Fitted classes: small requests get the smallest 16-aligned class that
   holds them, not the next power of two; above 2 KiB the multi-page classes
   2560, 3072 and 5120 (sqlite3's 4096 + header page buffers), else a page
   block. */
static void test_fitted(void) {
  static const size_t want[][2] = {
      {24, 32},     {48, 48},     {100, 112},   {700, 768},   {1100, 1280}, {2000, 2048},
      {2049, 2560}, {3000, 3072}, {3073, 4096}, {4104, 5120}, {4368, 5120}, {5121, 8192}};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    unsigned char *p = malloc(want[i][0]), *q = calloc(1, want[i][0]);
    CHECK(p && q && aligned_to(p, 16) && aligned_to(q, 16));
    CHECK(malloc_usable_size(p) == want[i][1]);
    CHECK(malloc_usable_size(q) == want[i][1] && all_zero(q, want[i][0]));
    memset(p, 0x5a, want[i][1]);
    unsigned char *r = realloc(p, want[i][1]);  // same class: in place
    CHECK(r == p);
    free(r);
    free(q);
  }
  void *a = aligned_alloc(64, 96);  // 96 is 32-aligned only: 128
  CHECK(a && aligned_to(a, 64) && malloc_usable_size(a) == 128);
  free(a);
}

static void test_realloc(void) {
  unsigned char *p = realloc(NULL, 10);  // = malloc(10)
  CHECK(p);
  memcpy(p, "abcdefghi", 10);
  unsigned char *q = realloc(p, 12);  // same 16-byte block: in place
  CHECK(q == p && memcmp(q, "abcdefghi", 10) == 0);
  q = realloc(q, 5000);  // grows: moves, keeps contents
  CHECK(q && memcmp(q, "abcdefghi", 10) == 0);
  for (int i = 10; i < 5000; i++) q[i] = (unsigned char)i;
  unsigned char *r = realloc(q, 1 << 20);
  CHECK(r);
  for (int i = 10; i < 5000; i++) CHECK(r[i] == (unsigned char)i) ;
  r = realloc(r, 7);  // shrinks: contents of the first 7 bytes kept
  CHECK(r && memcmp(r, "abcdefg", 7) == 0);
  errno = 0;
  void *s = realloc(r, SIZE_MAX);  // fails, r untouched
  CHECK(s == NULL && errno == ENOMEM && memcmp(r, "abcdefg", 7) == 0);
  // Policy (as glibc): realloc(p, 0) frees p and returns NULL.
  CHECK(realloc(r, 0) == NULL);
  errno = 0;
  CHECK(reallocarray(NULL, SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
  void *t = reallocarray(NULL, 10, 10);
  CHECK(t && malloc_usable_size(t) >= 100);
  free(t);
}

static void test_aligned(void) {
  for (size_t a = sizeof(void *); a <= (1 << 21); a <<= 1) {
    void *p = NULL;
    CHECK(posix_memalign(&p, a, 1) == 0 && p && aligned_to(p, a));
    free(p);
    p = NULL;
    CHECK(posix_memalign(&p, a, 3 * a + 1) == 0 && aligned_to(p, a));
    CHECK(malloc_usable_size(p) >= 3 * a + 1);
    free(p);
    p = aligned_alloc(a, 2 * a);
    CHECK(p && aligned_to(p, a));
    free(p);
    p = memalign(a, 5);
    CHECK(p && aligned_to(p, a));
    free(p);
  }
  void *p = (void *)1;
  CHECK(posix_memalign(&p, 0, 8) == EINVAL && p == (void *)1);
  CHECK(posix_memalign(&p, 24, 8) == EINVAL);
  CHECK(posix_memalign(&p, 4, 8) == EINVAL);  // not a multiple of sizeof(void*)
  CHECK(posix_memalign(&p, 64, SIZE_MAX) == ENOMEM);
  p = NULL;
  CHECK(posix_memalign(&p, 64, 0) == 0 && p);  // size 0: a unique block
  free(p);
  errno = 0;
  CHECK(aligned_alloc(24, 48) == NULL && errno == EINVAL);
  errno = 0;
  CHECK(aligned_alloc(0, 48) == NULL && errno == EINVAL);
  errno = 0;
  CHECK(memalign(48, 48) == NULL && errno == EINVAL);  // glibc rounds up instead
  errno = 0;
  CHECK(aligned_alloc(64, SIZE_MAX) == NULL && errno == ENOMEM);
  long page = sysconf(_SC_PAGESIZE);
  p = valloc(1);
  CHECK(p && aligned_to(p, page));
  free(p);
  p = valloc(0);
  CHECK(p && aligned_to(p, page));
  free(p);
  p = pvalloc(1);
  CHECK(p && aligned_to(p, page) && malloc_usable_size(p) >= (size_t)page);
  free(p);
  p = pvalloc(0);
  CHECK(p && aligned_to(p, page) && malloc_usable_size(p) >= (size_t)page);
  free(p);
  errno = 0;
  CHECK(pvalloc(SIZE_MAX) == NULL && errno == ENOMEM);
  errno = 0;
  CHECK(valloc(SIZE_MAX) == NULL && errno == ENOMEM);
}

// Threads: each allocates, hands half its blocks to the next thread to free
// (cross-thread frees), and exits (releasing its handle). More threads than
// the 64 handle slots, so some use the shared path.
#define THREADS 80
#define PER 2000
static void *handoff[THREADS][PER];

static void *worker(void *arg) {
  long t = (long)arg;
  for (int i = 0; i < PER; i++) {
    size_t s = 1 + (size_t)((i * 2654435761u + t) % 20000);
    unsigned char *p = malloc(s);
    if (!p) { fprintf(stderr, "thread %ld: malloc(%zu) = NULL (errno %d)\n", t, s, errno); return (void *)1; }
    p[0] = (unsigned char)t;
    if (s > 1) p[s - 1] = (unsigned char)i;
    handoff[t][i] = p;
  }
  for (int i = 0; i < PER; i += 2) {
    if (((unsigned char *)handoff[t][i])[0] != (unsigned char)t) { fprintf(stderr, "thread %ld: block %d overwritten\n", t, i); return (void *)1; }
    free(handoff[t][i]);
  }
  return NULL;
}

static void test_threads(void) {
  pthread_t th[THREADS];
  for (long r = 0; r < 3; r++) {
    for (long t = 0; t < THREADS; t++) CHECK(pthread_create(&th[t], NULL, worker, (void *)t) == 0);
    for (long t = 0; t < THREADS; t++) {
      void *ret;
      pthread_join(th[t], &ret);
      CHECK(ret == NULL);
    }
    // Cross-thread frees: the main thread frees what the others left.
    for (int t = 0; t < THREADS; t++)
      for (int i = 1; i < PER; i += 2) free(handoff[t][i]);
  }
}

// fork with other threads mid-allocation: the child allocates and frees.
static volatile int stop;
static void *churn(void *arg) {
  (void)arg;
  while (!stop) {
    void *p[16];
    for (int i = 0; i < 16; i++) p[i] = malloc(16 << i);
    for (int i = 0; i < 16; i++) free(p[i]);
  }
  return NULL;
}

static void test_fork(void) {
  pthread_t th[4];
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, churn, NULL);
  for (int k = 0; k < 20; k++) {
    pid_t pid = fork();
    if (pid == 0) {
      int bad = 0;
      for (int i = 0; i < 10000; i++) {
        char *p = malloc(1 + i % 5000);
        if (!p) bad = 1;
        else { p[0] = 1; free(p); }
      }
      void *q = calloc(100, 100);
      if (!q || !all_zero(q, 10000)) bad = 1;
      free(q);
      _exit(bad);
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  stop = 1;
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
}

// An invalid or double free must abort with a message naming the pointer.
static void expect_abort(int which) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    char *p = malloc(100);
    if (which == 0) { free(p); free(p); }          // double free
    else if (which == 1) free(p + 16);             // interior pointer
    else if (which == 2) { static char s[32]; free(s + 16); }  // not from malloc
    else if (which == 3) { char *b = malloc(1 << 20); free(b); free(b); }  // large double free
    else if (which == 4) { char *b = malloc(8192); free(b); free(b); }  // cached page
    else if (which == 6) { char *b = malloc(4368); free(b); free(b); }  // 5120 B object
    else if (which == 7) { char *b = malloc(4368); free(b + 4096); }  // its second page
    else if (which == 8) {  // a 2560 B class slab's tail, past its 6 objects
      char *b = malloc(2100);
      free((char *)((uintptr_t)b & ~(uintptr_t)16383) + 6 * 2560);
    }
    else if (which == 5) { free(p); p = realloc(p, 110); }  // realloc of a freed block (same class)
    _exit(0);
  }
  close(fds[1]);
  char buf[512] = {0};
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
  CHECK(n > 0 && strstr(buf, "0x") != NULL);
  if (getenv("EDGE_VERBOSE")) fprintf(stderr, "abort %d: %s", which, buf);
}

int main(void) {
  test_malloc();
  test_fitted();
  test_calloc();
  test_realloc();
  test_aligned();
  test_threads();
  test_fork();
  for (int i = 0; i < 9; i++) expect_abort(i);
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("edge: all checks passed\n");
  return 0;
}
