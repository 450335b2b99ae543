/* A tiny test harness for the C tests: each test is a function; a failed
 * CHECK reports and fails the current test; main prints one line per test
 * and a closing "N passed, M failed" line, and exits non-zero on failure. */
#ifndef CAS_TEST_HARNESS_H
#define CAS_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cas.h"

static int harness_failed_checks;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "    %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            harness_failed_checks++;                                                 \
        }                                                                            \
    } while (0)

/* The call must succeed; otherwise report its status and message and leave
 * the test (which may leak: the test has failed anyway). */
#define CHECK_OK(call)                                                                          \
    do {                                                                                        \
        cas_status check_status_ = (call);                                                      \
        if (check_status_ != CAS_OK) {                                                          \
            fprintf(stderr, "    %s:%d: %s returned %u (%s): %s\n", __FILE__, __LINE__, #call,  \
                    (unsigned)check_status_, cas_status_str(check_status_), cas_last_error());  \
            harness_failed_checks++;                                                            \
            return;                                                                             \
        }                                                                                       \
    } while (0)

/* The call must fail with `expected` and leave a non-empty message. */
#define CHECK_STATUS(call, expected)                                                          \
    do {                                                                                      \
        cas_status check_status_ = (call);                                                    \
        if (check_status_ != (expected)) {                                                    \
            fprintf(stderr, "    %s:%d: %s returned %u (%s), expected %s: %s\n", __FILE__,    \
                    __LINE__, #call, (unsigned)check_status_, cas_status_str(check_status_),  \
                    #expected, cas_last_error());                                             \
            harness_failed_checks++;                                                          \
        } else if (cas_last_error()[0] == '\0') {                                             \
            fprintf(stderr, "    %s:%d: %s: empty error message\n", __FILE__, __LINE__, #call); \
            harness_failed_checks++;                                                          \
        }                                                                                     \
    } while (0)

struct harness_test {
    const char *name;
    void (*run)(void);
};

#define TEST_ENTRY(fn) { #fn, fn }

/* Runs the tests; `skipped` is reported in the closing line. */
static inline int harness_main(const char *suite, const struct harness_test *tests, size_t count, int skipped) {
    int passed = 0, failed = 0;
    for (size_t i = 0; i < count; i++) {
        int before = harness_failed_checks;
        tests[i].run();
        if (harness_failed_checks == before) {
            passed++;
            printf("  ok    %s\n", tests[i].name);
        } else {
            failed++;
            printf("  FAIL  %s\n", tests[i].name);
        }
        fflush(stdout);
    }
    if (skipped) {
        printf("%s: %d passed, %d failed, %d skipped\n", suite, passed, failed, skipped);
    } else {
        printf("%s: %d passed, %d failed\n", suite, passed, failed);
    }
    return failed == 0 ? 0 : 1;
}

/* A fresh temporary directory (mkdtemp) under $TMPDIR; free() the result. */
static inline char *harness_tempdir(void) {
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0') base = "/tmp";
    size_t len = strlen(base) + sizeof("/cas-c-test.XXXXXX");
    char *dir = (char *)malloc(len);
    if (dir == NULL) abort();
    snprintf(dir, len, "%s/cas-c-test.XXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        abort();
    }
    return dir;
}

/* `dir`/`name` in a malloc'd string. */
static inline char *harness_join(const char *dir, const char *name) {
    size_t len = strlen(dir) + 1 + strlen(name) + 1;
    char *path = (char *)malloc(len);
    if (path == NULL) abort();
    snprintf(path, len, "%s/%s", dir, name);
    return path;
}

/* Removes a test directory and frees its name. */
static inline void harness_remove_dir(char *dir) {
    size_t len = strlen(dir) + 32;
    char *cmd = (char *)malloc(len);
    if (cmd == NULL) abort();
    snprintf(cmd, len, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "    could not remove %s\n", dir);
    free(cmd);
    free(dir);
}

/* Writes `len` bytes to a new file at `path`; whether it worked. */
static inline int harness_write_file(const char *path, const unsigned char *data, size_t len) {
    FILE *fp = fopen(path, "wb");
    if (fp == NULL) return 0;
    int ok = fwrite(data, 1, len, fp) == len;
    return fclose(fp) == 0 && ok;
}

/* Sleeps `ms` milliseconds (between the tries of a bounded poll). */
static inline void harness_sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* `len` deterministic pseudo-random bytes; free() the result. */
static inline unsigned char *harness_bytes(size_t len, unsigned seed) {
    unsigned char *data = (unsigned char *)malloc(len ? len : 1);
    if (data == NULL) abort();
    unsigned x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data[i] = (unsigned char)x;
    }
    return data;
}

/* Reads until `len` bytes or the end, `step` bytes per call; the total
 * goes to `*total`. */
static inline cas_status harness_read_all(cas_reader *reader, unsigned char *buf, size_t len, size_t step, size_t *total) {
    size_t off = 0, n = 0;
    do {
        cas_status s = cas_reader_read(reader, buf + off, len - off < step ? len - off : step, &n);
        if (s != CAS_OK) return s;
        off += n;
    } while (n > 0 && off < len);
    *total = off;
    return CAS_OK;
}

/* Writes `len` bytes, `step` bytes per call. */
static inline cas_status harness_write_all(cas_writer *writer, const unsigned char *data, size_t len, size_t step) {
    for (size_t off = 0; off < len; off += step) {
        cas_status s = cas_writer_write(writer, data + off, len - off < step ? len - off : step);
        if (s != CAS_OK) return s;
    }
    return CAS_OK;
}

#endif
