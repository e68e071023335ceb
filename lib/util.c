/* util.c: string, file and number helpers shared by the modules: strings
 * that cannot truncate, files written atomically, durations and sizes. */
#include <ctype.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <signal.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

int set_error_msg(char **ret_msg, const char *fmt, ...) {
        va_list ap;
        char *s;

        if (!ret_msg)
                return 0;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        if (!s)
                return -ENOMEM;
        free(*ret_msg);
        *ret_msg = s;
        return 0;
}

char *strdup_printf(const char *fmt, ...) {
        va_list ap;
        char *s;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        return r < 0 ? NULL : s;
}

char *strstrip(char *s) {
        char *e;

        while (isspace((unsigned char) *s))
                s++;
        e = s + strlen(s);
        while (e > s && isspace((unsigned char) e[-1]))
                *--e = '\0';
        return s;
}

bool path_is_absolute(const char *p) {
        return p && p[0] == '/';
}

static const struct {
        const char *suffix;
        usec_t usec;
} duration_units[] = {
        { "us", 1 },
        { "usec", 1 },
        { "ms", USEC_PER_MSEC },
        { "msec", USEC_PER_MSEC },
        { "s", USEC_PER_SEC },
        { "sec", USEC_PER_SEC },
        { "min", USEC_PER_MINUTE },
        { "m", USEC_PER_MINUTE },
        { "h", USEC_PER_HOUR },
        { "d", USEC_PER_DAY },
};

int parse_duration(const char *s, usec_t *ret) {
        unsigned long long n;
        bool overflow;
        char *end;

        if (isempty(s) || !isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        n = strtoull(s, &end, 10);
        overflow = errno == ERANGE;
        while (*end == ' ')
                end++;
        if (*end == '\0') {
                if (overflow || n > USEC_INFINITY / USEC_PER_SEC)
                        return -ERANGE;
                *ret = (usec_t) n * USEC_PER_SEC;
                return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(duration_units); i++)
                if (streq(end, duration_units[i].suffix)) {
                        if (overflow || n > USEC_INFINITY / duration_units[i].usec)
                                return -ERANGE;
                        *ret = (usec_t) n * duration_units[i].usec;
                        return 0;
                }
        return -EINVAL;
}

char *format_duration(usec_t u) {
        if (u == 0)
                return strdup("0s");
        if (u % USEC_PER_DAY == 0)
                return strdup_printf("%" PRIu64 "d", u / USEC_PER_DAY);
        if (u % USEC_PER_HOUR == 0)
                return strdup_printf("%" PRIu64 "h", u / USEC_PER_HOUR);
        if (u % USEC_PER_MINUTE == 0)
                return strdup_printf("%" PRIu64 "min", u / USEC_PER_MINUTE);
        if (u % USEC_PER_SEC == 0)
                return strdup_printf("%" PRIu64 "s", u / USEC_PER_SEC);
        if (u % USEC_PER_MSEC == 0)
                return strdup_printf("%" PRIu64 "ms", u / USEC_PER_MSEC);
        return strdup_printf("%" PRIu64 "us", u);
}

static const struct {
        const char *suffix;
        uint64_t factor;
} size_units[] = {
        { "B", 1 },
        { "kB", 1024ULL },
        { "MB", 1024ULL * 1024 },
        { "GB", 1024ULL * 1024 * 1024 },
        { "TB", 1024ULL * 1024 * 1024 * 1024 },
};

int parse_size(const char *s, uint64_t *ret) {
        unsigned long long n;
        bool overflow;
        char *end;

        if (isempty(s) || !isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        n = strtoull(s, &end, 10);
        overflow = errno == ERANGE;
        while (*end == ' ')
                end++;
        if (*end == '\0') {
                if (overflow)
                        return -ERANGE;
                *ret = n;
                return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(size_units); i++)
                if (streq(end, size_units[i].suffix)) {
                        if (overflow || n > UINT64_MAX / size_units[i].factor)
                                return -ERANGE;
                        *ret = n * size_units[i].factor;
                        return 0;
                }
        return -EINVAL;
}

char *format_size(uint64_t b) {
        for (size_t i = ELEMENTSOF(size_units); i-- > 1;)
                if (b != 0 && b % size_units[i].factor == 0)
                        return strdup_printf("%" PRIu64 "%s", b / size_units[i].factor, size_units[i].suffix);
        return strdup_printf("%" PRIu64 "B", b);
}

int parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = { "1", "yes", "true", "on" };
        static const char *const no[] = { "0", "no", "false", "off" };

        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        return -EINVAL;
}

int parse_int64(const char *s, int64_t *ret) {
        long long n;
        char *end;

        if (isempty(s))
                return -EINVAL;
        errno = 0;
        n = strtoll(s, &end, 10);
        /* The format first: "99999999999999999999x" is not a number at all. */
        if (*end != '\0' || end == s)
                return -EINVAL;
        if (errno == ERANGE)
                return -ERANGE;
        *ret = n;
        return 0;
}

int read_full_file(const char *path, char **ret, size_t *ret_size) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, alloc = 0;
        FILE *f;

        f = fopen(path, "re");
        if (!f)
                return -errno;
        for (;;) {
                size_t n;

                if (alloc - size < 4096) {
                        char *nbuf;

                        alloc = alloc ? alloc * 2 : 8192;
                        if (alloc > 64 * 1024 * 1024) {
                                fclose(f);
                                return -EFBIG;
                        }
                        nbuf = realloc(buf, alloc);
                        if (!nbuf) {
                                fclose(f);
                                return -ENOMEM;
                        }
                        buf = nbuf;
                }
                n = fread(buf + size, 1, alloc - size - 1, f);
                size += n;
                if (n == 0) {
                        if (ferror(f)) {
                                /* fread() leaves the reason in errno: a
                                 * directory is EISDIR, not an I/O error. */
                                int r = errno > 0 ? -errno : -EIO;

                                fclose(f);
                                return r;
                        }
                        break;
                }
        }
        fclose(f);
        buf[size] = '\0';
        if (ret_size)
                *ret_size = size;
        *ret = TAKE_PTR(buf);
        return 0;
}

int read_one_line_file(const char *path, char **ret) {
        char *s;
        size_t n;
        int r;

        r = read_full_file(path, &s, &n);
        if (r < 0)
                return r;
        if (n > 0 && s[n - 1] == '\n')
                s[--n] = '\0';
        if (n > 0 && s[n - 1] == '\r')
                s[--n] = '\0';
        *ret = s;
        return 0;
}

int write_all(int fd, const void *buf, size_t len) {
        for (size_t done = 0; done < len;) {
                ssize_t n = write(fd, (const char *) buf + done, len - done);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -EIO;
                done += (size_t) n;
        }
        return 0;
}

int write_file_atomic(const char *path, const char *content, mode_t mode) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        size_t len = strlen(content);
        int r;

        tmp = strdup_printf("%s.tmp.%d", path, (int) getpid());
        if (!tmp)
                return -ENOMEM;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        r = write_all(fd, content, len);
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        if (fsync(fd) < 0 || fchmod(fd, mode) < 0 || rename(tmp, path) < 0) {
                r = -errno;
                (void) unlink(tmp);
                return r;
        }
        return 0;
}

bool strv_equal(char * const *a, char * const *b) {
        if (strv_length(a) != strv_length(b))
                return false;
        for (; a && *a; a++, b++)
                if (!streq(*a, *b))
                        return false;
        return true;
}

size_t strv_length(char * const *l) {
        size_t n = 0;

        if (l)
                while (l[n])
                        n++;
        return n;
}

int strv_split_comma(const char *s, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ char *copy = NULL;
        size_t n = 0;
        char *save = NULL;

        l = calloc(1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        if (isempty(s)) {
                *ret = TAKE_PTR(l);
                return 0;
        }
        copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                char **nl;

                tok = strstrip(tok);
                if (*tok == '\0')
                        continue;
                nl = realloc(l, (n + 2) * sizeof(char *));
                if (!nl)
                        return -ENOMEM;
                l = nl;
                l[n] = strdup(tok);
                if (!l[n])
                        return -ENOMEM;
                l[++n] = NULL;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

int strv_extend(char ***l, const char *s) {
        size_t n = strv_length(*l);
        char **nl, *copy;

        copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        nl = realloc(*l, (n + 2) * sizeof(char *));
        if (!nl) {
                free(copy);
                return -ENOMEM;
        }
        nl[n] = copy;
        nl[n + 1] = NULL;
        *l = nl;
        return 0;
}

static int rm_rf_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        if (ftw->level > 0)
                (void) remove(path);
        return 0;
}

int rm_rf(const char *path) {
        _cleanup_free_ char *copy = strdup(path);
        struct stat st, parent;

        if (!copy)
                return -ENOMEM;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (nftw(path, rm_rf_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
                return -errno;
        if (stat(dirname(copy), &parent) == 0 && parent.st_dev != st.st_dev)
                return 0;
        return rmdir(path) < 0 && errno != ENOENT ? -errno : 0;
}

bool valid_dns_label(const char *s, size_t max) {
        size_t n = strlen(s);

        if (n == 0 || n > max || s[0] == '-' || s[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!islower((unsigned char) s[i]) && !isdigit((unsigned char) s[i]) && s[i] != '-')
                        return false;
        return true;
}

int thread_start(pthread_t *ret, void *(*fn)(void *), void *arg, const char *name) {
        sigset_t all, old;
        pthread_t t;
        int k;

        sigfillset(&all);
        (void) pthread_sigmask(SIG_BLOCK, &all, &old);
        k = pthread_create(&t, NULL, fn, arg);
        (void) pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (k != 0)
                return -k;
        (void) pthread_setname_np(t, name);
        *ret = t;
        return 0;
}
