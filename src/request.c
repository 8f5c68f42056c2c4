#include "request.h"

#include <string.h>

const ghl_endpoint ghl_get_message_endpoint = {
    "GET", "/conversations/messages/{}", 1, GHL_UNWRAP_MESSAGE,
};

size_t ghl_request_path(const ghl_request *r, char *out) {
    const char *t = r->endpoint->path, *hole;
    size_t n = 0;
    int arg = 0;
    /* copy the template a piece at a time, an argument in each "{}" */
    while ((hole = strstr(t, "{}")) != NULL && arg < GHL_MAX_PATH_ARGS) {
        size_t piece = (size_t)(hole - t), len = r->arg_len[arg];
        if (piece > GHL_MAX_PATH - 1 - n) piece = GHL_MAX_PATH - 1 - n;
        memcpy(out + n, t, piece);
        n += piece;
        if (len > GHL_MAX_PATH - 1 - n) len = GHL_MAX_PATH - 1 - n;
        memcpy(out + n, r->args[arg++], len);
        n += len;
        t = hole + 2;
    }
    {
        size_t rest = strlen(t);
        if (rest > GHL_MAX_PATH - 1 - n) rest = GHL_MAX_PATH - 1 - n;
        memcpy(out + n, t, rest);
        n += rest;
    }
    out[n] = '\0';
    return n;
}

int ghl_request_headers(const ghl_options *o, ghl_header *out) {
    int n = 0;
    out[n].name = "Authorization", out[n].prefix = "Bearer ", out[n++].value = o->token;
    out[n].name = "Version", out[n].prefix = "", out[n++].value = o->version;
    out[n].name = "Accept", out[n].prefix = "", out[n++].value = "application/json";
    out[n].name = "User-Agent", out[n].prefix = "", out[n++].value = o->user_agent;
    out[n].name = "Accept-Encoding", out[n].prefix = "", out[n++].value = GHL_ACCEPT_ENCODING;
    return n;
}
