/* LD_PRELOAD malloc tracer for trace_live.py: records allocations (with call stacks) while switched on,
 * forgets them when freed, and dumps the stacks of those still alive. Development tool, glibc only. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <execinfo.h>
#include <string.h>
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
#define N (1<<21)
#define D 14
typedef struct { void *p; int n; void *bt[D]; } E;
static E *tab;
static volatile int rec = 0;
static __thread int busy = 0;
static size_t lo = 41, hi = 56;
void mt_set(int on, size_t l, size_t h) { if (!tab) tab = __libc_calloc(N, sizeof(E)); lo = l; hi = h; rec = on; }
static void add(void *p, size_t s) {
  if (!rec || !p || busy || s < lo || s > hi) return;
  busy = 1;
  size_t h = ((size_t)p >> 4) & (N-1);
  for (int i = 0; i < 64; i++, h = (h+1)&(N-1)) if (!tab[h].p || tab[h].p == (void*)1) { tab[h].p = p; tab[h].n = backtrace(tab[h].bt, D); break; }
  busy = 0;
}
static void del(void *p) {
  if (!tab || !p) return;
  size_t h = ((size_t)p >> 4) & (N-1);
  for (int i = 0; i < 64; i++, h = (h+1)&(N-1)) if (tab[h].p == p) { tab[h].p = (void*)1; /* tombstone */ tab[h].n = 0; break; }
}
void *malloc(size_t s) { void *p = __libc_malloc(s); add(p, s); return p; }
void *calloc(size_t a, size_t b) { void *p = __libc_calloc(a, b); add(p, a*b); return p; }
void *realloc(void *q, size_t s) { del(q); void *p = __libc_realloc(q, s); add(p, s); return p; }
void free(void *p) { del(p); __libc_free(p); }
int mt_dump(const char *path) {
  int was = rec; rec = 0; busy = 1;
  FILE *f = fopen(path, "w"); int c = 0;
  for (size_t i = 0; i < N; i++) if (tab[i].p && tab[i].p != (void*)1 && tab[i].n) {
    char **s = backtrace_symbols(tab[i].bt, tab[i].n);
    for (int j = 2; j < tab[i].n; j++) fprintf(f, "%s|", s ? s[j] : "?");
    fprintf(f, "\n"); c++; __libc_free(s);
  }
  fclose(f); busy = 0; rec = was; return c;
}
extern void *__libc_memalign(size_t, size_t);
int posix_memalign(void **out, size_t al, size_t s) { void *p = __libc_memalign(al, s); if (!p) return 12; add(p, s); *out = p; return 0; }
void *aligned_alloc(size_t al, size_t s) { void *p = __libc_memalign(al, s); add(p, s); return p; }
void *memalign(size_t al, size_t s) { void *p = __libc_memalign(al, s); add(p, s); return p; }
