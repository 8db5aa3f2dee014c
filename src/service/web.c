/*
 * web: the embedded files (web.h), built in with EMBED (embed.h), so an edit
 * of one rebuilds web.o.
 */
#include "web.h"

#include <string.h>

#include "embed.h"

EMBED(tandem_web_index, "web/index.html");
EMBED(tandem_web_coffee, "data/samples/coffee.jpg");
EMBED(tandem_web_rocket, "data/samples/rocket.jpg");
EMBED(tandem_web_astronaut, "data/samples/astronaut.jpg");

int web_find(const char *path, web_file *out)
{
    static const char *const page_cache = "no-cache", *const sample_cache = "max-age=86400";
    const struct {
        const char *path;
        const unsigned char *data, *end;
        const char *type, *cache;
    } files[] = {
        {"/", tandem_web_index, tandem_web_index_end, "text/html; charset=utf-8", page_cache},
        {"/samples/coffee.jpg", tandem_web_coffee, tandem_web_coffee_end, "image/jpeg",
         sample_cache},
        {"/samples/rocket.jpg", tandem_web_rocket, tandem_web_rocket_end, "image/jpeg",
         sample_cache},
        {"/samples/astronaut.jpg", tandem_web_astronaut, tandem_web_astronaut_end, "image/jpeg",
         sample_cache},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (!strcmp(path, files[i].path)) {
            *out = (web_file){.data = files[i].data,
                              .len = (size_t)(files[i].end - files[i].data),
                              .content_type = files[i].type,
                              .cache_control = files[i].cache};
            return 0;
        }
    return WEB_ERR_NOT_FOUND;
}
