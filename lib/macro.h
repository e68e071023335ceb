/* macro.h: the small helpers every module uses: cleanup attributes,
 * ownership transfer, time units and array sizes. */
#ifndef PGLEASE_MACRO_H
#define PGLEASE_MACRO_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef uint64_t usec_t;

#define USEC_INFINITY ((usec_t) UINT64_MAX)
#define USEC_PER_MSEC ((usec_t) 1000ULL)
#define USEC_PER_SEC ((usec_t) 1000000ULL)
#define USEC_PER_MINUTE ((usec_t) 60 * USEC_PER_SEC)
#define USEC_PER_HOUR ((usec_t) 60 * USEC_PER_MINUTE)
#define USEC_PER_DAY ((usec_t) 24 * USEC_PER_HOUR)

#define _cleanup_(f) __attribute__((__cleanup__(f)))
#define _unused_ __attribute__((__unused__))
#define _printf_(a, b) __attribute__((__format__(printf, a, b)))
#define _warn_unused_result_ __attribute__((__warn_unused_result__))
#define _likely_(x) (__builtin_expect(!!(x), 1))
#define _unlikely_(x) (__builtin_expect(!!(x), 0))

/* An LSN in PostgreSQL's own notation, "0/5076540", in every message
 * (issue 19, item 4): printf("%" LSN_FMT, LSN_ARGS(lsn)). */
#define LSN_FMT PRIX32 "/%" PRIX32
#define LSN_ARGS(lsn) (uint32_t) ((uint64_t) (lsn) >> 32), (uint32_t) (lsn)

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* Hand an owned pointer on: returns it and clears the variable so that its
 * cleanup attribute does nothing. */
#define TAKE_PTR(p)                              \
        ({                                       \
                typeof(p) _take_ptr_ = (p);      \
                (p) = NULL;                      \
                _take_ptr_;                      \
        })

#define TAKE_FD(fd)                              \
        ({                                       \
                int _take_fd_ = (fd);            \
                (fd) = -EBADF;                   \
                _take_fd_;                       \
        })

static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

/* A secret (a token, a password) wiped before it is freed; NULL. */
static inline char *erase_and_free(char *s) {
        if (s)
                explicit_bzero(s, strlen(s));
        free(s);
        return NULL;
}

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void strv_free(char **l) {
        if (!l)
                return;
        for (char **i = l; *i; i++)
                free(*i);
        free(l);
}
static inline void strv_freep(char ***l) {
        strv_free(*l);
}
#define _cleanup_strv_free_ _cleanup_(strv_freep)

static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -EBADF;
}
static inline void closep(int *fd) {
        *fd = safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

/* Declares a "free *p" helper for a type whose destructor returns NULL. */
#define DEFINE_POINTER_CLEANUP_FUNC(type, func)          \
        static inline void func##p(type **p) {          \
                if (*p)                                  \
                        *p = func(*p);                   \
        }

#define streq(a, b) (strcmp((a), (b)) == 0)
#define strneq(a, b, n) (strncmp((a), (b), (n)) == 0)
#define isempty(s) (!(s) || (s)[0] == '\0')
#define strempty(s) ((s) ? (s) : "")

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Sets *ret_msg to a heap copy of a formatted message, when the caller asked
 * for one; used by functions that return detail next to a negative errno. */
int set_error_msg(char **ret_msg, const char *fmt, ...) _printf_(2, 3);

#endif
