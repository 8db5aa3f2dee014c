/*
 * queue_script: the queue's Lua scripts and how they are run.
 *
 * Every change that touches several keys is a Lua script, so it is atomic:
 * Redis runs a script with nothing interleaved. The scripts are the files
 * src/service/lua/NAME.lua (KEYS and ARGV described atop each), built in
 * with EMBED; the local functions several of them share are lua/lib/NAME.lua,
 * put in front of a script's text when it is loaded. A script is loaded
 * with SCRIPT LOAD on first use on a connection and run with EVALSHA; after
 * NOSCRIPT (Redis restarted, or its script cache was flushed) it is loaded
 * again and the call retried once.
 */
#include "queue_internal.h"

#include "embed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCRIPT_ARGS_MAX 20

/* The scripts live in src/service/lua/NAME.lua, built in with EMBED; the
 * local functions several of them share are lua/lib/NAME.lua, put in front
 * of a script's text when it is loaded (in the order of the LIB_ bits). */
EMBED(lua_lib_notify, "src/service/lua/lib/notify.lua");
EMBED(lua_lib_hook, "src/service/lua/lib/hook.lua");
EMBED(lua_lib_keep_ttl, "src/service/lua/lib/keep_ttl.lua");
EMBED(lua_lib_dead_letter, "src/service/lua/lib/dead_letter.lua");
EMBED(lua_lib_requeue, "src/service/lua/lib/requeue.lua");
EMBED(lua_lib_requeue_args, "src/service/lua/lib/requeue_args.lua");
EMBED(lua_lib_start, "src/service/lua/lib/start.lua");
EMBED(lua_lib_enqueue, "src/service/lua/lib/enqueue.lua");
EMBED(lua_create, "src/service/lua/create.lua");
EMBED(lua_register, "src/service/lua/register.lua");
EMBED(lua_get, "src/service/lua/get.lua");
EMBED(lua_start, "src/service/lua/start.lua");
EMBED(lua_done, "src/service/lua/done.lua");
EMBED(lua_fail, "src/service/lua/fail.lua");
EMBED(lua_expired, "src/service/lua/expired.lua");
EMBED(lua_heartbeat, "src/service/lua/heartbeat.lua");
EMBED(lua_requeue, "src/service/lua/requeue.lua");
EMBED(lua_reap_one, "src/service/lua/reap_one.lua");
EMBED(lua_stats, "src/service/lua/stats.lua");
EMBED(lua_notify, "src/service/lua/notify.lua");
EMBED(lua_hook_claim, "src/service/lua/hook_claim.lua");
EMBED(lua_hook_record, "src/service/lua/hook_record.lua");
EMBED(lua_invalid, "src/service/lua/invalid.lua");
EMBED(lua_take_more, "src/service/lua/take_more.lua");

enum {
    LIB_NOTIFY = 1,   /* notify() and hook() */
    LIB_KEEP_TTL = 2, /* keep_ttl() */
    LIB_DEAD = 4,     /* dead_letter() */
    LIB_REQUEUE = 8,  /* requeue() and its ARGV table a (needs the three above) */
    LIB_START = 16,   /* start_job() (needs the first three) */
    LIB_ENQUEUE = 32  /* enqueue() */
};

static const struct {
    const unsigned char *lib, *end;
    unsigned bit;
} libs[] = {
    {lua_lib_notify, lua_lib_notify_end, LIB_NOTIFY},
    {lua_lib_hook, lua_lib_hook_end, LIB_NOTIFY},
    {lua_lib_keep_ttl, lua_lib_keep_ttl_end, LIB_KEEP_TTL},
    {lua_lib_dead_letter, lua_lib_dead_letter_end, LIB_DEAD},
    {lua_lib_requeue, lua_lib_requeue_end, LIB_REQUEUE},
    {lua_lib_requeue_args, lua_lib_requeue_args_end, LIB_REQUEUE},
    {lua_lib_start, lua_lib_start_end, LIB_START},
    {lua_lib_enqueue, lua_lib_enqueue_end, LIB_ENQUEUE},
};

#define ALL_LIBS (LIB_NOTIFY | LIB_KEEP_TTL | LIB_DEAD | LIB_REQUEUE)
static const struct {
    const unsigned char *text, *end;
    unsigned libs;
} scripts[S_COUNT] = {
    [S_CREATE] = {lua_create, lua_create_end, LIB_ENQUEUE},
    [S_REGISTER] = {lua_register, lua_register_end, LIB_ENQUEUE},
    [S_GET] = {lua_get, lua_get_end, 0},
    [S_START] = {lua_start, lua_start_end, LIB_NOTIFY | LIB_KEEP_TTL | LIB_DEAD | LIB_START},
    [S_DONE] = {lua_done, lua_done_end, LIB_NOTIFY | LIB_KEEP_TTL},
    [S_FAIL] = {lua_fail, lua_fail_end, LIB_NOTIFY | LIB_KEEP_TTL | LIB_DEAD},
    [S_EXPIRED] = {lua_expired, lua_expired_end, LIB_NOTIFY | LIB_KEEP_TTL},
    [S_HEARTBEAT] = {lua_heartbeat, lua_heartbeat_end, 0},
    [S_REQUEUE] = {lua_requeue, lua_requeue_end, ALL_LIBS},
    [S_REAP_ONE] = {lua_reap_one, lua_reap_one_end, ALL_LIBS},
    [S_STATS] = {lua_stats, lua_stats_end, 0},
    [S_NOTIFY] = {lua_notify, lua_notify_end, LIB_NOTIFY},
    [S_HOOK_CLAIM] = {lua_hook_claim, lua_hook_claim_end, 0},
    [S_HOOK_RECORD] = {lua_hook_record, lua_hook_record_end, 0},
    [S_INVALID] = {lua_invalid, lua_invalid_end, LIB_DEAD},
    [S_TAKE_MORE] = {lua_take_more, lua_take_more_end,
                     LIB_NOTIFY | LIB_KEEP_TTL | LIB_DEAD | LIB_START},
};

/* The text of scripts[which]: its libraries, then itself (caller frees). */
static char *script_text(int which, size_t *len)
{
    size_t n = (size_t)(scripts[which].end - scripts[which].text), o = 0;
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++)
        if (scripts[which].libs & libs[i].bit) n += (size_t)(libs[i].end - libs[i].lib);
    char *t = malloc(n + 1);
    if (!t) return NULL;
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++)
        if (scripts[which].libs & libs[i].bit) {
            memcpy(t + o, libs[i].lib, (size_t)(libs[i].end - libs[i].lib));
            o += (size_t)(libs[i].end - libs[i].lib);
        }
    memcpy(t + o, scripts[which].text, (size_t)(scripts[which].end - scripts[which].text));
    t[n] = '\0';
    *len = n;
    return t;
}

static int load_script(queue *q, int which)
{
    size_t len = 0;
    char *text = script_text(which, &len);
    if (!text) return qi_fail(q, QUEUE_ERR_NOMEM, "out of memory loading a script");
    const char *argv[3] = {"SCRIPT", "LOAD", text};
    size_t lens[3] = {6, 4, len};
    redisReply *r = NULL;
    int rc = qi_command(q, 3, argv, lens, &r);
    free(text);
    if (rc) return rc;
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        freeReplyObject(r);
        return qi_fail(q, QUEUE_ERR_REPLY, "redis: SCRIPT LOAD gave no sha1");
    }
    memcpy(q->sha[which], r->str, 40);
    q->sha[which][40] = '\0';
    freeReplyObject(r);
    return 0;
}

/* argv/alen (SCRIPT_ARGS_MAX + 3 entries) = EVALSHA of scripts[which]
 * with nkeys keys followed by the other args; nk holds nkeys as text. */
static void evalsha_argv(const queue *q, int which, const char *nk, int nargs, const char **args,
                         const size_t *lens, const char **argv, size_t *alen)
{
    argv[0] = "EVALSHA";
    alen[0] = 7;
    argv[1] = q->sha[which];
    alen[1] = 40;
    argv[2] = nk;
    alen[2] = strlen(nk);
    for (int i = 0; i < nargs; i++) {
        argv[3 + i] = args[i];
        alen[3 + i] = lens ? lens[i] : strlen(args[i]);
    }
}

int qi_script(queue *q, int which, int nkeys, int nargs, const char **args, const size_t *lens,
              redisReply **out)
{
    const char *argv[SCRIPT_ARGS_MAX + 3];
    size_t alen[SCRIPT_ARGS_MAX + 3];
    char nk[12];
    if (nargs > SCRIPT_ARGS_MAX) return qi_fail(q, QUEUE_ERR_INVALID, "too many script args");
    snprintf(nk, sizeof nk, "%d", nkeys);
    for (int attempt = 0; attempt < 2; attempt++) {
        int rc = qi_ensure_connected(q);
        if (rc) return rc;
        if (!q->sha[which][0] && (rc = load_script(q, which))) return rc;
        evalsha_argv(q, which, nk, nargs, args, lens, argv, alen);
        rc = qi_command(q, nargs + 3, argv, alen, out);
        if (rc == QUEUE_ERR_REPLY && !strncmp(q->err, "redis: NOSCRIPT", 15)) {
            q->sha[which][0] = '\0';
            continue;
        }
        return rc;
    }
    return qi_fail(q, QUEUE_ERR_REPLY, "redis: script %d keeps disappearing", which);
}

int qi_script_then(queue *q, int which, int nkeys, int nargs, const char **args,
                   const size_t *lens, int argc, const char **argv, const size_t *alens,
                   redisReply **out, int *then_rc, redisReply **then_out)
{
    const char *sargv[SCRIPT_ARGS_MAX + 3];
    size_t salen[SCRIPT_ARGS_MAX + 3];
    char nk[12], err[sizeof q->err];
    redisReply *r = NULL;
    *then_rc = QUEUE_ERR_IO;
    *then_out = NULL;
    if (nargs > SCRIPT_ARGS_MAX) return qi_fail(q, QUEUE_ERR_INVALID, "too many script args");
    snprintf(nk, sizeof nk, "%d", nkeys);
    int rc = qi_ensure_connected(q);
    if (rc) return rc;
    if (!q->sha[which][0] && (rc = load_script(q, which))) return rc;
    evalsha_argv(q, which, nk, nargs, args, lens, sargv, salen);
    char *cmds[2] = {NULL, NULL};
    int clens[2] = {redisFormatCommandArgv(&cmds[0], nargs + 3, sargv, salen),
                    redisFormatCommandArgv(&cmds[1], argc, argv, alens)};
    if ((rc = qi_append_joined(q, 2, cmds, clens))) return rc;
    rc = qi_receive(q, &r);
    if (rc == QUEUE_ERR_IO) return rc; /* the connection, and the second reply, are gone */
    memcpy(err, q->err, sizeof err);
    *then_rc = qi_receive(q, then_out);
    if (rc == QUEUE_ERR_REPLY && !strncmp(err, "redis: NOSCRIPT", 15)) {
        q->sha[which][0] = '\0';
        return qi_script(q, which, nkeys, nargs, args, lens, out);
    }
    if (rc) {
        memcpy(q->err, err, sizeof err);
        return rc;
    }
    *out = r;
    return 0;
}
