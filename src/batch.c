#include "batch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/epoll.h> /* looped runs; elsewhere they are not built */
#endif

#include "retry.h"

enum { JOB_QUEUED, JOB_RUNNING, JOB_WAITING, JOB_DONE };

/* With transfers running, look at the clock at least this often. */
#define MAX_POLL_SECONDS 1.0

void ghl_batch_init(ghl_batch *b, const ghl_transport_config *cfg, unsigned long seed) {
    memset(b, 0, sizeof *b);
    b->config = cfg;
    b->rng = seed;
    b->epoll_fd = -1;
    b->curl_due = -1;
}

/* ---- the waiting jobs, a binary heap by due time ---- */

static int due_before(const ghl_batch *b, int x, int y) {
    return b->jobs[b->heap[x]].due < b->jobs[b->heap[y]].due;
}

static void heap_swap(ghl_batch *b, int x, int y) {
    int t = b->heap[x];
    b->heap[x] = b->heap[y];
    b->heap[y] = t;
}

static void heap_push(ghl_batch *b, int job) {
    int i = b->heap_len++;
    b->heap[i] = job;
    while (i > 0 && due_before(b, i, (i - 1) / 2)) {
        heap_swap(b, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static int heap_pop(ghl_batch *b) {
    int top = b->heap[0], i = 0;
    b->heap[0] = b->heap[--b->heap_len];
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < b->heap_len && due_before(b, l, m)) m = l;
        if (r < b->heap_len && due_before(b, r, m)) m = r;
        if (m == i) break;
        heap_swap(b, i, m);
        i = m;
    }
    return top;
}

/* ---- looped: libcurl's sockets in an epoll set of our own ---- */
#ifdef __linux__

/* libcurl says what to wait for on a socket: the set changes at once, so no
 * descriptor the host might see is ever stale. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
    ghl_batch *b = userp;
    struct epoll_event ev;
    (void)easy;
    (void)socketp;
    memset(&ev, 0, sizeof ev);
    if (what == CURL_POLL_REMOVE) {
        (void)epoll_ctl(b->epoll_fd, EPOLL_CTL_DEL, fd, &ev); /* closed already: nothing to do */
        return 0;
    }
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
    ev.data.fd = fd;
    if (epoll_ctl(b->epoll_fd, EPOLL_CTL_MOD, fd, &ev) != 0 &&
        (errno != ENOENT || epoll_ctl(b->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0))
        b->watch_failed = 1;
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
    ghl_batch *b = userp;
    (void)multi;
    b->curl_due = timeout_ms < 0 ? -1 : ghl_now() + timeout_ms / 1000.0;
    return 0;
}

static CURLcode watch_sockets(ghl_batch *b) {
    if (b->epoll_fd < 0) b->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (b->epoll_fd < 0) return CURLE_FAILED_INIT;
    if (curl_multi_setopt(b->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
        curl_multi_setopt(b->multi, CURLMOPT_SOCKETDATA, b) != CURLM_OK ||
        curl_multi_setopt(b->multi, CURLMOPT_TIMERFUNCTION, on_timer) != CURLM_OK ||
        curl_multi_setopt(b->multi, CURLMOPT_TIMERDATA, b) != CURLM_OK)
        return CURLE_FAILED_INIT;
    return CURLE_OK;
}

/* Lets libcurl act on the sockets that are ready and on its timer, without
 * waiting. */
static CURLMcode drive_looped(ghl_batch *b) {
    struct epoll_event ev[GHL_MAX_CONCURRENCY];
    int i, n, running;
    CURLMcode mcode = CURLM_OK;
    if (b->watch_failed) return CURLM_OUT_OF_MEMORY;
    n = epoll_wait(b->epoll_fd, ev, GHL_MAX_CONCURRENCY, 0);
    for (i = 0; i < n && mcode == CURLM_OK; i++) {
        int mask = 0;
        if (ev[i].events & (EPOLLIN | EPOLLHUP)) mask |= CURL_CSELECT_IN;
        if (ev[i].events & EPOLLOUT) mask |= CURL_CSELECT_OUT;
        if (ev[i].events & EPOLLERR) mask |= CURL_CSELECT_ERR;
        mcode = curl_multi_socket_action(b->multi, ev[i].data.fd, mask, &running);
    }
    if (mcode == CURLM_OK && b->curl_due >= 0 && b->curl_due <= ghl_now()) {
        b->curl_due = -1; /* the action may set it again */
        mcode = curl_multi_socket_action(b->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    return mcode;
}

#else /* no epoll: looped runs cannot be opened */

static CURLcode watch_sockets(ghl_batch *b) {
    (void)b;
    return CURLE_NOT_BUILT_IN;
}

static CURLMcode drive_looped(ghl_batch *b) {
    (void)b;
    return CURLM_INTERNAL_ERROR;
}
#endif

/* ---- the engine ---- */

/* The limits job runs with: its own in a looped run, else the run's. */
static const ghl_limits *job_limits(const ghl_batch *b, const ghl_job *job) {
    return b->slots != NULL ? &b->slots[job - b->jobs].limits : &b->settings.limits;
}

/* A multi handle and n transfers, all idle. */
static CURLcode ensure_pool(ghl_batch *b, int n) {
    if (b->multi == NULL) {
        b->multi = curl_multi_init();
        if (b->multi == NULL) return CURLE_OUT_OF_MEMORY;
        if (curl_multi_setopt(b->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX) != CURLM_OK)
            return CURLE_FAILED_INIT;
        if (b->looped && watch_sockets(b) != CURLE_OK) return CURLE_FAILED_INIT;
    }
    while (b->pool_size < n) {
        CURLcode code;
        ghl_transfer *t = calloc(1, sizeof *t);
        if (t == NULL) return CURLE_OUT_OF_MEMORY;
        code = ghl_transfer_init(t, b->config);
        if (code != CURLE_OK) {
            free(t);
            return code;
        }
        b->pool[b->pool_size++] = t;
        /* keep as many idle connections as transfers may use */
        curl_multi_setopt(b->multi, CURLMOPT_MAXCONNECTS, (long)b->pool_size);
    }
    return CURLE_OK;
}

CURLcode ghl_batch_start(ghl_batch *b, ghl_job *jobs, int *heap, int count, const ghl_run_settings *s) {
    int i, n = s->concurrency < count ? s->concurrency : count;
    double now = ghl_now();
    CURLcode code;
    ghl_batch_end(b);
    for (i = 0; i < count; i++) {
        jobs[i].state = JOB_QUEUED;
        jobs[i].attempts = 0;
        jobs[i].due = 0;
    }
    b->jobs = jobs;
    b->heap = heap;
    b->count = count;
    b->settings = *s;
    ghl_window_init(&b->window);
    /* the last response may already have told the count */
    if (s->paced && b->last_at > 0) {
        ghl_window_take(&b->window, &b->last_ratelimit, b->last_at, s->max_retry_delay);
        if (!ghl_window_current(&b->window, now) && b->window.paused_until == 0)
            b->window.remaining = -1; /* too old to trust */
    }
    code = ensure_pool(b, n > 0 ? n : 1);
    if (code != CURLE_OK) ghl_batch_end(b);
    return code;
}

/* Finishes job with a failure of the engine itself. */
static ghl_job *fail_job(ghl_batch *b, ghl_job *job, const char *why, const char *detail) {
    ghl_response *r = &b->fatal_response;
    ghl_buffer body = r->body;
    memset(r, 0, sizeof *r);
    r->body = body;
    r->body.len = 0;
    r->retry_after = -1;
    r->failure = GHL_FAIL_SETUP;
    strncpy(r->error, why, sizeof r->error - 1);
    strncat(r->error, detail, sizeof r->error - strlen(r->error) - 1);
    job->state = JOB_DONE;
    b->done++;
    return job;
}

/* The next job to start: a retry that has fallen due, else a fresh one. */
static ghl_job *take_next_job(ghl_batch *b, double now) {
    if (b->heap_len > 0 && b->jobs[b->heap[0]].due <= now) return &b->jobs[heap_pop(b)];
    while (b->next_fresh < b->count && b->jobs[b->next_fresh].state != JOB_QUEUED) b->next_fresh++;
    return b->next_fresh < b->count ? &b->jobs[b->next_fresh] : NULL;
}

/* Starts what may start now. Returns a job that could not be set up (it is
 * finished), or NULL. */
static ghl_job *start_transfers(ghl_batch *b, double now) {
    int i;
    if (b->settings.paced) ghl_window_turn_over(&b->window, now);
    for (i = 0; i < b->pool_size && b->running < b->settings.concurrency; i++) {
        ghl_transfer *t = b->pool[i];
        ghl_job *job;
        CURLcode code;
        CURLMcode mcode;
        if (t->job != NULL) continue;
        if (b->settings.paced && !ghl_window_has_room(&b->window, b->running)) return NULL;
        job = take_next_job(b, now);
        if (job == NULL) return NULL;
        job->attempts++;
        if (ghl_request_url(&job->request, b->config->base_url, b->config->base_len, &b->url) != 0) {
            fail_job(b, job, "out of memory", "");
            b->fatal_response.out_of_memory = 1;
            return job;
        }
        code = ghl_transfer_prepare(t, &job->request, b->url.data, job_limits(b, job)->timeout_ms,
                                    job_limits(b, job)->connect_timeout_ms);
        if (code != CURLE_OK) {
            fail_job(b, job, "could not set up the request: ", curl_easy_strerror(code));
            b->fatal_response.out_of_memory = code == CURLE_OUT_OF_MEMORY;
            return job;
        }
        mcode = curl_multi_add_handle(b->multi, t->easy);
        if (mcode != CURLM_OK) return fail_job(b, job, "could not start the request: ", curl_multi_strerror(mcode));
        t->job = job;
        job->token_gen = b->token_gen;
        job->state = JOB_RUNNING;
        b->running++;
    }
    return NULL;
}

/* A transfer is done: the job finishes, or waits for its retry. Returns
 * whether it finished. */
static int transfer_done(ghl_batch *b, ghl_transfer *t, CURLcode code, double now) {
    ghl_job *job = t->job;
    const ghl_response *r = &t->response;
    curl_multi_remove_handle(b->multi, t->easy);
    ghl_transfer_finish(t, code);
    b->running--;
    if (r->status > 0) {
        b->last_ratelimit = r->ratelimit;
        b->last_at = now;
        if (b->settings.paced) ghl_window_take(&b->window, &r->ratelimit, now, b->settings.max_retry_delay);
    }
    if (b->settings.renew_on_401 && r->status == 401 && !job->token_renewed && !ghl_command_timed_out(r)) {
        job->wants_token = 1;
        job->state = JOB_DONE;
        b->done++;
        b->handed = t;
        return 1;
    }
    if (job->attempts - job->token_renewed <= job_limits(b, job)->retries &&
        ghl_retry_wanted(r, job->request.endpoint->repeat_safe)) {
        job->state = JOB_WAITING;
        job->due = now + ghl_retry_delay(r, job->attempts, b->settings.max_retry_delay, &b->rng);
        heap_push(b, (int)(job - b->jobs));
        t->job = NULL;
        return 0;
    }
    job->state = JOB_DONE;
    b->done++;
    b->handed = t; /* stays busy while the caller reads its response */
    return 1;
}

/* How long to wait for something to do, in ms: a retry falling due, the
 * window turning over, or (with transfers running) at most a second. Each
 * of those is at most max_retry_delay away. */
static int wait_ms(const ghl_batch *b, double now) {
    double until = now + MAX_POLL_SECONDS;
    /* a retry falling due matters only if it could start then; else a
     * finishing transfer or the window turning over wakes the loop */
    int can_start = b->running < b->settings.concurrency && b->running < b->pool_size &&
                    (!b->settings.paced || ghl_window_has_room(&b->window, b->running));
    if (can_start && b->heap_len > 0 && b->jobs[b->heap[0]].due < until) until = b->jobs[b->heap[0]].due;
    if (b->window.paused_until > 0 && b->window.paused_until < until) until = b->window.paused_until;
    if (until <= now) return 0;
    return (int)((until - now) * 1000.0) + 1;
}

/* After the multi handle failed: every job not yet finished fails. */
static ghl_job *fail_the_rest(ghl_batch *b) {
    int i;
    for (i = 0; i < b->pool_size; i++) {
        ghl_transfer *t = b->pool[i];
        if (t->job == NULL) continue;
        curl_multi_remove_handle(b->multi, t->easy);
        ((ghl_job *)t->job)->state = JOB_QUEUED;
        t->job = NULL;
    }
    b->running = 0;
    b->heap_len = 0;
    for (i = 0; i < b->count; i++)
        if (b->jobs[i].state != JOB_DONE)
            return fail_job(b, &b->jobs[i], "the transfer engine failed: ", curl_multi_strerror(b->fatal));
    return NULL;
}

ghl_job *ghl_batch_next(ghl_batch *b, ghl_response **response) {
    if (b->handed != NULL) {
        b->handed->job = NULL;
        b->handed = NULL;
    }
    while (b->done < b->count) {
        CURLMsg *msg;
        CURLMcode mcode;
        ghl_job *failed;
        int left, still_running = 0, progressed = 0;
        double now = ghl_now();
        if (b->fatal) {
            *response = &b->fatal_response;
            return fail_the_rest(b);
        }
        if ((failed = start_transfers(b, now)) != NULL) {
            *response = &b->fatal_response;
            return failed;
        }
        mcode = b->looped ? drive_looped(b) : curl_multi_perform(b->multi, &still_running);
        if (mcode != CURLM_OK) {
            b->fatal = (int)mcode;
            continue;
        }
        while ((msg = curl_multi_info_read(b->multi, &left)) != NULL) {
            ghl_transfer *t = NULL;
            if (msg->msg != CURLMSG_DONE) continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
            progressed = 1;
            if (transfer_done(b, t, msg->data.result, ghl_now())) {
                *response = &t->response;
                return t->job;
            }
        }
        if (progressed) continue;   /* refill the freed slots before any wait */
        if (b->looped) return NULL; /* the host waits */
        now = ghl_now();
        if (b->running > 0) {
            mcode = curl_multi_poll(b->multi, NULL, 0, wait_ms(b, now), NULL);
            if (mcode != CURLM_OK) b->fatal = (int)mcode;
        } else {
            ghl_sleep(wait_ms(b, now) / 1000.0);
        }
    }
    return NULL;
}

void ghl_batch_repeat_now(ghl_batch *b, ghl_job *job) {
    ghl_batch_release_handed(b);
    job->wants_token = 0;
    job->token_renewed = 1;
    job->state = JOB_WAITING;
    job->due = 0;
    b->done--;
    heap_push(b, (int)(job - b->jobs));
}

void ghl_batch_headers_changed(ghl_batch *b, unsigned long gen) {
    int i;
    b->token_gen = gen;
    for (i = 0; i < b->pool_size; i++) b->pool[i]->plain_get = 0;
}

void ghl_batch_end(ghl_batch *b) {
    int i;
    for (i = 0; i < b->pool_size; i++) {
        ghl_transfer *t = b->pool[i];
        if (t->job != NULL && b->multi != NULL) curl_multi_remove_handle(b->multi, t->easy);
        t->job = NULL;
        /* an idle client keeps no large body (the next attempt resets the rest) */
        if (t->response.body.cap > GHL_BUFFER_KEEP) ghl_response_reset(&t->response, GHL_BUFFER_KEEP);
    }
    b->handed = NULL;
    if (b->slots != NULL) { /* a looped run's own arrays */
        for (i = 0; i < b->count; i++) free(b->slots[i].owned);
        free(b->jobs);
        free(b->heap);
        free(b->slots);
        b->slots = NULL;
        b->cap = 0;
    }
    b->jobs = NULL;
    b->heap = NULL;
    b->count = b->done = b->running = b->heap_len = b->next_fresh = 0;
    b->fatal = 0;
}

void ghl_batch_free(ghl_batch *b) {
    int i;
    ghl_batch_end(b);
    for (i = 0; i < b->pool_size; i++) {
        ghl_transfer_cleanup(b->pool[i]);
        free(b->pool[i]);
        b->pool[i] = NULL;
    }
    b->pool_size = 0;
    if (b->multi != NULL) curl_multi_cleanup(b->multi);
    b->multi = NULL;
    if (b->epoll_fd >= 0) close(b->epoll_fd);
    b->epoll_fd = -1;
    ghl_response_free(&b->fatal_response);
    ghl_buffer_free(&b->url);
}

void ghl_batch_forget_connections(ghl_batch *b) {
    ghl_sockets_orphan(b->config->sockets);
    ghl_batch_free(b);
}

/* ---- looped runs ---- */

CURLcode ghl_batch_open_looped(ghl_batch *b, const ghl_run_settings *s) {
    CURLcode code;
    ghl_batch_end(b);
    b->looped = 1;
    b->settings = *s;
    ghl_window_init(&b->window);
    code = ensure_pool(b, s->concurrency);
    if (code != CURLE_OK) ghl_batch_free(b);
    return code;
}

int ghl_batch_fd(const ghl_batch *b) {
    return b->epoll_fd;
}

ghl_job *ghl_batch_take_unstarted(ghl_batch *b) {
    ghl_job *job;
    ghl_batch_release_handed(b);
    while (b->next_fresh < b->count && b->jobs[b->next_fresh].state != JOB_QUEUED) b->next_fresh++;
    if (b->next_fresh >= b->count) return NULL;
    job = &b->jobs[b->next_fresh];
    job->state = JOB_DONE;
    b->done++;
    return job;
}

void ghl_batch_release_handed(ghl_batch *b) {
    if (b->handed == NULL) return;
    b->handed->job = NULL;
    b->handed = NULL;
}

/* Points job i at its slot's copies (the owned block does not move). */
static void point_args_at_slots(ghl_batch *b, int i) {
    int k;
    for (k = 0; k < GHL_MAX_PATH_ARGS; k++)
        if (b->jobs[i].request.args[k] != NULL) b->jobs[i].request.args[k] = b->slots[i].arg[k];
    b->jobs[i].request.endpoint = &b->slots[i].endpoint;
}

/* Copies the strings r points at (path, query, body, version) into one
 * block owned by slot, and points r at the copies. Returns 0, or -1. */
static int copy_request_strings(ghl_looped_slot *slot, ghl_request *r) {
    size_t version_len = r->version != NULL ? strlen(r->version) + 1 : 0;
    size_t n = (r->path ? r->path_len : 0) + (r->query ? r->query_len : 0) + (r->body ? r->body_len : 0) + version_len;
    char *p;
    slot->owned = NULL;
    if (n == 0) return 0;
    if ((slot->owned = p = malloc(n)) == NULL) return -1;
    if (r->path != NULL) memcpy(p, r->path, r->path_len), r->path = p, p += r->path_len;
    if (r->query != NULL) memcpy(p, r->query, r->query_len), r->query = p, p += r->query_len;
    if (r->body != NULL) memcpy(p, r->body, r->body_len), r->body = p, p += r->body_len;
    if (r->version != NULL) memcpy(p, r->version, version_len), r->version = p;
    return 0;
}

/* Drops the finished jobs, keeping the order of the rest. */
static void drop_finished_jobs(ghl_batch *b) {
    int i, p, n = 0;
    for (i = 0; i < b->count; i++) {
        ghl_job *job = &b->jobs[i];
        if (job->state == JOB_DONE) {
            free(b->slots[i].owned);
            continue;
        }
        if (n != i) {
            for (p = 0; p < b->pool_size; p++)
                if (b->pool[p]->job == job) b->pool[p]->job = &b->jobs[n];
            b->jobs[n] = *job;
            b->slots[n] = b->slots[i];
            point_args_at_slots(b, n);
        }
        n++;
    }
    b->count = n;
    b->done = 0;
    b->next_fresh = 0;
    b->heap_len = 0;
    for (i = 0; i < n; i++)
        if (b->jobs[i].state == JOB_WAITING) heap_push(b, i);
}

/* Room for twice as many jobs; returns 0, or -1 (nothing changed). */
static int grow_jobs(ghl_batch *b) {
    int i, p, cap = b->cap ? b->cap * 2 : 16;
    int where[GHL_MAX_CONCURRENCY];
    ghl_job *jobs = malloc((size_t)cap * sizeof *jobs);
    int *heap = malloc((size_t)cap * sizeof *heap);
    ghl_looped_slot *slots = malloc((size_t)cap * sizeof *slots);
    if (jobs == NULL || heap == NULL || slots == NULL) {
        free(jobs);
        free(heap);
        free(slots);
        return -1;
    }
    for (p = 0; p < b->pool_size; p++)
        where[p] = b->pool[p]->job != NULL ? (int)((ghl_job *)b->pool[p]->job - b->jobs) : -1;
    if (b->count > 0) {
        memcpy(jobs, b->jobs, (size_t)b->count * sizeof *jobs);
        memcpy(slots, b->slots, (size_t)b->count * sizeof *slots);
        memcpy(heap, b->heap, (size_t)b->heap_len * sizeof *heap);
    }
    free(b->jobs);
    free(b->heap);
    free(b->slots);
    b->jobs = jobs;
    b->heap = heap;
    b->slots = slots;
    b->cap = cap;
    for (p = 0; p < b->pool_size; p++)
        if (where[p] >= 0) b->pool[p]->job = &b->jobs[where[p]];
    for (i = 0; i < b->count; i++) point_args_at_slots(b, i);
    return 0;
}

ghl_job *ghl_batch_add(ghl_batch *b, const ghl_request *r, const ghl_limits *limits, unsigned long tag) {
    int k;
    ghl_job *job;
    ghl_looped_slot *slot;
    ghl_batch_release_handed(b);
    if (b->count == b->cap && b->done > 0) drop_finished_jobs(b);
    if (b->count == b->cap && grow_jobs(b) != 0) return NULL;
    job = &b->jobs[b->count];
    slot = &b->slots[b->count];
    memset(job, 0, sizeof *job);
    job->request = *r;
    for (k = 0; k < GHL_MAX_PATH_ARGS; k++) {
        if (r->args[k] == NULL) continue;
        if (r->arg_len[k] > GHL_MAX_ID_LEN) return NULL; /* ids are checked before */
        memcpy(slot->arg[k], r->args[k], r->arg_len[k]);
        slot->arg[k][r->arg_len[k]] = '\0';
        job->request.args[k] = slot->arg[k];
    }
    slot->endpoint = *r->endpoint;
    job->request.endpoint = &slot->endpoint;
    if (copy_request_strings(slot, &job->request) != 0) return NULL;
    slot->limits = *limits;
    job->state = JOB_QUEUED;
    job->tag = tag;
    b->count++;
    return job;
}

long ghl_batch_wait_ms(const ghl_batch *b) {
    double now = ghl_now();
    long ms;
    if (b->done >= b->count) return -1;
    ms = wait_ms(b, now);
    if (b->curl_due >= 0) {
        long curl_ms = b->curl_due <= now ? 0 : (long)((b->curl_due - now) * 1000.0) + 1;
        if (curl_ms < ms) ms = curl_ms;
    }
    return ms;
}
