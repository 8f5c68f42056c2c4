#include "request.h"

#include <string.h>

#define GET_JSON .method = "GET", .repeat_safe = 1, .accept_json = 1

const ghl_endpoint ghl_get_message_endpoint = {
    .name = "get_message",
    GET_JSON,
    .path = "/conversations/messages/{}",
    .id_names = {"id"},
    .unwrap = GHL_UNWRAP_MESSAGE,
};

const ghl_endpoint ghl_oauth_token_endpoint = {
    .name = "oauth_token",
    .method = "POST",
    .path = "/oauth/token",
    .unwrap = GHL_UNWRAP_OBJECT,
    .takes = GHL_TAKES_BODY,
    .accept_json = 1,
    .no_auth = 1,
    .private_body = 1,
};

const ghl_endpoint ghl_endpoints[] = {
    {.name = "get_email",
     GET_JSON,
     .path = "/conversations/messages/email/{}",
     .id_names = {"email_id"},
     .unwrap = GHL_UNWRAP_EMAIL},
    {.name = "get_conversation",
     GET_JSON,
     .path = "/conversations/{}",
     .id_names = {"conversation_id"},
     .unwrap = GHL_UNWRAP_OBJECT},
    {.name = "list_messages",
     GET_JSON,
     .path = "/conversations/{}/messages",
     .id_names = {"conversation_id"},
     .unwrap = GHL_UNWRAP_MESSAGE_PAGE,
     .takes = GHL_TAKES_QUERY},
    {.name = "search_conversations",
     GET_JSON,
     .path = "/conversations/search",
     .unwrap = GHL_UNWRAP_SEARCH_PAGE,
     .takes = GHL_TAKES_QUERY,
     .required = "locationId "},
    {.name = "send_message",
     .method = "POST",
     .path = "/conversations/messages",
     .repeat_safe = 0,
     .accept_json = 1,
     .unwrap = GHL_UNWRAP_OBJECT,
     .takes = GHL_TAKES_BODY,
     .required = "type contactId "},
    {.name = "get_recording",
     .method = "GET",
     .repeat_safe = 1,
     .accept_json = 0,
     .path = "/conversations/messages/{}/locations/{}/recording",
     .id_names = {"message_id", "location_id"},
     .unwrap = GHL_UNWRAP_BYTES},
    {.name = NULL},
};

/* Calls piece(bytes, n, ctx) for each piece of the path in order. */
static void walk_path(const ghl_request *r, void (*piece)(const char *, size_t, void *), void *ctx) {
    const char *t = r->endpoint->path, *hole;
    int arg = 0;
    if (t == NULL) {
        piece(r->path, r->path_len, ctx);
        return;
    }
    while ((hole = strstr(t, "{}")) != NULL && arg < GHL_MAX_PATH_ARGS) {
        piece(t, (size_t)(hole - t), ctx);
        piece(r->args[arg], r->arg_len[arg], ctx);
        arg++;
        t = hole + 2;
    }
    piece(t, strlen(t), ctx);
}

static void count_piece(const char *p, size_t n, void *ctx) {
    (void)p;
    *(size_t *)ctx += n;
}

static void copy_piece(const char *p, size_t n, void *ctx) {
    char **out = ctx;
    memcpy(*out, p, n);
    *out += n;
}

size_t ghl_request_path_len(const ghl_request *r) {
    size_t n = 0;
    walk_path(r, count_piece, &n);
    return n;
}

void ghl_request_write_path(const ghl_request *r, char *out) {
    char *p = out;
    walk_path(r, copy_piece, &p);
    *p = '\0';
}

int ghl_request_url(const ghl_request *r, const char *base, size_t base_len, ghl_buffer *out) {
    size_t path = ghl_request_path_len(r), query = r->query != NULL && r->query_len > 0 ? r->query_len + 1 : 0;
    char *p;
    out->len = 0;
    if (ghl_buffer_reserve(out, base_len + path + query) != 0) return -1; /* one write, no regrowth */
    p = out->data;
    memcpy(p, base, base_len);
    ghl_request_write_path(r, p + base_len);
    p += base_len + path;
    if (query > 0) {
        *p++ = '?';
        memcpy(p, r->query, r->query_len);
        p += r->query_len;
    }
    *p = '\0';
    out->len = (size_t)(p - out->data);
    return 0;
}

int ghl_request_headers(const ghl_options *o, const ghl_request *r, ghl_header *out) {
    int n = 0;
    if (r == NULL || !r->endpoint->no_auth)
        out[n].name = "Authorization", out[n].prefix = "Bearer ", out[n++].value = o->token;
    out[n].name = "Version", out[n].prefix = "";
    out[n++].value = r != NULL && r->version != NULL ? r->version : o->version;
    if (r == NULL || r->endpoint->accept_json)
        out[n].name = "Accept", out[n].prefix = "", out[n++].value = "application/json";
    out[n].name = "User-Agent", out[n].prefix = "", out[n++].value = o->user_agent;
    out[n].name = "Accept-Encoding", out[n].prefix = "", out[n++].value = GHL_ACCEPT_ENCODING;
    if (r != NULL && r->body != NULL)
        out[n].name = "Content-Type", out[n].prefix = "",
        out[n++].value = r->body_type != NULL ? r->body_type : "application/json";
    return n;
}

int ghl_request_has_common_headers(const ghl_request *r) {
    return r->version == NULL && r->body == NULL && r->endpoint->accept_json && !r->endpoint->no_auth;
}
