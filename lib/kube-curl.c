/* kube-curl.c: the libcurl transport of the Kubernetes client: one reusable
 * easy handle (keep-alive), verified TLS, one bounded attempt per call. */
#include <curl/curl.h>
#include <string.h>

#include "kube.h"
#include "util.h"

/* A Pod list of a large namespace stays far below this; anything bigger is
 * not an API server we should trust with our memory. */
#define KUBE_MAX_BODY ((size_t) 64 * 1024 * 1024)
#define KUBE_CONNECT_TIMEOUT (3 * USEC_PER_SEC)

struct kube_curl {
        CURL *easy;
        struct kube_config config;   /* copies of the TLS material */
};

struct body_buffer {
        char *data;
        size_t size, alloc;
        bool too_big;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct body_buffer *b = userdata;
        size_t n = size * nmemb;

        if (b->size + n + 1 > KUBE_MAX_BODY) {
                b->too_big = true;
                return 0;
        }
        if (b->size + n + 1 > b->alloc) {
                size_t want = MAX(b->alloc * 2, b->size + n + 1);
                char *d = realloc(b->data, MAX(want, (size_t) 4096));

                if (!d)
                        return 0;
                b->data = d;
                b->alloc = MAX(want, (size_t) 4096);
        }
        memcpy(b->data + b->size, ptr, n);
        b->size += n;
        b->data[b->size] = '\0';
        return n;
}

static size_t on_header(char *buffer, size_t size, size_t nitems, void *userdata) {
        usec_t *retry_after = userdata;
        size_t n = size * nitems;
        static const char name[] = "retry-after:";

        if (n > sizeof(name) - 1 && strncasecmp(buffer, name, sizeof(name) - 1) == 0) {
                _cleanup_free_ char *v = strndup(buffer + sizeof(name) - 1, n - (sizeof(name) - 1));
                int64_t secs;

                /* Only the delay-seconds form; an HTTP date is ignored. */
                if (v && parse_int64(strstrip(v), &secs) >= 0 && secs > 0 && secs < 3600)
                        *retry_after = (usec_t) secs * USEC_PER_SEC;
        }
        return n;
}

static int curl_to_errno(CURLcode c) {
        switch (c) {
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
                return -EHOSTUNREACH;
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
                return -ECONNRESET;
        /* A server we cannot verify will not become trustworthy by retrying. */
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_ISSUER_ERROR:
                return -EPROTO;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        default:
                return -EIO;
        }
}

static void set_blob(CURL *e, CURLoption opt, const struct kube_blob *b) {
        struct curl_blob blob = { .data = b->data, .len = b->size, .flags = CURL_BLOB_COPY };

        (void) curl_easy_setopt(e, opt, &blob);
}

static void setup_tls_on(CURL *e, const struct kube_config *c) {

        /* TLS is always verified; there is deliberately no switch to turn it off. */
        (void) curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        (void) curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
        if (c->ca_data.data)
                set_blob(e, CURLOPT_CAINFO_BLOB, &c->ca_data);
        else if (c->ca_file)
                (void) curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
        if (c->cert_data.data)
                set_blob(e, CURLOPT_SSLCERT_BLOB, &c->cert_data);
        else if (c->cert_file)
                (void) curl_easy_setopt(e, CURLOPT_SSLCERT, c->cert_file);
        if (c->key_data.data)
                set_blob(e, CURLOPT_SSLKEY_BLOB, &c->key_data);
        else if (c->key_file)
                (void) curl_easy_setopt(e, CURLOPT_SSLKEY, c->key_file);
        (void) curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        (void) curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
}

static void setup_tls(struct kube_curl *t) {
        setup_tls_on(t->easy, &t->config);
}

static int header_add(struct curl_slist **h, const char *line) {
        struct curl_slist *n;

        if (!line)
                return -ENOMEM;
        n = curl_slist_append(*h, line);
        if (!n)
                return -ENOMEM;
        *h = n;
        return 0;
}

static struct curl_slist *build_headers(const struct kube_http_request *req) {
        _cleanup_free_ char *auth = NULL, *ctype = NULL;
        struct curl_slist *h = NULL;

        if (req->token)
                auth = strdup_printf("Authorization: Bearer %s", req->token);
        if (req->content_type)
                ctype = strdup_printf("Content-Type: %s", req->content_type);
        /* "Expect:" avoids the 100-continue round trip for small bodies. */
        if (header_add(&h, "Accept: application/json") < 0 ||
            header_add(&h, "Expect:") < 0 ||
            (req->token && header_add(&h, auth) < 0) ||
            (req->content_type && header_add(&h, ctype) < 0)) {
                curl_slist_free_all(h);
                return NULL;
        }
        return h;
}

static int curl_perform(void *userdata, const struct kube_http_request *req, usec_t timeout,
                        struct kube_http_response *ret, char **reterr_msg) {
        struct kube_curl *t = userdata;
        struct body_buffer body = {};
        char errbuf[CURL_ERROR_SIZE] = "";
        usec_t retry_after = 0;
        struct curl_slist *headers;
        long timeout_ms = (long) MAX(timeout / USEC_PER_MSEC, (usec_t) 1);
        long status = 0;
        CURLcode c;
        CURL *e = t->easy;

        headers = build_headers(req);
        if (!headers)
                return -ENOMEM;
        /* Reset keeps the live connections, so keep-alive still works. */
        curl_easy_reset(e);
        setup_tls(t);
        (void) curl_easy_setopt(e, CURLOPT_URL, req->url);
        (void) curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        (void) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
        (void) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                                (long) MIN(timeout_ms, (long) (KUBE_CONNECT_TIMEOUT / USEC_PER_MSEC)));
        (void) curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        (void) curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
        (void) curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
        (void) curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
        (void) curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        (void) curl_easy_setopt(e, CURLOPT_WRITEDATA, &body);
        (void) curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        (void) curl_easy_setopt(e, CURLOPT_HEADERDATA, &retry_after);
        if (req->body) {
                (void) curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
                (void) curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long) strlen(req->body));
        }
        if (!streq(req->method, "GET"))
                (void) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);

        c = curl_easy_perform(e);
        curl_slist_free_all(headers);
        (void) curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
        (void) curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
        if (c != CURLE_OK) {
                (void) set_error_msg(reterr_msg, "%s %s: %s", req->method, req->path,
                                     body.too_big ? "response body too large" :
                                     errbuf[0] ? errbuf : curl_easy_strerror(c));
                free(body.data);
                return body.too_big ? -EFBIG : curl_to_errno(c);
        }
        (void) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        if (!body.data && !(body.data = strdup("")))
                return -ENOMEM;
        *ret = (struct kube_http_response) {
                .status = status,
                .body = body.data,
                .body_size = body.size,
                .retry_after = retry_after,
        };
        return 0;
}

static int copy_blob(const struct kube_blob *from, struct kube_blob *to) {
        if (!from->data)
                return 0;
        to->data = malloc(from->size + 1);
        if (!to->data)
                return -ENOMEM;
        memcpy(to->data, from->data, from->size);
        to->data[from->size] = '\0';
        to->size = from->size;
        return 0;
}

static void curl_free_transport(void *userdata) {
        struct kube_curl *t = userdata;

        if (!t)
                return;
        if (t->easy)
                curl_easy_cleanup(t->easy);
        kube_config_done(&t->config);
        free(t);
}

static int dup_or_null(const char *s, char **ret) {
        *ret = NULL;
        if (s && !(*ret = strdup(s)))
                return -ENOMEM;
        return 0;
}

int kube_transport_curl_new(const struct kube_config *c, void **ret_userdata, char **reterr_msg) {
        struct kube_curl *t;

        if (!c->server || (!strneq(c->server, "https://", 8) && !strneq(c->server, "http://", 7))) {
                (void) set_error_msg(reterr_msg, "%s: server \"%s\" is not an http(s) URL",
                                     strempty(c->source), strempty(c->server));
                return -EINVAL;
        }
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        /* curl_global_init() is not thread-safe before 7.84; this curl is newer,
         * and curl_easy_init() initialises on first use. */
        t->easy = curl_easy_init();
        if (!t->easy ||
            dup_or_null(c->ca_file, &t->config.ca_file) < 0 ||
            dup_or_null(c->cert_file, &t->config.cert_file) < 0 ||
            dup_or_null(c->key_file, &t->config.key_file) < 0 ||
            copy_blob(&c->ca_data, &t->config.ca_data) < 0 ||
            copy_blob(&c->cert_data, &t->config.cert_data) < 0 ||
            copy_blob(&c->key_data, &t->config.key_data) < 0) {
                curl_free_transport(t);
                return -ENOMEM;
        }
        *ret_userdata = t;
        return 0;
}

int kube_curl_stream_new(const struct kube_config *c, const char *url, const char *token,
                         size_t (*on_data)(char *ptr, size_t size, size_t nmemb, void *userdata),
                         void *userdata, void **ret_easy, void **ret_headers) {
        struct kube_http_request req = { .method = "GET", .url = url, .token = token };
        struct curl_slist *headers;
        CURL *e;

        headers = build_headers(&req);
        if (!headers)
                return -ENOMEM;
        e = curl_easy_init();
        if (!e) {
                curl_slist_free_all(headers);
                return -ENOMEM;
        }
        setup_tls_on(e, c);
        (void) curl_easy_setopt(e, CURLOPT_URL, url);
        (void) curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        /* No total timeout: the server ends the stream at timeoutSeconds,
         * and the caller breaks one that stays silent past its bound. */
        (void) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) (KUBE_CONNECT_TIMEOUT / USEC_PER_MSEC));
        (void) curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
        (void) curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        (void) curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
        (void) curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
        (void) curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
        (void) curl_easy_setopt(e, CURLOPT_WRITEDATA, userdata);
        *ret_easy = e;
        *ret_headers = headers;
        return 0;
}

const struct kube_transport_ops kube_transport_curl = {
        .perform = curl_perform,
        .free = curl_free_transport,
};
