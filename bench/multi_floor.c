/* The C floor for a batch: COUNT URLs over one libcurl multi handle with
 * CONCURRENCY transfers in flight (HTTP/2 multiplexing where offered, the
 * same multi settings as client:get_messages), each body decoded by
 * cjson.decode in an embedded Lua 5.4 state as it completes. A warm-up batch
 * of CONCURRENCY URLs runs first so the connections are open, as they are for
 * a client that has fetched before.
 *
 * usage: multi_floor BASE_URL CAINFO|- COUNT CONCURRENCY
 * prints: us=<wall microseconds per fetch> cpu=<this process's CPU microseconds per fetch>
 */
#include "floor_common.h"

typedef struct {
    CURL *easy;
    buf body;
    char url[512];
    int busy;
} slot;

static lua_State *L;
static int decode_ref;

/* Fetches count URLs (ids prefix + index) at the given concurrency; 0 on success. */
static int run_batch(CURLM *multi, slot *slots, int conc, const char *base, const char *prefix, int count) {
    int next = 0, done = 0, i;
    while (done < count) {
        int running, left, finished = 0;
        CURLMsg *msg;
        for (i = 0; i < conc && next < count; i++) {
            if (slots[i].busy) continue;
            snprintf(slots[i].url, sizeof slots[i].url, "%s/conversations/messages/%s%08d", base, prefix, next++);
            curl_easy_setopt(slots[i].easy, CURLOPT_URL, slots[i].url);
            slots[i].body.len = 0;
            slots[i].busy = 1;
            curl_multi_add_handle(multi, slots[i].easy);
        }
        curl_multi_perform(multi, &running);
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            slot *s = NULL;
            long status = 0;
            if (msg->msg != CURLMSG_DONE) continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            if (msg->data.result != CURLE_OK || status != 200) {
                fprintf(stderr, "multi_floor: curl %d, HTTP %ld\n", (int)msg->data.result, status);
                return 1;
            }
            curl_multi_remove_handle(multi, s->easy);
            if (decode_body(L, decode_ref, &s->body) != 0) {
                fprintf(stderr, "multi_floor: decode failed\n");
                return 1;
            }
            s->busy = 0;
            done++;
            finished++;
        }
        /* a freed slot is refilled at once; wait only while every slot is busy */
        if (done < count && finished == 0) curl_multi_poll(multi, NULL, 0, 1000, NULL);
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *base, *cainfo;
    int count, conc, i;
    struct curl_slist *headers;
    slot *slots;
    CURLM *multi;
    double t0, t1;
    clock_t c0;

    if (argc != 5) {
        fprintf(stderr, "usage: multi_floor BASE_URL CAINFO|- COUNT CONCURRENCY\n");
        return 2;
    }
    base = argv[1];
    cainfo = strcmp(argv[2], "-") == 0 ? NULL : argv[2];
    count = atoi(argv[3]);
    conc = atoi(argv[4]);
    if (count < 1 || conc < 1 || conc > 64) return 2;

    L = open_decoder("multi_floor", &decode_ref);
    if (L == NULL) return 1;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)conc);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)conc);
    headers = request_headers();
    slots = calloc((size_t)conc, sizeof *slots);
    for (i = 0; i < conc; i++) {
        CURL *e = curl_easy_init();
        slots[i].easy = e;
        setup_easy(e, headers, cainfo, FLOOR_ACCEPT_ENCODING, &slots[i].body);
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &slots[i]);
    }

    if (run_batch(multi, slots, conc, base, "warm", conc) != 0) return 1;
    t0 = now();
    c0 = clock();
    if (run_batch(multi, slots, conc, base, "batch", count) != 0) return 1;
    t1 = now();
    printf("us=%.3f cpu=%.3f\n", (t1 - t0) * 1e6 / (double)count,
           (double)(clock() - c0) / CLOCKS_PER_SEC * 1e6 / (double)count);

    for (i = 0; i < conc; i++) {
        curl_easy_cleanup(slots[i].easy);
        free(slots[i].body.data);
    }
    free(slots);
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    curl_global_cleanup();
    lua_close(L);
    return 0;
}
