/* lease-file.c: <run_dir>/lease-expiry, the agent's promise to the
 * run-postgres supervisor of when its leader lease stops being safe. */
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "lease-file.h"
#include "util.h"

static char *lease_file_path(const char *run_dir) {
        if (isempty(run_dir))
                return NULL;
        return strdup_printf("%s/" LEASE_FILE_NAME, run_dir);
}

int lease_file_write(const char *run_dir, usec_t expiry) {
        _cleanup_free_ char *path = NULL, *text = NULL;

        if (isempty(run_dir) || expiry == 0 || expiry == USEC_INFINITY)
                return -EINVAL;
        path = lease_file_path(run_dir);
        text = strdup_printf("%" PRIu64 "\n", expiry);
        if (!path || !text)
                return -ENOMEM;
        return write_file_atomic(path, text, 0644);
}

int lease_file_remove(const char *run_dir) {
        _cleanup_free_ char *path = NULL;

        if (isempty(run_dir))
                return -EINVAL;
        path = lease_file_path(run_dir);
        if (!path)
                return -ENOMEM;
        if (unlink(path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

int lease_file_parse(const char *text, usec_t *ret) {
        _cleanup_free_ char *copy = NULL;
        const char *digits;
        int64_t v;

        if (!text)
                return -EBADMSG;
        copy = strdup(text);
        if (!copy)
                return -ENOMEM;
        /* Digits only: parse_int64 would take a sign or spaces. */
        digits = strstrip(copy);
        if (isempty(digits) || strspn(digits, "0123456789") != strlen(digits))
                return -EBADMSG;
        if (parse_int64(digits, &v) < 0 || v <= 0)
                return -EBADMSG;
        *ret = (usec_t) v;
        return 0;
}

int lease_file_read(const char *run_dir, usec_t *ret) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        size_t size = 0;
        int r;

        if (isempty(run_dir))
                return -EINVAL;
        path = lease_file_path(run_dir);
        if (!path)
                return -ENOMEM;
        r = read_full_file(path, &text, &size);
        if (r == -EFBIG)
                return -EBADMSG;
        if (r < 0)
                return r;
        if (strlen(text) != size)
                return -EBADMSG;
        return lease_file_parse(text, ret);
}
