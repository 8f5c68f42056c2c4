/* Runs requests over one libcurl multi handle: a single call is a batch of
 * one, get_messages a batch of many, up to `concurrency` at once (HTTP/2
 * multiplexing where offered). It retries by the rules of retry.c and, for
 * batches, paces starts by the rate-limit window the server reports. Every
 * wait is bounded by the settings. Plain C, no Lua: the caller shapes each
 * finished request between calls of ghl_batch_next. One multi handle, so a
 * client has one connection cache. */
#ifndef GHL_BATCH_H
#define GHL_BATCH_H

#include "options.h"
#include "request.h"
#include "transfer.h"
#include "window.h"

typedef struct ghl_job {
    ghl_request request;
    int state; /* internal */
    int attempts;
    double due;              /* waiting: when to try again */
    unsigned long tag;       /* the caller's own mark */
    unsigned long token_gen; /* which token its last attempt carried */
    int wants_token;         /* finished with a 401 the caller may cure with a new token */
    int token_renewed;       /* has had its one repeat with a new token */
} ghl_job;

/* What a call may set for its own requests. */
typedef struct ghl_limits {
    int retries;
    long timeout_ms, connect_timeout_ms;
} ghl_limits;

typedef struct ghl_run_settings {
    int concurrency;
    ghl_limits limits; /* of every job, except in a looped run (ghl_batch_add) */
    double max_retry_delay;
    int paced;        /* start nothing while the window says none remain */
    int renew_on_401; /* a 401 (not "Command timed out") finishes a job with wants_token */
} ghl_run_settings;

/* A looped run's own copy of what a job was added with (same index): the
 * caller's strings are gone once ghl_batch_add returns. */
typedef struct ghl_looped_slot {
    char arg[GHL_MAX_PATH_ARGS][GHL_MAX_ID_LEN + 1];
    ghl_endpoint endpoint;
    char *owned; /* path, query, body and version, one block; NULL: none */
    ghl_limits limits;
} ghl_looped_slot;

typedef struct ghl_batch {
    const ghl_transport_config *config;
    CURLM *multi;
    ghl_transfer *pool[GHL_MAX_CONCURRENCY]; /* each allocated alone: libcurl keeps its address */
    int pool_size;
    ghl_ratelimit last_ratelimit; /* the last response's figures */
    double last_at;               /* when it came; 0: no response yet */
    unsigned long rng;
    /* the run in progress */
    ghl_job *jobs;
    int *heap; /* waiting jobs, soonest due first */
    int heap_len, count, next_fresh, done, running;
    ghl_run_settings settings;
    ghl_window window;
    ghl_transfer *handed; /* its job was handed out; idle again at the next call */
    int fatal;            /* CURLMcode that ended the run, 0: none */
    ghl_response fatal_response;
    ghl_buffer url;          /* the URL of the transfer being set up */
    unsigned long token_gen; /* the token the headers now carry */
    /* looped: driven by the host's event loop (ghl_batch_open_looped) */
    int looped;
    int epoll_fd;           /* the sockets libcurl waits on; the host watches this one */
    double curl_due;        /* when libcurl's timer runs out; < 0: not set */
    int watch_failed;       /* a socket could not be added to the set */
    ghl_looped_slot *slots; /* the run's jobs and their copies, grown as jobs come */
    int cap;
} ghl_batch;

/* Sets up an idle batch engine (nothing is allocated until a run). */
void ghl_batch_init(ghl_batch *b, const ghl_transport_config *cfg, unsigned long seed);

/* Starts a run over count jobs (their request set, the rest zeroed by this
 * call); heap has room for count ints. Both arrays outlive the run. Returns
 * CURLE_OK, or why the engine could not be made ready. */
CURLcode ghl_batch_start(ghl_batch *b, ghl_job *jobs, int *heap, int count, const ghl_run_settings *s);

/* Drives the transfers until a job is finished for good, and returns it with
 * its last response (valid until the next call), or NULL when all are done. */
ghl_job *ghl_batch_next(ghl_batch *b, ghl_response **response);

/* The job ghl_batch_next just handed out with wants_token goes again, at
 * once, with the token the headers now carry; the repeat does not count
 * against the retries. */
void ghl_batch_repeat_now(ghl_batch *b, ghl_job *job);

/* The common header list changed (a new token, generation gen): transfers
 * set it again before their next request. */
void ghl_batch_headers_changed(ghl_batch *b, unsigned long gen);

/* Ends the run (also one cut short by a Lua error): every transfer is taken
 * off the multi handle. Idempotent. */
void ghl_batch_end(ghl_batch *b);

/* Drops every connection without using it again: after fork(), the sockets
 * are the parent's too. */
void ghl_batch_forget_connections(ghl_batch *b);

/* ---- looped runs: jobs come and go while the host's event loop runs ----
 * The engine never waits itself: libcurl's sockets go into an epoll set
 * whose one descriptor (ghl_batch_fd) the host watches for reading, and
 * ghl_batch_next returns NULL as soon as nothing is finished yet; call it
 * again when that descriptor is readable or ghl_batch_wait_ms has passed. */

/* Starts an endless run with no jobs. Returns CURLE_OK, or why not. */
CURLcode ghl_batch_open_looped(ghl_batch *b, const ghl_run_settings *s);

/* Adds a job for request r (all it points at is copied) with its own limits;
 * tag marks it for the caller. Returns the job, or NULL when memory runs out.
 * Not while a job handed out by ghl_batch_next is still being read. */
ghl_job *ghl_batch_add(ghl_batch *b, const ghl_request *r, const ghl_limits *limits, unsigned long tag);

/* The descriptor to watch (readable: call ghl_batch_next), or -1. */
int ghl_batch_fd(const ghl_batch *b);

/* How soon to call ghl_batch_next again at the latest, in ms; -1: no job
 * is left, nothing to do until one is added. */
long ghl_batch_wait_ms(const ghl_batch *b);

/* Finishes the next job that has not started (no response: the caller
 * says why it fails), or returns NULL when there is none. */
ghl_job *ghl_batch_take_unstarted(ghl_batch *b);

/* The job handed out last is read (or lost to an error): its slot may go. */
void ghl_batch_release_handed(ghl_batch *b);

/* Frees everything. */
void ghl_batch_free(ghl_batch *b);

#endif
