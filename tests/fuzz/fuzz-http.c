/* fuzz-http.c: libFuzzer target for what the agent's HTTP API reads of a
 * request that libmicrohttpd has already split into method, URL, headers
 * and body (agent/http-server.c): the POST /failsafe body
 * (httpapi_failsafe_parse: JSON with a member name, from any pod that can
 * reach the port), the Authorization header against the token
 * (httpapi_token_matches), and http_listen itself
 * (httpapi_parse_listen, from the configuration). The first byte picks
 * the parser; the rest is its input. Each must answer, never crash, and a
 * leader it accepts is a DNS label. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "httpapi.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct sockaddr_storage sa;
        socklen_t len = 0;
        char *leader = NULL, *s;

        if (size < 1)
                return 0;
        /* A copy of exactly the input: ASan sees any read past it. */
        s = malloc(size);
        if (!s)
                return 0;
        memcpy(s, data + 1, size - 1);
        switch (data[0] % 3) {
        case 0:
                if (httpapi_failsafe_parse(s, size - 1, &leader) == 0) {
                        size_t n = strlen(leader);

                        if (n == 0 || n > 63)
                                abort();
                        for (size_t i = 0; i < n; i++)
                                if (!((leader[i] >= 'a' && leader[i] <= 'z') || (leader[i] >= '0' && leader[i] <= '9') ||
                                      leader[i] == '-'))
                                        abort();
                        free(leader);
                }
                break;
        case 1:
                s[size - 1] = 0;
                (void) httpapi_token_matches(s, "0123456789abcdef0123456789abcdef");
                break;
        default:
                s[size - 1] = 0;
                if (httpapi_parse_listen(s, &sa, &len) == 0 && (len == 0 || len > sizeof(sa)))
                        abort();
                break;
        }
        free(s);
        return 0;
}
