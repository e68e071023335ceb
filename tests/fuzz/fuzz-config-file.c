/* fuzz-config-file.c: libFuzzer target for the configuration file parser
 * (config_load_text) and the validation of the whole. */
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *err = NULL, *dump = NULL;
        struct config c;

        if (config_init(&c) < 0)
                return 0;
        if (config_load_text(&c, (const char *) data, size, "fuzz.conf", &err) >= 0 &&
            config_validate(&c, &err) >= 0)
                (void) config_dump(&c, &dump);
        config_done(&c);
        return 0;
}
