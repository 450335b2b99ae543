/* Single-node tests of the C API: round trips through every put and get
 * path, streaming, stat, peers, threads, and every error path. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define CHUNK (64 * 1024)

/* A node in a fresh directory: 64 KiB chunks, no fsync (faster tests). */
struct fixture {
    char *dir;
    cas_node *node;
};

static int fixture_start(struct fixture *f) {
    f->dir = harness_tempdir();
    f->node = NULL;
    char *data_dir = harness_join(f->dir, "node");
    cas_config *config = NULL;
    int ok = cas_config_new(data_dir, &config) == CAS_OK && cas_config_set_chunk_size(config, CHUNK) == CAS_OK &&
             cas_config_set_fsync(config, false) == CAS_OK && cas_node_start(config, &f->node) == CAS_OK;
    if (!ok) fprintf(stderr, "    fixture: %s\n", cas_last_error());
    cas_config_free(config);
    free(data_dir);
    return ok;
}

static void fixture_stop(struct fixture *f) {
    cas_node_free(f->node);
    harness_remove_dir(f->dir);
}

#define FIXTURE(f)                       \
    struct fixture f;                    \
    if (!fixture_start(&f)) {            \
        harness_failed_checks++;         \
        return;                          \
    }

/* Whether the file at `path` holds exactly `data`. */
static int file_equals(const char *path, const unsigned char *data, size_t len) {
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) return 0;
    unsigned char *got = (unsigned char *)malloc(len + 1);
    size_t n = fread(got, 1, len + 1, fp);
    fclose(fp);
    int same = n == len && memcmp(got, data, len) == 0;
    free(got);
    return same;
}

/* ---------------------------------------------------------------------- */

static void test_status_strings(void) {
    CHECK(strcmp(cas_status_str(CAS_OK), "success") == 0);
    CHECK(strcmp(cas_status_str(CAS_ERR_NOT_FOUND), "not found") == 0);
    CHECK(strcmp(cas_status_str(12345), "unknown status") == 0);
    const cas_status all[] = {CAS_ERR_INVALID_KEY,    CAS_ERR_NOT_FOUND,       CAS_ERR_INTEGRITY,
                              CAS_ERR_INPUT,          CAS_ERR_DESTINATION,     CAS_ERR_STORAGE_FULL,
                              CAS_ERR_DATA_DIR_LOCKED, CAS_ERR_NETWORK,        CAS_ERR_TIMEOUT,
                              CAS_ERR_REPLICATION,    CAS_ERR_INVALID_ARGUMENT, CAS_ERR_CLOSED,
                              CAS_ERR_IO,             CAS_ERR_NULL_ARGUMENT,   CAS_ERR_INVALID_UTF8,
                              CAS_ERR_PANIC,          CAS_ERR_IN_CALLBACK,     CAS_ERR_OTHER};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *s = cas_status_str(all[i]);
        CHECK(s != NULL && s[0] != '\0' && strcmp(s, "unknown status") != 0);
    }
    /* The numbers are ABI. */
    CHECK(CAS_OK == 0 && CAS_ERR_INVALID_KEY == 1 && CAS_ERR_IO == 13 && CAS_ERR_NULL_ARGUMENT == 100);
    CHECK(cas_version() != NULL && cas_version()[0] != '\0');
}

static void test_last_error(void) {
    CHECK_STATUS(cas_config_new(NULL, NULL), CAS_ERR_NULL_ARGUMENT);
    const char *msg = cas_last_error();
    CHECK(strstr(msg, "data_dir") != NULL);
    size_t full = strlen(msg);
    CHECK(cas_last_error_copy(NULL, 0) == full);
    char small[8];
    CHECK(cas_last_error_copy(small, sizeof small) == full);
    CHECK(strlen(small) == sizeof small - 1 && strncmp(small, msg, sizeof small - 1) == 0);
    char big[256];
    CHECK(cas_last_error_copy(big, sizeof big) == full && strcmp(big, msg) == 0);
    /* A successful call leaves the message alone. */
    CHECK(cas_status_str(CAS_OK) != NULL);
    CHECK(strcmp(cas_last_error(), big) == 0);
}

static void test_free_null_is_noop(void) {
    cas_config_free(NULL);
    cas_node_free(NULL);
    cas_string_free(NULL);
    cas_buffer_free(NULL, 0);
    cas_buffer_free(NULL, 10);
    cas_reader_free(NULL);
    cas_writer_free(NULL);
    cas_stat_free(NULL);
    cas_peer_list_free(NULL);
}

static void test_config_and_start(void) {
    char *dir = harness_tempdir();
    char *data_dir = harness_join(dir, "node");
    cas_config *config = NULL;
    CHECK_OK(cas_config_new(data_dir, &config));
    CHECK_OK(cas_config_set_listen(config, "127.0.0.1:0"));
    CHECK_OK(cas_config_set_listen(config, NULL));
    CHECK_OK(cas_config_add_bootstrap(config, "127.0.0.1:9"));
    uint8_t network_key[32] = {0};
    CHECK_OK(cas_generate_network_key(network_key));
    uint8_t zero[32] = {0};
    CHECK(memcmp(network_key, zero, sizeof zero) != 0); /* random, not left as zeros */
    CHECK_OK(cas_config_set_network_key(config, network_key, sizeof network_key));
    CHECK_STATUS(cas_config_set_network_key(config, network_key, 31), CAS_ERR_INVALID_ARGUMENT);
    CHECK_OK(cas_config_set_network_key(config, NULL, 0));
    CHECK_OK(cas_config_set_advertise(config, "192.0.2.7:7000"));
    CHECK_OK(cas_config_set_advertise(config, NULL));
    CHECK_OK(cas_config_set_placement_diversity(config, "address"));
    CHECK_OK(cas_config_set_placement_diversity(config, "prefix"));
    CHECK_STATUS(cas_config_set_placement_diversity(config, "subnet"), CAS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cas_config_set_placement_diversity(config, NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_OK(cas_config_set_replicas(config, 2));
    CHECK_OK(cas_config_set_min_replicas(config, 0));
    CHECK_OK(cas_config_set_capacity(config, 1 << 30));
    CHECK_OK(cas_config_set_capacity(config, 0));
    CHECK_OK(cas_config_set_fsync(config, false));

    /* A bad value is refused when set, naming it (tests/c/test_host.c has
     * every setting); checks across settings run at start. */
    CHECK_STATUS(cas_config_set_chunk_size(config, 1000), CAS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(cas_last_error(), "chunk_size 1000") != NULL);
    CHECK_OK(cas_config_set_chunk_size(config, CHUNK));
    cas_node *node = (cas_node *)(uintptr_t)0x1;
    CHECK_OK(cas_config_set_min_replicas(config, 3));
    CHECK_STATUS(cas_node_start(config, &node), CAS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(cas_last_error(), "min_replicas (3)") != NULL);
    CHECK(node == (cas_node *)(uintptr_t)0x1); /* out-parameter untouched on failure */
    CHECK_OK(cas_config_set_min_replicas(config, 0));

    CHECK_OK(cas_node_start(config, &node));
    char *id = NULL, *address = (char *)"untouched";
    CHECK_OK(cas_node_id(node, &id));
    CHECK(id != NULL && strlen(id) == 64 && strspn(id, "0123456789abcdef") == 64);
    CHECK_OK(cas_node_address(node, &address));
    CHECK(address == NULL); /* no listen address: no networking */

    /* One node per data directory, in this process too. */
    cas_node *second = NULL;
    CHECK_STATUS(cas_node_start(config, &second), CAS_ERR_DATA_DIR_LOCKED);
    CHECK(second == NULL);

    /* A stopped node refuses work; stopping twice is fine; then it restarts. */
    CHECK_OK(cas_node_stop(node));
    CHECK_OK(cas_node_stop(node));
    char *key = NULL;
    CHECK_STATUS(cas_node_put_buffer(node, (const uint8_t *)"x", 1, NULL, NULL, &key), CAS_ERR_CLOSED);
    CHECK(key == NULL);
    CHECK_OK(cas_node_start(config, &second));
    char *id2 = NULL;
    CHECK_OK(cas_node_id(second, &id2));
    CHECK(strcmp(id, id2) == 0); /* the id persists in the data directory */

    cas_string_free(id);
    cas_string_free(id2);
    cas_node_free(node);
    cas_node_free(second);
    cas_config_free(config);
    free(data_dir);
    harness_remove_dir(dir);
}

static void test_buffer_round_trip(void) {
    FIXTURE(f);
    const size_t sizes[] = {0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 12345};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *data = harness_bytes(sizes[i], (unsigned)i + 1);
        char *key = NULL;
        CHECK_OK(cas_node_put_buffer(f.node, sizes[i] ? data : NULL, sizes[i], NULL, NULL, &key));
        CHECK(strncmp(key, "cas1", 4) == 0);
        uint8_t *got = NULL;
        size_t got_len = 99;
        CHECK_OK(cas_node_get_buffer(f.node, key, &got, &got_len));
        CHECK(got != NULL && got_len == sizes[i] && memcmp(got, data, sizes[i]) == 0);
        cas_buffer_free(got, got_len);
        cas_string_free(key);
        free(data);
    }
    fixture_stop(&f);
}

struct progress_log {
    unsigned calls;
    uint64_t last_done, last_total;
    int went_backwards;
};

static int record_progress(uint64_t done, uint64_t total, void *user) {
    struct progress_log *log = (struct progress_log *)user;
    if (done < log->last_done) log->went_backwards = 1;
    log->calls++;
    log->last_done = done;
    log->last_total = total;
    return 0;
}

static void test_file_round_trip_with_progress(void) {
    FIXTURE(f);
    size_t len = 5 * CHUNK + 777;
    unsigned char *data = harness_bytes(len, 7);
    char *src = harness_join(f.dir, "source.bin");
    char *dest = harness_join(f.dir, "copy.bin");
    CHECK(harness_write_file(src, data, len));

    struct progress_log put_log = {0};
    char *key = NULL;
    CHECK_OK(cas_node_put_file(f.node, src, record_progress, &put_log, &key));
    CHECK(put_log.calls >= 6 && !put_log.went_backwards);
    CHECK(put_log.last_done == len && put_log.last_total == len);

    struct progress_log get_log = {0};
    CHECK_OK(cas_node_get_file(f.node, key, dest, record_progress, &get_log));
    CHECK(file_equals(dest, data, len));
    CHECK(get_log.calls >= 6 && get_log.last_done == len && get_log.last_total == len);

    /* The same bytes through a buffer give the same key (convergent). */
    char *key2 = NULL;
    CHECK_OK(cas_node_put_buffer(f.node, data, len, NULL, NULL, &key2));
    CHECK(strcmp(key, key2) == 0);

    cas_string_free(key);
    cas_string_free(key2);
    free(src);
    free(dest);
    free(data);
    fixture_stop(&f);
}

static void test_streaming_write(void) {
    FIXTURE(f);
    size_t len = 4 * CHUNK + 4321;
    unsigned char *data = harness_bytes(len, 11);
    struct progress_log log = {0};
    cas_writer *writer = NULL;
    CHECK_OK(cas_writer_open(f.node, len, record_progress, &log, &writer));
    /* Odd-sized pieces, and an empty one. */
    size_t off = 0, step = 1000;
    while (off < len) {
        size_t n = len - off < step ? len - off : step;
        CHECK_OK(cas_writer_write(writer, data + off, n));
        off += n;
        step = step * 3 + 17;
    }
    CHECK_OK(cas_writer_write(writer, NULL, 0));
    char *key = NULL;
    CHECK_OK(cas_writer_finish(writer, &key));
    CHECK(log.last_done == len && !log.went_backwards);

    /* Finished: further use is refused, freeing is still required. */
    CHECK_STATUS(cas_writer_write(writer, data, 1), CAS_ERR_CLOSED);
    char *again = NULL;
    CHECK_STATUS(cas_writer_finish(writer, &again), CAS_ERR_CLOSED);
    CHECK(again == NULL);
    cas_writer_free(writer);

    char *expected = NULL;
    CHECK_OK(cas_node_put_buffer(f.node, data, len, NULL, NULL, &expected));
    CHECK(strcmp(key, expected) == 0);
    uint8_t *got = NULL;
    size_t got_len = 0;
    CHECK_OK(cas_node_get_buffer(f.node, key, &got, &got_len));
    CHECK(got_len == len && memcmp(got, data, len) == 0);
    cas_buffer_free(got, got_len);

    /* A writer freed before finishing cancels its put. */
    cas_writer *abandoned = NULL;
    CHECK_OK(cas_writer_open(f.node, 0, record_progress, &log, &abandoned));
    CHECK_OK(cas_writer_write(abandoned, data, 2 * CHUNK));
    cas_writer_free(abandoned);

    /* An empty stream is a valid, empty file. */
    cas_writer *empty = NULL;
    char *empty_key = NULL;
    CHECK_OK(cas_writer_open(f.node, 0, NULL, NULL, &empty));
    CHECK_OK(cas_writer_finish(empty, &empty_key));
    cas_writer_free(empty);
    CHECK_OK(cas_node_get_buffer(f.node, empty_key, &got, &got_len));
    CHECK(got_len == 0);
    cas_buffer_free(got, got_len);

    cas_string_free(empty_key);
    cas_string_free(expected);
    cas_string_free(key);
    free(data);
    fixture_stop(&f);
}

static void test_streaming_read_and_seek(void) {
    FIXTURE(f);
    size_t len = 3 * CHUNK + 999;
    unsigned char *data = harness_bytes(len, 13);
    char *key = NULL;
    CHECK_OK(cas_node_put_buffer(f.node, data, len, NULL, NULL, &key));

    cas_reader *reader = NULL;
    CHECK_OK(cas_reader_open(f.node, key, &reader));
    uint64_t size = 0;
    CHECK_OK(cas_reader_size(reader, &size));
    CHECK(size == len);

    /* Read everything in pieces that straddle chunk boundaries. */
    unsigned char *got = (unsigned char *)malloc(len);
    size_t total = 0, n = 0;
    CHECK_OK(harness_read_all(reader, got, len, 50000, &total));
    CHECK(total == len && memcmp(got, data, len) == 0);
    CHECK_OK(cas_reader_read(reader, got, 10, &n));
    CHECK(n == 0); /* end of file */

    uint64_t pos = 0;
    CHECK_OK(cas_reader_seek(reader, CHUNK - 5, CAS_SEEK_SET, &pos));
    CHECK(pos == CHUNK - 5);
    unsigned char piece[10];
    CHECK_OK(cas_reader_read(reader, piece, sizeof piece, &n));
    CHECK(n == sizeof piece && memcmp(piece, data + CHUNK - 5, sizeof piece) == 0);
    CHECK_OK(cas_reader_seek(reader, -20, CAS_SEEK_CUR, &pos));
    CHECK(pos == CHUNK - 15);
    CHECK_OK(cas_reader_seek(reader, -3, CAS_SEEK_END, NULL));
    CHECK_OK(cas_reader_read(reader, piece, sizeof piece, &n));
    CHECK(n == 3 && memcmp(piece, data + len - 3, 3) == 0);
    CHECK_OK(cas_reader_seek(reader, 100, CAS_SEEK_END, &pos));
    CHECK(pos == len + 100);
    CHECK_OK(cas_reader_read(reader, piece, sizeof piece, &n));
    CHECK(n == 0);

    pos = 42;
    CHECK_STATUS(cas_reader_seek(reader, -1, CAS_SEEK_SET, &pos), CAS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cas_reader_seek(reader, -(int64_t)len - 200, CAS_SEEK_END, &pos), CAS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cas_reader_seek(reader, 0, 7, &pos), CAS_ERR_INVALID_ARGUMENT);
    CHECK(pos == 42);

    cas_reader_free(reader);
    cas_string_free(key);
    free(got);
    free(data);
    fixture_stop(&f);
}

static void test_stat_and_peers(void) {
    FIXTURE(f);
    size_t len = 2 * CHUNK + 1;
    unsigned char *data = harness_bytes(len, 17);
    char *key = NULL, *id = NULL;
    CHECK_OK(cas_node_put_buffer(f.node, data, len, NULL, NULL, &key));
    CHECK_OK(cas_node_id(f.node, &id));

    cas_stat *stat = NULL;
    CHECK_OK(cas_node_stat(f.node, key, &stat));
    cas_file_info info;
    CHECK_OK(cas_stat_file_info(stat, &info));
    CHECK(info.size == len && info.chunk_size == CHUNK && info.chunks == 3);
    CHECK(info.blobs == 4 && info.min_holders == 1);
    for (size_t i = 0; i < info.blobs; i++) {
        cas_blob_holders blob;
        CHECK_OK(cas_stat_blob(stat, i, &blob));
        CHECK(strlen(blob.blob_id) == 64);
        CHECK(blob.holder_count == 1 && strcmp(blob.holders[0], id) == 0);
    }
    cas_blob_holders untouched = {NULL, 77, NULL};
    CHECK_STATUS(cas_stat_blob(stat, info.blobs, &untouched), CAS_ERR_INVALID_ARGUMENT);
    CHECK(untouched.holder_count == 77);
    cas_stat_free(stat);

    cas_peer_list *peers = NULL;
    size_t count = 99;
    CHECK_OK(cas_node_peers(f.node, &peers));
    CHECK_OK(cas_peer_list_len(peers, &count));
    CHECK(count == 0); /* no networking */
    cas_peer peer;
    CHECK_STATUS(cas_peer_list_get(peers, 0, &peer), CAS_ERR_INVALID_ARGUMENT);
    cas_peer_list_free(peers);

    cas_string_free(id);
    cas_string_free(key);
    free(data);
    fixture_stop(&f);
}

/* Several threads share one node handle. */
struct worker {
    cas_node *node;
    unsigned seed;
    int ok;
};

static void *worker_run(void *arg) {
    struct worker *w = (struct worker *)arg;
    w->ok = 1;
    for (int round = 0; round < 5; round++) {
        size_t len = CHUNK + w->seed * 1000 + (size_t)round;
        unsigned char *data = harness_bytes(len, w->seed * 100 + (unsigned)round);
        char *key = NULL;
        uint8_t *got = NULL;
        size_t got_len = 0;
        if (cas_node_put_buffer(w->node, data, len, NULL, NULL, &key) != CAS_OK ||
            cas_node_get_buffer(w->node, key, &got, &got_len) != CAS_OK || got_len != len ||
            memcmp(got, data, len) != 0) {
            fprintf(stderr, "    worker %u: %s\n", w->seed, cas_last_error());
            w->ok = 0;
        }
        cas_buffer_free(got, got_len);
        cas_string_free(key);
        free(data);
    }
    return NULL;
}

static void test_threads_share_a_node(void) {
    FIXTURE(f);
    struct worker workers[4];
    pthread_t threads[4];
    for (unsigned i = 0; i < 4; i++) {
        workers[i] = (struct worker){f.node, i + 1, 0};
        CHECK(pthread_create(&threads[i], NULL, worker_run, &workers[i]) == 0);
    }
    for (unsigned i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        CHECK(workers[i].ok);
    }
    fixture_stop(&f);
}

/* A callback that tries to call back into the library. */
struct reentry {
    cas_node *node;
    cas_status status;
    int called;
};

static int call_back_in(uint64_t done, uint64_t total, void *user) {
    (void)done;
    (void)total;
    struct reentry *r = (struct reentry *)user;
    if (r->called++) return 0;
    char *key = NULL;
    r->status = cas_node_put_buffer(r->node, (const uint8_t *)"nested", 6, NULL, NULL, &key);
    cas_string_free(key);
    return 0;
}

static void test_callback_may_not_block(void) {
    FIXTURE(f);
    struct reentry r = {f.node, CAS_OK, 0};
    unsigned char *data = harness_bytes(CHUNK, 19);
    char *key = NULL;
    CHECK_OK(cas_node_put_buffer(f.node, data, CHUNK, call_back_in, &r, &key));
    CHECK(r.called && r.status == CAS_ERR_IN_CALLBACK);
    cas_string_free(key);
    free(data);
    fixture_stop(&f);
}

/* As documented: callbacks of whole-file calls run on the calling thread. */
struct thread_log {
    pthread_t caller;
    int calls, elsewhere;
};

static int record_thread(uint64_t done, uint64_t total, void *user) {
    (void)done;
    (void)total;
    struct thread_log *log = (struct thread_log *)user;
    log->calls++;
    if (!pthread_equal(pthread_self(), log->caller)) log->elsewhere++;
    return 0;
}

static void test_whole_file_callbacks_run_on_the_calling_thread(void) {
    FIXTURE(f);
    unsigned char *data = harness_bytes(3 * CHUNK, 29);
    char *dest = harness_join(f.dir, "copy.bin");
    struct thread_log log = {pthread_self(), 0, 0};
    char *key = NULL;
    CHECK_OK(cas_node_put_buffer(f.node, data, 3 * CHUNK, record_thread, &log, &key));
    CHECK_OK(cas_node_get_file(f.node, key, dest, record_thread, &log));
    CHECK(log.calls >= 2 && log.elsewhere == 0);
    cas_string_free(key);
    free(dest);
    free(data);
    fixture_stop(&f);
}

/* A writer's finish refused inside a callback (CAS_ERR_IN_CALLBACK) must
 * leave the writer as it was: still open, its put neither ended nor lost. */
struct finish_in_callback {
    cas_writer *writer;
    cas_status status;
    char *key;
    int called;
};

static int finish_writer_in(uint64_t done, uint64_t total, void *user) {
    (void)done;
    (void)total;
    struct finish_in_callback *r = (struct finish_in_callback *)user;
    if (r->called++) return 0;
    r->status = cas_writer_finish(r->writer, &r->key);
    return 0;
}

static void test_refused_finish_keeps_the_writer(void) {
    FIXTURE(f);
    size_t len = 2 * CHUNK + 5;
    unsigned char *data = harness_bytes(len, 23);
    cas_writer *writer = NULL;
    CHECK_OK(cas_writer_open(f.node, len, NULL, NULL, &writer));
    CHECK_OK(cas_writer_write(writer, data, CHUNK));

    struct finish_in_callback r = {writer, CAS_OK, NULL, 0};
    char *other = NULL;
    CHECK_OK(cas_node_put_buffer(f.node, (const uint8_t *)"other", 5, finish_writer_in, &r, &other));
    CHECK(r.called && r.status == CAS_ERR_IN_CALLBACK && r.key == NULL);

    /* The writer goes on: the rest of the bytes, then a real finish. */
    CHECK_OK(cas_writer_write(writer, data + CHUNK, len - CHUNK));
    char *key = NULL;
    CHECK_OK(cas_writer_finish(writer, &key));
    cas_writer_free(writer);
    uint8_t *got = NULL;
    size_t got_len = 0;
    CHECK_OK(cas_node_get_buffer(f.node, key, &got, &got_len));
    CHECK(got_len == len && memcmp(got, data, len) == 0);
    cas_buffer_free(got, got_len);

    cas_string_free(key);
    cas_string_free(other);
    free(data);
    fixture_stop(&f);
}

/* A well-formed key that names nothing stored: one character of a real
 * key changed inside the manifest id. */
static char *unknown_key(const char *key) {
    char *other = strdup(key);
    other[10] = other[10] == 'a' ? 'b' : 'a';
    return other;
}

static void test_bad_and_unknown_keys(void) {
    FIXTURE(f);
    char *key = NULL;
    CHECK_OK(cas_node_put_buffer(f.node, (const uint8_t *)"hello", 5, NULL, NULL, &key));
    char *unknown = unknown_key(key);
    char *dest = harness_join(f.dir, "never.bin");
    const char *bad_keys[] = {"", "not a key", "cas1", "CAS1AAAA", "cas1!!!!"};

    uint8_t *data = (uint8_t *)(uintptr_t)0x1;
    size_t len = 12345;
    cas_reader *reader = NULL;
    cas_stat *stat = NULL;
    for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++) {
        CHECK_STATUS(cas_node_get_buffer(f.node, bad_keys[i], &data, &len), CAS_ERR_INVALID_KEY);
        CHECK_STATUS(cas_node_get_file(f.node, bad_keys[i], dest, NULL, NULL), CAS_ERR_INVALID_KEY);
        CHECK_STATUS(cas_reader_open(f.node, bad_keys[i], &reader), CAS_ERR_INVALID_KEY);
        CHECK_STATUS(cas_node_stat(f.node, bad_keys[i], &stat), CAS_ERR_INVALID_KEY);
    }
    char upper[256];
    snprintf(upper, sizeof upper, "%s", key);
    upper[20] = 'A';
    CHECK_STATUS(cas_node_get_buffer(f.node, upper, &data, &len), CAS_ERR_INVALID_KEY);
    CHECK(strstr(cas_last_error(), "upper-case") != NULL);

    CHECK_STATUS(cas_node_get_buffer(f.node, unknown, &data, &len), CAS_ERR_NOT_FOUND);
    CHECK_STATUS(cas_node_get_file(f.node, unknown, dest, NULL, NULL), CAS_ERR_NOT_FOUND);
    CHECK_STATUS(cas_reader_open(f.node, unknown, &reader), CAS_ERR_NOT_FOUND);
    CHECK_STATUS(cas_node_stat(f.node, unknown, &stat), CAS_ERR_NOT_FOUND);
    /* The message spells the characters of the key that name its manifest
       (where a typo makes it unknown), not the secret part after them. */
    char shown[64];
    snprintf(shown, sizeof shown, "%.56s", unknown);
    CHECK(strstr(cas_last_error(), shown) != NULL);
    CHECK(strstr(cas_last_error(), unknown + 60) == NULL);
    CHECK(access(dest, F_OK) != 0); /* a failed get leaves nothing */

    /* A pasted key's surrounding whitespace is ignored. */
    char pasted[256];
    snprintf(pasted, sizeof pasted, " %s\n", key);
    uint8_t *got = NULL;
    size_t got_len = 0;
    CHECK_OK(cas_node_get_buffer(f.node, pasted, &got, &got_len));
    CHECK(got_len == 5 && memcmp(got, "hello", 5) == 0);
    cas_buffer_free(got, got_len);

    /* Out-parameters are written only on success. */
    CHECK(data == (uint8_t *)(uintptr_t)0x1 && len == 12345 && reader == NULL && stat == NULL);

    /* Keys must be UTF-8. */
    const char not_utf8[] = {'c', 'a', 's', '1', (char)0xff, (char)0xfe, 0};
    CHECK_STATUS(cas_node_get_buffer(f.node, not_utf8, &data, &len), CAS_ERR_INVALID_UTF8);

    free(dest);
    free(unknown);
    cas_string_free(key);
    fixture_stop(&f);
}

static void test_input_and_destination_errors(void) {
    FIXTURE(f);
    char *key = NULL;
    char *missing = harness_join(f.dir, "does-not-exist.bin");
    CHECK_STATUS(cas_node_put_file(f.node, missing, NULL, NULL, &key), CAS_ERR_INPUT);
    CHECK(strstr(cas_last_error(), "does-not-exist.bin") != NULL);
    CHECK_STATUS(cas_node_put_file(f.node, f.dir, NULL, NULL, &key), CAS_ERR_INPUT); /* a directory */
    CHECK(key == NULL);

    CHECK_OK(cas_node_put_buffer(f.node, (const uint8_t *)"payload", 7, NULL, NULL, &key));
    char *no_dir = harness_join(f.dir, "no/such/dir/out.bin");
    CHECK_STATUS(cas_node_get_file(f.node, key, no_dir, NULL, NULL), CAS_ERR_DESTINATION);
    CHECK(strstr(cas_last_error(), "out.bin") != NULL);
    CHECK_STATUS(cas_node_get_file(f.node, key, f.dir, NULL, NULL), CAS_ERR_DESTINATION); /* a directory */
    if (geteuid() != 0) { /* root ignores permissions */
        char *locked = harness_join(f.dir, "locked");
        mkdir(locked, 0500);
        char *inside = harness_join(locked, "out.bin");
        CHECK_STATUS(cas_node_get_file(f.node, key, inside, NULL, NULL), CAS_ERR_DESTINATION);
        free(inside);
        free(locked);
    }
    free(no_dir);
    free(missing);
    cas_string_free(key);
    fixture_stop(&f);
}

static void test_null_arguments(void) {
    FIXTURE(f);
    char *key = NULL;
    CHECK_OK(cas_node_put_buffer(f.node, (const uint8_t *)"abc", 3, NULL, NULL, &key));
    cas_config *config = NULL;
    cas_node *node = NULL;
    char *s = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    uint64_t u64 = 0;
    cas_writer *writer = NULL;
    cas_reader *reader = NULL;
    cas_stat *stat = NULL;
    cas_peer_list *peers = NULL;
    cas_file_info info;
    cas_blob_holders blob;
    cas_peer peer;
    unsigned char buf[4];

    CHECK_STATUS(cas_config_new(NULL, &config), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_config_new("/tmp/x", NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_config_set_listen(NULL, "127.0.0.1:0"), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_config_add_bootstrap(NULL, "127.0.0.1:1"), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_config_set_advertise(NULL, "127.0.0.1:1"), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_config_set_network_key(NULL, buf, 4), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_generate_network_key(NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_config_set_replicas(NULL, 1), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_config_set_min_replicas(NULL, 1), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_config_set_chunk_size(NULL, CHUNK), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_config_set_capacity(NULL, 1), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_config_set_fsync(NULL, true), CAS_ERR_NULL_ARGUMENT);
    CHECK_OK(cas_config_new("/tmp/x", &config));
    CHECK_STATUS(cas_config_add_bootstrap(config, NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_start(NULL, &node), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_start(config, NULL), CAS_ERR_NULL_ARGUMENT);
    cas_config_free(config);

    CHECK_STATUS(cas_node_stop(NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_id(NULL, &s), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_id(f.node, NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_address(NULL, &s), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_address(f.node, NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_put_file(NULL, "/etc/hostname", NULL, NULL, &s), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_put_file(f.node, NULL, NULL, NULL, &s), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_put_file(f.node, "/etc/hostname", NULL, NULL, NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_put_buffer(NULL, buf, 1, NULL, NULL, &s), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_put_buffer(f.node, NULL, 1, NULL, NULL, &s), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_put_buffer(f.node, buf, 1, NULL, NULL, NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_get_file(NULL, key, "/tmp/x", NULL, NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_get_file(f.node, NULL, "/tmp/x", NULL, NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_get_file(f.node, key, NULL, NULL, NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_get_buffer(NULL, key, &data, &len), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_get_buffer(f.node, NULL, &data, &len), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_get_buffer(f.node, key, NULL, &len), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_get_buffer(f.node, key, &data, NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_stat(NULL, key, &stat), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_stat(f.node, NULL, &stat), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_stat(f.node, key, NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_stat_file_info(NULL, &info), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_stat_blob(NULL, 0, &blob), CAS_ERR_NULL_ARGUMENT);
    CHECK_OK(cas_node_stat(f.node, key, &stat));
    CHECK_STATUS(cas_stat_file_info(stat, NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_stat_blob(stat, 0, NULL), CAS_ERR_NULL_ARGUMENT);
    cas_stat_free(stat);
    CHECK_STATUS(cas_node_peers(NULL, &peers), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_node_peers(f.node, NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_peer_list_len(NULL, &len), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_peer_list_get(NULL, 0, &peer), CAS_ERR_NULL_ARGUMENT);
    CHECK_OK(cas_node_peers(f.node, &peers));
    CHECK_STATUS(cas_peer_list_len(peers, NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_peer_list_get(peers, 0, NULL), CAS_ERR_NULL_ARGUMENT);
    cas_peer_list_free(peers);

    CHECK_STATUS(cas_writer_open(NULL, 0, NULL, NULL, &writer), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_writer_open(f.node, 0, NULL, NULL, NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_writer_write(NULL, buf, 1), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_writer_finish(NULL, &s), CAS_ERR_NULL_ARGUMENT);
    CHECK_OK(cas_writer_open(f.node, 0, NULL, NULL, &writer));
    CHECK_STATUS(cas_writer_write(writer, NULL, 1), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_writer_finish(writer, NULL), CAS_ERR_NULL_ARGUMENT);
    cas_writer_free(writer);

    CHECK_STATUS(cas_reader_open(NULL, key, &reader), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_reader_open(f.node, NULL, &reader), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_reader_open(f.node, key, NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_reader_size(NULL, &u64), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_reader_read(NULL, buf, 1, &len), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_reader_seek(NULL, 0, CAS_SEEK_SET, NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_OK(cas_reader_open(f.node, key, &reader));
    CHECK_STATUS(cas_reader_size(reader, NULL), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_reader_read(reader, NULL, 1, &len), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_reader_read(reader, buf, 1, NULL), CAS_ERR_NULL_ARGUMENT);
    cas_reader_free(reader);

    /* None of the failed calls wrote an out-parameter. */
    CHECK(s == NULL && data == NULL && len == 0 && node == NULL && writer != NULL);
    cas_string_free(key);
    fixture_stop(&f);
}

int main(void) {
    static const struct harness_test tests[] = {
        TEST_ENTRY(test_status_strings),
        TEST_ENTRY(test_last_error),
        TEST_ENTRY(test_free_null_is_noop),
        TEST_ENTRY(test_config_and_start),
        TEST_ENTRY(test_buffer_round_trip),
        TEST_ENTRY(test_file_round_trip_with_progress),
        TEST_ENTRY(test_streaming_write),
        TEST_ENTRY(test_streaming_read_and_seek),
        TEST_ENTRY(test_stat_and_peers),
        TEST_ENTRY(test_threads_share_a_node),
        TEST_ENTRY(test_callback_may_not_block),
        TEST_ENTRY(test_refused_finish_keeps_the_writer),
        TEST_ENTRY(test_whole_file_callbacks_run_on_the_calling_thread),
        TEST_ENTRY(test_bad_and_unknown_keys),
        TEST_ENTRY(test_input_and_destination_errors),
        TEST_ENTRY(test_null_arguments),
    };
    return harness_main("test_api", tests, sizeof tests / sizeof tests[0], 0);
}
