/* util.h: string, file and number helpers shared by the modules: strings
 * that cannot truncate, files written atomically, durations and sizes. */
#ifndef PGLEASE_UTIL_H
#define PGLEASE_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* asprintf() returning a string or NULL, never truncating. */
char *strdup_printf(const char *fmt, ...) _printf_(1, 2);

/* Parses "10s", "500ms", "2min", "1h", "3d", "250us"; a bare number is
 * seconds. Returns -EINVAL on anything else, -ERANGE on overflow. */
int parse_duration(const char *s, usec_t *ret);

/* Formats a duration the way parse_duration() reads it ("10s", "500ms"). */
char *format_duration(usec_t u);

/* Parses "1024", "64kB", "16MB", "1GB" (powers of 1024, PostgreSQL's units)
 * into bytes. */
int parse_size(const char *s, uint64_t *ret);
char *format_size(uint64_t bytes);

int parse_bool(const char *s, bool *ret);
int parse_int64(const char *s, int64_t *ret);

/* Reads a whole small file (a password, a token) into a heap string,
 * stripping one trailing newline. */
int read_one_line_file(const char *path, char **ret);
int read_full_file(const char *path, char **ret, size_t *ret_size);

/* Writes a file through a temporary file + fsync + rename, so that a reader
 * sees either the old or the new content, never half of it. */
/* Writes all of buf, again after EINTR and short writes: 0, or -errno
 * (-EIO when write() wrote nothing). */
int write_all(int fd, const void *buf, size_t len);
int write_file_atomic(const char *path, const char *content, mode_t mode);

/* Splits "a,b ,c" into a NULL-terminated vector of trimmed, non-empty items. */
int strv_split_comma(const char *s, char ***ret);
size_t strv_length(char * const *l);
/* Same strings in the same order (NULL and empty are equal). */
bool strv_equal(char * const *a, char * const *b);
/* A DNS label (RFC 1123): a-z, 0-9 and inner '-', 1 to max characters. */
bool valid_dns_label(const char *s, size_t max);
/* Appends a copy of s to the NULL-terminated vector *l (which may be NULL). */
int strv_extend(char ***l, const char *s);

/* Removes trailing and leading whitespace in place, returns s. */
char *strstrip(char *s);

bool path_is_absolute(const char *p);

/* Starts fn(arg) on a thread of its own, named name (ps -L and top show,
 * and renice, it), with every signal blocked: process signals are the
 * agent loop's (signalfd), and a thread born with them unblocked would
 * take SIGTERM's default action whenever it was created before the loop
 * blocked them. Returns 0 or a negative errno. */
int thread_start(pthread_t *ret, void *(*fn)(void *), void *arg, const char *name);

/* Removes a tree without following symlinks or crossing into other file
 * systems; the top directory itself only when it is not a mount point (a
 * volume is emptied, not removed). */
int rm_rf(const char *path);

#endif
