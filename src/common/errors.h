/*
 * errors: the one status convention of tandem.
 *
 * A function that can fail returns int: 0 for success, or a negative code
 * from its module's enum, and says the details in an err buffer where it
 * takes one; a function that returns a pointer returns NULL on failure. Each
 * module owns a range of 100 codes that no other module uses, so a code read
 * anywhere (a log line, a worker's job record, a test) names its module, and
 * status_str() (src/service/status.h) names every code of every range:
 *
 *     -1 .. -99      TDM_ERR_*       engine and image (include/tandem/engine.h)
 *     -100 .. -199   CONFIG_ERR_*    service/config.h
 *     -200 .. -299   API_ERR_*       service/api.h (each maps to an HTTP status)
 *     -300 .. -399   QUEUE_ERR_*     service/queue.h
 *     -400 .. -499   CODEC_ERR_*     service/codec.h
 *     -500 .. -599   HTTP_ERR_*      service/http.h
 *     -600 .. -699   WEBHOOK_ERR_*   service/webhook.h
 *     -700 .. -799   PUSH_ERR_*      service/push.h
 *     -800 .. -899   SENTINEL_ERR_*  service/sentinel.h
 *     -900 .. -999   PROXY_ERR_*     service/proxy_taskq.h, proxy_waiter.h
 *     -1000 .. -1099 MODELS_ERR_*    service/models.h
 *     -1100 .. -1199 WEB_ERR_*       service/web.h
 *
 * What is not a status keeps its own meaning and says so in its header: a
 * command (cli_*) returns the process exit status (0 ok, 1 failed, 2 bad
 * usage or configuration); a predicate returns 0 or 1; a count returns >= 0.
 * A static helper may return 0/-1 to its own file, but a -1 never crosses a
 * header. A new module takes the next free range here.
 */
#ifndef TANDEM_ERRORS_H
#define TANDEM_ERRORS_H

#define ERR_BASE_TDM 0
#define ERR_BASE_CONFIG (-100)
#define ERR_BASE_API (-200)
#define ERR_BASE_QUEUE (-300)
#define ERR_BASE_CODEC (-400)
#define ERR_BASE_HTTP (-500)
#define ERR_BASE_WEBHOOK (-600)
#define ERR_BASE_PUSH (-700)
#define ERR_BASE_SENTINEL (-800)
#define ERR_BASE_PROXY (-900)
#define ERR_BASE_MODELS (-1000)
#define ERR_BASE_WEB (-1100)
#define ERR_RANGE 100

#endif
