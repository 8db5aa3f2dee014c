/*
 * web: the files the proxy serves to browsers, built into the binary so that
 * they work wherever the binary is, offline: the page (web/index.html, one
 * file of HTML, CSS and JavaScript, at GET /) and a few small sample images
 * to try it with (data/samples/, at GET /samples/{name}).
 */
#ifndef TANDEM_WEB_H
#define TANDEM_WEB_H

#include <stddef.h>

#include "errors.h"

#define WEB_ERR_NOT_FOUND (ERR_BASE_WEB - 1)

typedef struct web_file {
    const unsigned char *data;
    size_t len;
    const char *content_type;
    const char *cache_control;
} web_file;

/* The file at path ("/", "/samples/coffee.jpg", ...): 0 and *out, or
 * WEB_ERR_NOT_FOUND when there is none. */
int web_find(const char *path, web_file *out);

#endif
