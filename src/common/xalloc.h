/*
 * xalloc: the one wrapper for internal allocations that cannot fail
 * sensibly (graph bookkeeping, plans) — they print and abort on exhaustion.
 * Anything sized by outside input is capped and checked by its caller
 * before it gets here (STYLE.md, practice 4).
 */
#ifndef TANDEM_XALLOC_H
#define TANDEM_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
void *xmemdup(const void *p, size_t n);
char *xstrdup(const char *s);          /* NULL is copied as "" */
char *xstrndup(const char *s, size_t n);

#endif
