/*
 * image_internal: the one helper the image files share. The ground floor of
 * src/image: decoding (image.c), resizing and labels all report through it,
 * and it calls none of them.
 */
#include <stdarg.h>
#include <stdio.h>

#include "image_internal.h"

void image_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
