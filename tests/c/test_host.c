/* What a host application shipping libcas relies on: every setting checked
 * when it is set, the version macros, a progress callback that stops its
 * operation or frees its node, the library's logs in the host's logger. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define CHUNK (64 * 1024)

static cas_status start_in(const char *dir, const char *name, cas_node **node) {
    char *data_dir = harness_join(dir, name);
    cas_config *config = NULL;
    cas_status s = cas_config_new(data_dir, &config);
    if (s == CAS_OK) s = cas_config_set_chunk_size(config, CHUNK);
    if (s == CAS_OK) s = cas_config_set_fsync(config, false);
    if (s == CAS_OK) s = cas_node_start(config, node);
    cas_config_free(config);
    free(data_dir);
    return s;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* How many files under `dir` have a name starting with `prefix`. */
static int count_named(const char *dir, const char *prefix) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "find '%s' -name '%s*' | wc -l", dir, prefix);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p == NULL || fscanf(p, "%d", &n) != 1) n = -1;
    if (p != NULL) pclose(p);
    return n;
}

/* The message of the last error mentions `text`. */
#define CHECK_MESSAGE_HAS(text) CHECK(strstr(cas_last_error(), (text)) != NULL)

/* ---- versions --------------------------------------------------------- */

static void test_header_and_library_versions_agree(void) {
    CHECK(strcmp(CAS_VERSION_STRING, cas_version()) == 0);
    char made[64];
    snprintf(made, sizeof made, "%d.%d.%d", CAS_VERSION_MAJOR, CAS_VERSION_MINOR, CAS_VERSION_PATCH);
    CHECK(strcmp(made, CAS_VERSION_STRING) == 0);
}

/* ---- settings --------------------------------------------------------- */

static void test_bad_addresses_are_refused_when_set(void) {
    cas_config *config = NULL;
    CHECK_OK(cas_config_new("/tmp/cas-never-started", &config));
    const char *bad_listen[] = {"garbage", "127.0.0.1:99999", "127.0.0.1", "", ":7000", "::1:7000"};
    for (size_t i = 0; i < sizeof bad_listen / sizeof bad_listen[0]; i++) {
        CHECK_STATUS(cas_config_set_listen(config, bad_listen[i]), CAS_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE_HAS("listen");
        CHECK_MESSAGE_HAS(bad_listen[i]);
        CHECK_STATUS(cas_config_set_advertise(config, bad_listen[i]), CAS_ERR_INVALID_ARGUMENT);
    }
    const char *bad_bootstrap[] = {"garbage", "", "127.0.0.1:0", "host:", "a b:7000"};
    for (size_t i = 0; i < sizeof bad_bootstrap / sizeof bad_bootstrap[0]; i++) {
        CHECK_STATUS(cas_config_add_bootstrap(config, bad_bootstrap[i]), CAS_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE_HAS("bootstrap");
    }
    /* Host names stay allowed. */
    CHECK_OK(cas_config_set_listen(config, "127.0.0.1:0"));
    CHECK_OK(cas_config_set_listen(config, "[::1]:0"));
    CHECK_OK(cas_config_set_listen(config, "localhost:7000"));
    CHECK_OK(cas_config_add_bootstrap(config, "localhost:7000"));
    CHECK_OK(cas_config_add_bootstrap(config, "node1.example:7000"));
    CHECK_OK(cas_config_set_advertise(config, "node1.example:0"));
    cas_config_free(config);
}

static void test_empty_data_dir_is_refused_and_leaves_nothing(void) {
    char *dir = harness_tempdir();
    char cwd[4096];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(chdir(dir) == 0);
    cas_config *config = NULL;
    CHECK_STATUS(cas_config_new("", &config), CAS_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("data_dir");
    CHECK(config == NULL);
    CHECK(!exists("lock") && !exists("secret") && !exists("blobs"));
    CHECK(chdir(cwd) == 0);
    harness_remove_dir(dir);
}

typedef cas_status (*set_u64_fn)(cas_config *, uint64_t);

static void test_every_setting_is_checked_when_set(void) {
    cas_config *config = NULL;
    CHECK_OK(cas_config_new("/tmp/cas-never-started", &config));
    const struct {
        const char *name;
        set_u64_fn set;
    } durations[] = {
        {"gossip_interval", cas_config_set_gossip_interval_ms}, {"request_timeout", cas_config_set_request_timeout_ms},
        {"idle_timeout", cas_config_set_idle_timeout_ms},       {"suspect_after", cas_config_set_suspect_after_ms},
        {"dead_after", cas_config_set_dead_after_ms},           {"forget_after", cas_config_set_forget_after_ms},
        {"repair_interval", cas_config_set_repair_interval_ms},
        {"first_message_timeout", cas_config_set_first_message_timeout_ms},
        {"handshake_timeout", cas_config_set_handshake_timeout_ms},
        {"liar_penalty", cas_config_set_liar_penalty_ms},
    };
    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
        CHECK_STATUS(durations[i].set(config, 0), CAS_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE_HAS(durations[i].name);
        CHECK_MESSAGE_HAS("0 ms");
        CHECK_STATUS(durations[i].set(config, UINT64_MAX), CAS_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE_HAS("18446744073709551615");
        CHECK_OK(durations[i].set(config, 250));
    }
    CHECK_STATUS(cas_config_set_chunk_size(config, 1000), CAS_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("1000");
    CHECK_STATUS(cas_config_set_parallelism(config, 5000), CAS_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("5000");
    CHECK_STATUS(cas_config_set_max_inflight_bytes(config, 0), CAS_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("max_inflight_bytes 0");
    CHECK_STATUS(cas_config_set_max_get_bytes(config, 0), CAS_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("max_get_bytes 0");
    const struct {
        const char *name;
        cas_status (*set)(cas_config *, size_t);
    } limits[] = {
        {"max_handshaking 0", cas_config_set_max_handshaking},
        {"max_handshaking_per_address 0", cas_config_set_max_handshaking_per_address},
        {"max_handshaking_per_prefix 0", cas_config_set_max_handshaking_per_prefix},
        {"max_inbound 0", cas_config_set_max_inbound},
        {"max_inbound_per_address 0", cas_config_set_max_inbound_per_address},
        {"max_inbound_per_prefix 0", cas_config_set_max_inbound_per_prefix},
    };
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        CHECK_STATUS(limits[i].set(config, 0), CAS_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE_HAS(limits[i].name);
        CHECK_OK(limits[i].set(config, 8));
        CHECK_STATUS(limits[i].set(NULL, 8), CAS_ERR_NULL_ARGUMENT);
    }
    CHECK_STATUS(cas_config_set_bad_gossip_strikes(config, 0), CAS_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("bad_gossip_strikes 0");
    CHECK_OK(cas_config_set_bad_gossip_strikes(config, 1));
    CHECK_STATUS(cas_config_set_memory_budget(config, 64 << 20), CAS_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("memory_budget 67108864");
    uint8_t secret[33] = {0};
    CHECK_STATUS(cas_config_set_secret(config, secret, 31), CAS_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("31");
    CHECK_STATUS(cas_config_set_secret(config, NULL, 32), CAS_ERR_NULL_ARGUMENT);
    CHECK_STATUS(cas_config_set_gossip_interval_ms(NULL, 1), CAS_ERR_NULL_ARGUMENT);
    cas_config_free(config);
}

/* The limits are checked together at start, naming the settings. */
static void test_limits_are_checked_together_at_start(void) {
    char *dir = harness_tempdir();
    char *data_dir = harness_join(dir, "node");
    cas_config *config = NULL;
    cas_node *node = NULL;
    CHECK_OK(cas_config_new(data_dir, &config));
    CHECK_OK(cas_config_set_fsync(config, false));
    CHECK_OK(cas_config_set_max_inbound(config, 100));
    CHECK_STATUS(cas_node_start(config, &node), CAS_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("max_inbound_per_prefix (512) cannot exceed max_inbound (100)");
    CHECK_OK(cas_config_set_max_inbound_per_prefix(config, 100));
    CHECK_STATUS(cas_node_start(config, &node), CAS_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("max_inbound_per_address (256) cannot exceed max_inbound_per_prefix (100)");
    CHECK_OK(cas_config_set_max_inbound_per_address(config, 10));
    CHECK_OK(cas_config_set_max_handshaking_per_address(config, 65));
    CHECK_STATUS(cas_node_start(config, &node), CAS_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("max_handshaking_per_address (65) cannot exceed max_handshaking_per_prefix (64)");
    CHECK_OK(cas_config_set_max_handshaking_per_address(config, 4));
    CHECK_OK(cas_config_set_first_message_timeout_ms(config, 6000));
    CHECK_STATUS(cas_node_start(config, &node), CAS_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("first_message_timeout (6s) cannot exceed handshake_timeout (5s)");
    CHECK(node == NULL);
    CHECK_OK(cas_config_set_handshake_timeout_ms(config, 6000));
    CHECK_OK(cas_config_set_max_handshaking(config, 64));
    CHECK_OK(cas_config_set_max_handshaking_per_prefix(config, 8));
    CHECK_OK(cas_config_set_bad_gossip_strikes(config, 3));
    CHECK_OK(cas_config_set_liar_penalty_ms(config, 60000));
    CHECK_OK(cas_config_set_listen(config, "127.0.0.1:0"));
    CHECK_OK(cas_node_start(config, &node));
    cas_node_free(node);
    cas_config_free(config);
    free(data_dir);
    harness_remove_dir(dir);
}

static void test_every_setting_reaches_the_node(void) {
    char *dir = harness_tempdir();
    char *data_dir = harness_join(dir, "node");
    cas_config *config = NULL;
    cas_node *a = NULL, *b = NULL;
    uint8_t secret[32];
    memset(secret, 7, sizeof secret);
    CHECK_OK(cas_config_new(data_dir, &config));
    CHECK_OK(cas_config_set_chunk_size(config, CHUNK));
    CHECK_OK(cas_config_set_fsync(config, false));
    CHECK_OK(cas_config_set_secret(config, secret, sizeof secret));
    CHECK_OK(cas_config_set_keep_fetched(config, false));
    CHECK_OK(cas_config_set_max_inflight_bytes(config, 4 * CHUNK));
    CHECK_OK(cas_config_set_parallelism(config, 2));
    CHECK_OK(cas_config_set_max_get_bytes(config, 100));
    CHECK_OK(cas_config_set_memory_budget(config, 128 << 20));
    CHECK_OK(cas_config_set_gossip_interval_ms(config, 200));
    CHECK_OK(cas_config_set_request_timeout_ms(config, 2000));
    CHECK_OK(cas_config_set_idle_timeout_ms(config, 5000));
    CHECK_OK(cas_config_set_suspect_after_ms(config, 1000));
    CHECK_OK(cas_config_set_dead_after_ms(config, 2000));
    CHECK_OK(cas_config_set_forget_after_ms(config, 3000));
    CHECK_OK(cas_config_set_repair_interval_ms(config, 1000));
    CHECK_OK(cas_config_set_scrub_rate(config, 0));
    CHECK_OK(cas_node_start(config, &a));

    /* max_get_bytes: 100 bytes come back in memory, 101 do not. */
    unsigned char *data = harness_bytes(101, 3);
    char *key = NULL, *key100 = NULL;
    uint8_t *got = NULL;
    size_t len = 0;
    CHECK_OK(cas_node_put_buffer(a, data, 101, NULL, NULL, &key));
    CHECK_OK(cas_node_put_buffer(a, data, 100, NULL, NULL, &key100));
    CHECK_STATUS(cas_node_get_buffer(a, key, &got, &len), CAS_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("101");
    CHECK_OK(cas_node_get_buffer(a, key100, &got, &len));
    CHECK(len == 100 && memcmp(got, data, 100) == 0);
    cas_buffer_free(got, len);
    cas_node_free(a);

    /* The secret: another directory with the same secret makes the same key. */
    char *other_dir = harness_join(dir, "other");
    cas_config_free(config);
    CHECK_OK(cas_config_new(other_dir, &config));
    CHECK_OK(cas_config_set_secret(config, secret, sizeof secret));
    CHECK_OK(cas_config_set_fsync(config, false));
    /* Checks across settings wait for the start. */
    CHECK_OK(cas_config_set_suspect_after_ms(config, 5000));
    CHECK_OK(cas_config_set_dead_after_ms(config, 1000));
    CHECK_STATUS(cas_node_start(config, &b), CAS_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("suspect_after");
    CHECK_OK(cas_config_set_dead_after_ms(config, 10000));
    CHECK_OK(cas_config_set_chunk_size(config, CHUNK));
    CHECK_OK(cas_node_start(config, &b));
    char *same = NULL;
    CHECK_OK(cas_node_put_buffer(b, data, 101, NULL, NULL, &same));
    CHECK(strcmp(same, key) == 0);
    cas_string_free(same);
    cas_node_free(b);

    cas_string_free(key);
    cas_string_free(key100);
    cas_config_free(config);
    free(data);
    free(other_dir);
    free(data_dir);
    harness_remove_dir(dir);
}

/* ---- progress callbacks ----------------------------------------------- */

struct stopper {
    int calls;
    int stop_at; /* return non-zero at this call (1 = the first) */
    int known_totals; /* calls that reported a total other than 0 */
    uint64_t last_done, last_total;
};

static int stop_at(uint64_t done, uint64_t total, void *user) {
    struct stopper *s = (struct stopper *)user;
    s->calls++;
    s->last_done = done;
    s->last_total = total;
    return s->calls == s->stop_at;
}

static void test_callback_stops_a_put(void) {
    char *dir = harness_tempdir();
    cas_node *node = NULL;
    CHECK_OK(start_in(dir, "node", &node));
    size_t len = 12 * CHUNK + 5;
    unsigned char *data = harness_bytes(len, 11);
    char *src = harness_join(dir, "source.bin");
    char *blobs = harness_join(dir, "node");
    CHECK(harness_write_file(src, data, len));

    struct stopper s = {0, 1, 0, 0, 0};
    char *key = NULL;
    CHECK_STATUS(cas_node_put_file(node, src, stop_at, &s, &key), CAS_ERR_CANCELLED);
    CHECK(key == NULL && s.calls == 1);
    /* No worker writes for it once it returned: no temporary blob file. */
    CHECK(count_named(blobs, ".tmp-") == 0);

    struct stopper b = {0, 2, 0, 0, 0};
    CHECK_STATUS(cas_node_put_buffer(node, data, len, stop_at, &b, &key), CAS_ERR_CANCELLED);
    CHECK(key == NULL && b.calls == 2 && count_named(blobs, ".tmp-") == 0);

    /* The last call (done == total, the file complete) can still stop it. */
    struct stopper last = {0, 14, 0, 0, 0};
    CHECK_STATUS(cas_node_put_file(node, src, stop_at, &last, &key), CAS_ERR_CANCELLED);
    CHECK(last.calls == 14 && last.last_done == len && last.last_total == len);

    /* The same file goes in whole afterwards, and comes back. */
    CHECK_OK(cas_node_put_file(node, src, NULL, NULL, &key));
    uint8_t *got = NULL;
    size_t got_len = 0;
    CHECK_OK(cas_node_get_buffer(node, key, &got, &got_len));
    CHECK(got_len == len && memcmp(got, data, len) == 0);
    cas_buffer_free(got, got_len);
    cas_string_free(key);
    cas_node_free(node);
    free(blobs);
    free(src);
    free(data);
    harness_remove_dir(dir);
}

static void test_callback_stops_a_get_and_leaves_nothing(void) {
    char *dir = harness_tempdir();
    cas_node *node = NULL;
    CHECK_OK(start_in(dir, "node", &node));
    size_t len = 8 * CHUNK;
    unsigned char *data = harness_bytes(len, 12);
    char *key = NULL;
    CHECK_OK(cas_node_put_buffer(node, data, len, NULL, NULL, &key));
    char *dest = harness_join(dir, "copy.bin");
    char *out = harness_join(dir, "out");
    CHECK(mkdir(out, 0700) == 0);
    char *dest_in_out = harness_join(out, "copy.bin");

    for (int at = 1; at <= 8; at += 7) { /* the first chunk, and the last */
        struct stopper s = {0, at, 0, 0, 0};
        CHECK_STATUS(cas_node_get_file(node, key, dest_in_out, stop_at, &s), CAS_ERR_CANCELLED);
        CHECK(!exists(dest_in_out));
        CHECK(count_named(out, ".cas-get-") == 0);
    }
    /* A file already at the destination stays as it was. */
    CHECK(harness_write_file(dest, (const unsigned char *)"old", 3));
    struct stopper s = {0, 3, 0, 0, 0};
    CHECK_STATUS(cas_node_get_file(node, key, dest, stop_at, &s), CAS_ERR_CANCELLED);
    struct stat st;
    CHECK(stat(dest, &st) == 0 && st.st_size == 3);

    cas_string_free(key);
    cas_node_free(node);
    free(dest_in_out);
    free(out);
    free(dest);
    free(data);
    harness_remove_dir(dir);
}

/* Records totals from a library thread, stopping at `stop_at` if set. */
static int watch_totals(uint64_t done, uint64_t total, void *user) {
    struct stopper *s = (struct stopper *)user;
    if (total != 0) s->known_totals++;
    s->calls++;
    s->last_done = done;
    s->last_total = total;
    return s->calls == s->stop_at;
}

static void test_writer_without_size_hint_reports_unknown_total(void) {
    char *dir = harness_tempdir();
    cas_node *node = NULL;
    CHECK_OK(start_in(dir, "node", &node));
    size_t len = 4 * CHUNK + 9;
    unsigned char *data = harness_bytes(len, 13);
    struct stopper s = {0, 0, 0, 0, 0};
    cas_writer *writer = NULL;
    char *key = NULL;
    CHECK_OK(cas_writer_open(node, 0, watch_totals, &s, &writer));
    CHECK_OK(harness_write_all(writer, data, len, 10000));
    CHECK_OK(cas_writer_finish(writer, &key));
    cas_writer_free(writer);
    /* 5 chunk calls with total 0, then the last: the size as both. */
    CHECK(s.calls == 6 && s.known_totals == 1);
    CHECK(s.last_done == len && s.last_total == len);
    cas_string_free(key);
    cas_node_free(node);
    free(data);
    harness_remove_dir(dir);
}

static void test_callback_stops_a_writer(void) {
    char *dir = harness_tempdir();
    cas_node *node = NULL;
    CHECK_OK(start_in(dir, "node", &node));
    size_t len = 16 * CHUNK;
    unsigned char *data = harness_bytes(len, 14);
    struct stopper s = {0, 2, 0, 0, 0};
    cas_writer *writer = NULL;
    char *key = NULL;
    CHECK_OK(cas_writer_open(node, len, watch_totals, &s, &writer));
    cas_status status = harness_write_all(writer, data, len, CHUNK);
    if (status == CAS_OK) status = cas_writer_finish(writer, &key);
    CHECK(status == CAS_ERR_CANCELLED && key == NULL);
    CHECK_STATUS(cas_writer_finish(writer, &key), CAS_ERR_CLOSED);
    cas_writer_free(writer);
    cas_node_free(node);
    free(data);
    harness_remove_dir(dir);
}

static void test_writer_on_a_stopped_node_is_closed(void) {
    char *dir = harness_tempdir();
    cas_node *node = NULL;
    CHECK_OK(start_in(dir, "node", &node));
    CHECK_OK(cas_node_stop(node));
    cas_writer *writer = NULL;
    CHECK_STATUS(cas_writer_open(node, 0, NULL, NULL, &writer), CAS_ERR_CLOSED);
    CHECK(writer == NULL);
    cas_node_free(node);
    harness_remove_dir(dir);
}

/* Frees the node from inside its own operation's progress callback. */
struct free_in_callback {
    cas_node *node;
    int calls;
};

static int free_node_in(uint64_t done, uint64_t total, void *user) {
    (void)done;
    (void)total;
    struct free_in_callback *f = (struct free_in_callback *)user;
    if (f->calls++ == 0) cas_node_free(f->node);
    return 0;
}

/* Starts a node on `dir`/node, retrying while the previous one lets go of
 * the directory (it does so in the background after a free in a callback). */
static cas_status restart(const char *dir, cas_node **node) {
    cas_status s = CAS_ERR_DATA_DIR_LOCKED;
    for (int tries = 0; tries < 500 && s == CAS_ERR_DATA_DIR_LOCKED; tries++) {
        s = start_in(dir, "node", node);
        if (s == CAS_ERR_DATA_DIR_LOCKED) harness_sleep_ms(10);
    }
    return s;
}

static void test_node_freed_in_its_callback(void) {
    char *dir = harness_tempdir();
    size_t len = 6 * CHUNK + 1;
    unsigned char *data = harness_bytes(len, 15);
    char *src = harness_join(dir, "source.bin");
    char *dest = harness_join(dir, "copy.bin");
    CHECK(harness_write_file(src, data, len));
    char *key = NULL;

    for (int which = 0; which < 3; which++) {
        struct free_in_callback f = {NULL, 0};
        CHECK_OK(restart(dir, &f.node));
        if (which == 2) CHECK_OK(cas_node_put_buffer(f.node, data, len, NULL, NULL, &key));
        char *got_key = NULL;
        cas_status s;
        if (which == 0) {
            s = cas_node_put_file(f.node, src, free_node_in, &f, &got_key);
        } else if (which == 1) {
            s = cas_node_put_buffer(f.node, data, len, free_node_in, &f, &got_key);
        } else {
            s = cas_node_get_file(f.node, key, dest, free_node_in, &f);
        }
        /* The node stops under the call: it fails as closed, or had
         * finished its last step; either way nothing crashes (ASan). */
        CHECK(s == CAS_OK || s == CAS_ERR_CLOSED);
        CHECK(f.calls >= 1);
        cas_string_free(got_key);
    }
    /* The directory is released: a new node starts on it. */
    cas_node *again = NULL;
    CHECK_OK(restart(dir, &again));
    cas_node_free(again);
    cas_string_free(key);
    free(src);
    free(dest);
    free(data);
    harness_remove_dir(dir);
}

/* ---- logs ------------------------------------------------------------- */

struct log_seen {
    atomic_int records;
    atomic_int started; /* "node started" at info, from cas_core */
    atomic_int too_verbose;
};

static void collect_log(cas_log_level level, const char *target, const char *message, void *user) {
    struct log_seen *seen = (struct log_seen *)user;
    atomic_fetch_add(&seen->records, 1);
    if (level > CAS_LOG_INFO) atomic_fetch_add(&seen->too_verbose, 1);
    if (level == CAS_LOG_INFO && strncmp(target, "cas_core", 8) == 0 && strstr(message, "node started") != NULL)
        atomic_fetch_add(&seen->started, 1);
}

static void test_logs_go_to_the_host_callback(void) {
    struct log_seen seen;
    atomic_init(&seen.records, 0);
    atomic_init(&seen.started, 0);
    atomic_init(&seen.too_verbose, 0);
    CHECK_STATUS(cas_set_log_callback(0, collect_log, &seen), CAS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cas_set_log_callback(6, collect_log, &seen), CAS_ERR_INVALID_ARGUMENT);
    CHECK_OK(cas_set_log_callback(CAS_LOG_INFO, collect_log, &seen));

    char *dir = harness_tempdir();
    cas_node *node = NULL;
    CHECK_OK(start_in(dir, "node", &node));
    cas_node_free(node);
    CHECK(atomic_load(&seen.started) == 1);
    CHECK(atomic_load(&seen.too_verbose) == 0);

    /* NULL goes back to stderr: the callback is not called any more. */
    CHECK_OK(cas_set_log_callback(CAS_LOG_TRACE, NULL, NULL));
    int before = atomic_load(&seen.records);
    CHECK_OK(start_in(dir, "node", &node));
    cas_node_free(node);
    CHECK(atomic_load(&seen.records) == before);
    harness_remove_dir(dir);
}

static void test_files_lists_what_the_node_put(void) {
    char *dir = harness_tempdir();
    cas_node *node = NULL;
    CHECK_OK(start_in(dir, "node", &node));
    cas_file_list *list = NULL;
    size_t n = 99;
    CHECK_OK(cas_node_files(node, &list));
    CHECK_OK(cas_file_list_len(list, &n));
    CHECK(n == 0);
    cas_file_list_free(list);

    unsigned char *data = harness_bytes(3000, 5);
    char *src = harness_join(dir, "report.pdf");
    CHECK(harness_write_file(src, data, 3000));
    char *key = NULL;
    CHECK_OK(cas_node_put_file(node, src, NULL, NULL, &key));
    CHECK_OK(cas_node_files(node, &list));
    CHECK_OK(cas_file_list_len(list, &n));
    CHECK(n == 1);
    cas_file_entry entry;
    CHECK_OK(cas_file_list_get(list, 0, &entry));
    CHECK(strcmp(entry.key, key) == 0 && strcmp(entry.name, "report.pdf") == 0 && entry.size == 3000);
    CHECK(entry.time_ms > 1700000000000ULL);
    CHECK_STATUS(cas_file_list_get(list, 1, &entry), CAS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cas_node_files(node, NULL), CAS_ERR_NULL_ARGUMENT);
    cas_file_list_free(list);
    cas_file_list_free(NULL);
    cas_string_free(key);
    cas_node_free(node);
    free(src);
    free(data);
    harness_remove_dir(dir);
}

int main(void) {
    static const struct harness_test tests[] = {
        TEST_ENTRY(test_header_and_library_versions_agree),
        TEST_ENTRY(test_bad_addresses_are_refused_when_set),
        TEST_ENTRY(test_empty_data_dir_is_refused_and_leaves_nothing),
        TEST_ENTRY(test_every_setting_is_checked_when_set),
        TEST_ENTRY(test_limits_are_checked_together_at_start),
        TEST_ENTRY(test_every_setting_reaches_the_node),
        TEST_ENTRY(test_callback_stops_a_put),
        TEST_ENTRY(test_callback_stops_a_get_and_leaves_nothing),
        TEST_ENTRY(test_writer_without_size_hint_reports_unknown_total),
        TEST_ENTRY(test_callback_stops_a_writer),
        TEST_ENTRY(test_writer_on_a_stopped_node_is_closed),
        TEST_ENTRY(test_node_freed_in_its_callback),
        TEST_ENTRY(test_logs_go_to_the_host_callback),
        TEST_ENTRY(test_files_lists_what_the_node_put),
    };
    return harness_main("test_host", tests, sizeof tests / sizeof tests[0], 0);
}
