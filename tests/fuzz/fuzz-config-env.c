/* fuzz-config-env.c: libFuzzer target for the environment overrides
 * (PGLEASE_<KEY>) and --set flags: the input is NUL-separated entries;
 * those starting with '-' are --set values, the others environment
 * entries (prefixed PGLEASE_ when the input does not start with '!'). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ENTRIES 64

static void split(const char *text, size_t size, bool prefix, char **env, char **settings) {
        size_t n_env = 0, n_set = 0;

        for (size_t i = 0; i < size && n_env < MAX_ENTRIES && n_set < MAX_ENTRIES;) {
                size_t len = strnlen(text + i, size - i);
                const char *e = text + i;

                if (e[0] == '-')
                        settings[n_set++] = strndup(e + 1, len ? len - 1 : 0);
                else if (prefix)
                        env[n_env++] = strdup_printf("PGLEASE_%.*s", (int) len, e);
                else
                        env[n_env++] = strndup(e, len);
                i += len + 1;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *env[MAX_ENTRIES + 1] = {}, *settings[MAX_ENTRIES + 1] = {};
        _cleanup_strv_free_ char **unknown = NULL;
        _cleanup_free_ char *err = NULL;
        bool prefix = !(size > 0 && data[0] == '!');
        struct config c;

        if (!prefix) {
                data++;
                size--;
        }
        split((const char *) data, size, prefix, env, settings);
        /* An allocation failure leaves a NULL in the middle: the list ends
         * there, which is still a valid input. */
        if (config_load(NULL, env, settings, &c, &unknown, &err) >= 0)
                config_done(&c);
        for (size_t i = 0; i < MAX_ENTRIES; i++) {
                free(env[i]);
                free(settings[i]);
        }
        return 0;
}
