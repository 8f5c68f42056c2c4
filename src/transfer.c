#include "transfer.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef char error_size_matches[GHL_ERROR_SIZE >= CURL_ERROR_SIZE ? 1 : -1];

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata) {
    ghl_transfer *t = userdata;
    size_t n = size * nmemb;
    return ghl_response_body(&t->response, data, n) == 0 ? n : 0; /* 0 aborts the transfer */
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *userdata) {
    ghl_transfer *t = userdata;
    size_t len = size * nmemb;
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        /* a new response starts (e.g. after 100 Continue): its own figures */
        memset(&t->response.ratelimit, 0, sizeof t->response.ratelimit);
        t->response.retry_after = -1;
        t->response.content_type[0] = '\0';
        return len;
    }
    return ghl_response_header(&t->response, line, len) == 0 ? len : 0;
}

static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr) {
    ghl_sockets *s = clientp;
    curl_socket_t fd;
    (void)purpose;
    if (s->count == s->cap) {
        int cap = s->cap ? s->cap * 2 : 8;
        curl_socket_t *grown = realloc(s->fds, (size_t)cap * sizeof *grown);
        if (grown == NULL) return CURL_SOCKET_BAD;
        s->fds = grown;
        s->cap = cap;
    }
    /* a program the host execs inherits none */
    fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    if (fd == CURL_SOCKET_BAD) return fd;
    s->fds[s->count++] = fd;
    return fd;
}

static int close_socket(void *clientp, curl_socket_t fd) {
    ghl_sockets *s = clientp;
    int i;
    for (i = 0; i < s->count; i++) {
        if (s->fds[i] == fd) {
            s->fds[i] = s->fds[--s->count];
            break;
        }
    }
    return close(fd);
}

void ghl_sockets_orphan(ghl_sockets *s) {
    int i, null_fd;
    if (s->count == 0) return;
    null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    /* no /dev/null (out of descriptors, a bare sandbox): an unconnected
     * socket of our own serves as well; never shutdown(), which would end
     * the parent's connection too */
    if (null_fd < 0) null_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (null_fd < 0) return;
    for (i = 0; i < s->count; i++) (void)dup2(null_fd, s->fds[i]);
    close(null_fd);
}

void ghl_sockets_free(ghl_sockets *s) {
    free(s->fds);
    memset(s, 0, sizeof *s);
}

#define SET(opt, value)                                               \
    do {                                                              \
        if (code == CURLE_OK) code = curl_easy_setopt(e, opt, value); \
    } while (0)

struct curl_slist *ghl_header_list(const ghl_options *o, const ghl_request *r) {
    ghl_header h[GHL_MAX_HEADERS];
    struct curl_slist *list = NULL, *grown;
    int i, n = ghl_request_headers(o, r, h);
    for (i = 0; i < n; i++) {
        size_t len = strlen(h[i].name) + strlen(h[i].prefix) + strlen(h[i].value) + 3;
        char *line = malloc(len);
        if (line == NULL) break;
        snprintf(line, len, "%s: %s%s", h[i].name, h[i].prefix, h[i].value);
        grown = curl_slist_append(list, line);
        memset(line, 0, len); /* the Authorization line holds the token */
        free(line);
        if (grown == NULL) break;
        list = grown;
    }
    /* a body is sent at once: no "Expect: 100-continue" round trip */
    if (i == n && r != NULL && r->body != NULL) {
        grown = curl_slist_append(list, "Expect:");
        if (grown != NULL)
            list = grown;
        else
            i = -1;
    }
    if (i != n) {
        curl_slist_free_all(list);
        return NULL;
    }
    return list;
}

CURLcode ghl_transfer_init(ghl_transfer *t, const ghl_transport_config *cfg) {
    CURLcode code = CURLE_OK;
    CURL *e = curl_easy_init();
    if (e == NULL) return CURLE_OUT_OF_MEMORY;
    t->easy = e;
    t->config = cfg;
    t->job = NULL;
    t->timeout_ms = t->connect_timeout_ms = 0;
    t->plain_get = 1;
    t->own_headers = NULL;
    t->response.max_body = cfg->max_body;
    ghl_response_reset(&t->response, GHL_BUFFER_KEEP);
    SET(CURLOPT_NOSIGNAL, 1L); /* hosts are multi-threaded */
    SET(CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_HTTPHEADER, cfg->headers);
    /* decode gzip and deflate; the Accept-Encoding line is in the headers */
    SET(CURLOPT_ACCEPT_ENCODING, "");
    SET(CURLOPT_SSL_VERIFYPEER, cfg->ssl_verify ? 1L : 0L);
    SET(CURLOPT_SSL_VERIFYHOST, cfg->ssl_verify ? 2L : 0L);
    if (cfg->cainfo != NULL) SET(CURLOPT_CAINFO, cfg->cainfo);
    /* a proxy that did not take must fail the request, never be skipped */
    if (cfg->proxy != NULL) SET(CURLOPT_PROXY, cfg->proxy);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    /* over TLS, ALPN soon tells whether a connection multiplexes (HTTP/2):
     * wait for that rather than open more; plain HTTP/1.1 never does */
    if (cfg->https) SET(CURLOPT_PIPEWAIT, 1L);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, t);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, t);
    SET(CURLOPT_ERRORBUFFER, t->response.error);
    SET(CURLOPT_PRIVATE, t);
    SET(CURLOPT_OPENSOCKETFUNCTION, open_socket);
    SET(CURLOPT_OPENSOCKETDATA, cfg->sockets);
    SET(CURLOPT_CLOSESOCKETFUNCTION, close_socket);
    SET(CURLOPT_CLOSESOCKETDATA, cfg->sockets);
    if (code != CURLE_OK) ghl_transfer_cleanup(t);
    return code;
}

/* Sets the method, body and headers of r; the common GET costs nothing
 * once the handle is set for it. */
static CURLcode set_method(ghl_transfer *t, const ghl_request *r) {
    CURLcode code = CURLE_OK;
    CURL *e = t->easy;
    const char *method = r->endpoint->method;
    int common = ghl_request_has_common_headers(r), get = strcmp(method, "GET") == 0;
    if (get && common && t->plain_get) return CURLE_OK;
    curl_slist_free_all(t->own_headers);
    t->own_headers = NULL;
    if (!common) {
        t->own_headers = ghl_header_list(t->config->options, r);
        if (t->own_headers == NULL) return CURLE_OUT_OF_MEMORY;
    }
    t->plain_get = 0;
    SET(CURLOPT_HTTPHEADER, common ? t->config->headers : t->own_headers);
    SET(CURLOPT_CUSTOMREQUEST, (char *)NULL);
    if (r->body != NULL || strcmp(method, "POST") == 0) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(r->body != NULL ? r->body_len : 0));
        SET(CURLOPT_POSTFIELDS, r->body != NULL ? r->body : "");
    } else {
        SET(CURLOPT_HTTPGET, 1L);
    }
    if (!get && strcmp(method, "POST") != 0) SET(CURLOPT_CUSTOMREQUEST, method);
    if (code == CURLE_OK && get && common) t->plain_get = 1;
    return code;
}

CURLcode ghl_transfer_prepare(ghl_transfer *t, const ghl_request *r, const char *url, long timeout_ms,
                              long connect_timeout_ms) {
    CURLcode code;
    CURL *e = t->easy;
    ghl_response_reset(&t->response, GHL_BUFFER_KEEP);
    t->response.wants_content_type = r->endpoint->unwrap == GHL_UNWRAP_BYTES;
    code = set_method(t, r);
    SET(CURLOPT_URL, url);
    if (timeout_ms != t->timeout_ms) SET(CURLOPT_TIMEOUT_MS, timeout_ms);
    if (connect_timeout_ms != t->connect_timeout_ms) SET(CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
    /* remembered only once set: a failed set is tried again next time */
    if (code == CURLE_OK) {
        t->timeout_ms = timeout_ms;
        t->connect_timeout_ms = connect_timeout_ms;
    }
    return code;
}

static ghl_failure failure_of(CURLcode code) {
    switch (code) {
    case CURLE_OK: return GHL_FAIL_NONE;
    case CURLE_OPERATION_TIMEDOUT: return GHL_FAIL_TIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED: return GHL_FAIL_TLS;
    case CURLE_BAD_CONTENT_ENCODING: return GHL_FAIL_DECODE;
    default: return GHL_FAIL_NETWORK;
    }
}

static int retryable(CURLcode code) {
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE: return 1;
    default: return 0;
    }
}

void ghl_transfer_finish(ghl_transfer *t, CURLcode code) {
    ghl_response *r = &t->response;
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    r->status = status;
    r->transport_code = (int)code;
    if (code == CURLE_WRITE_ERROR && (r->too_large || r->out_of_memory)) return; /* ours */
    r->failure = failure_of(code);
    if (code == CURLE_OK) return;
    r->retryable = retryable(code);
    if (code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST || code == CURLE_COULDNT_RESOLVE_PROXY) {
        r->unsent = 1;
    } else if (code == CURLE_OPERATION_TIMEDOUT) {
        /* not sent if libcurl never got to sending it: CONNECT_TIME stays 0 on
         * a reused connection too, so ask for the request bytes written */
        curl_off_t pretransfer = 0;
        long sent = 0;
        curl_easy_getinfo(t->easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
        curl_easy_getinfo(t->easy, CURLINFO_REQUEST_SIZE, &sent);
        r->unsent = pretransfer == 0 && sent == 0;
    }
    if (r->error[0] == '\0') {
        strncpy(r->error, curl_easy_strerror(code), sizeof r->error - 1);
        r->error[sizeof r->error - 1] = '\0';
    }
    ghl_redact_string(r->error, sizeof r->error, t->config->secrets);
}

void ghl_transfer_cleanup(ghl_transfer *t) {
    if (t->easy != NULL) curl_easy_cleanup(t->easy);
    t->easy = NULL;
    curl_slist_free_all(t->own_headers);
    t->own_headers = NULL;
    ghl_response_free(&t->response);
}
