/* Three nodes in one process: nodes 2 and 3 join through node 1; a file put
 * on one node is got back on another, through the buffer, file and
 * streaming calls. */
#define _GNU_SOURCE
#include <stdint.h>
#include <time.h>

#include "harness.h"

#define CHUNK (64 * 1024)
#define NODES 3

static char *dir;
static cas_node *nodes[NODES];
static char *keys[NODES]; /* the key of `files[i]`, put on node i */
static unsigned char *files[NODES];
static const size_t sizes[NODES] = {3 * CHUNK + 17, 1, 5 * CHUNK};

static uint8_t network_key[32]; /* every node's, made by cas_generate_network_key */

static cas_status start_node(int i, const char *bootstrap) {
    char name[16];
    snprintf(name, sizeof name, "node%d", i + 1);
    char *data_dir = harness_join(dir, name);
    cas_config *config = NULL;
    cas_status s = cas_config_new(data_dir, &config);
    if (s == CAS_OK) s = cas_config_set_listen(config, "127.0.0.1:0");
    if (s == CAS_OK) s = cas_config_set_network_key(config, network_key, sizeof network_key);
    if (s == CAS_OK) s = cas_config_set_chunk_size(config, CHUNK);
    if (s == CAS_OK) s = cas_config_set_fsync(config, false);
    if (s == CAS_OK) s = cas_config_set_replicas(config, 2);
    if (s == CAS_OK && bootstrap != NULL) s = cas_config_add_bootstrap(config, bootstrap);
    if (s == CAS_OK) s = cas_node_start(config, &nodes[i]);
    cas_config_free(config);
    free(data_dir);
    return s;
}

static size_t peer_count(cas_node *node) {
    cas_peer_list *list = NULL;
    size_t alive = 0, len = 0;
    if (cas_node_peers(node, &list) != CAS_OK || cas_peer_list_len(list, &len) != CAS_OK) return 0;
    for (size_t i = 0; i < len; i++) {
        cas_peer peer;
        if (cas_peer_list_get(list, i, &peer) == CAS_OK && peer.state == CAS_PEER_ALIVE) alive++;
    }
    cas_peer_list_free(list);
    return alive;
}

static void test_nodes_join(void) {
    /* Every node sees the two others, within 15 s. */
    int joined = 0;
    for (int tries = 0; tries < 150 && !joined; tries++) {
        joined = 1;
        for (int i = 0; i < NODES; i++) joined &= peer_count(nodes[i]) == NODES - 1;
        if (!joined) harness_sleep_ms(100);
    }
    CHECK(joined);
    cas_peer_list *list = NULL;
    CHECK_OK(cas_node_peers(nodes[1], &list));
    cas_peer peer;
    CHECK_OK(cas_peer_list_get(list, 0, &peer));
    CHECK(strlen(peer.id) == 64 && strchr(peer.address, ':') != NULL);
    cas_peer_list_free(list);
}

static void test_put_on_one_get_buffer_on_another(void) {
    for (int i = 0; i < NODES; i++) {
        files[i] = harness_bytes(sizes[i], 100 + (unsigned)i);
        CHECK_OK(cas_node_put_buffer(nodes[i], files[i], sizes[i], NULL, NULL, &keys[i]));
    }
    for (int i = 0; i < NODES; i++) {
        int other = (i + 1) % NODES;
        uint8_t *got = NULL;
        size_t len = 0;
        CHECK_OK(cas_node_get_buffer(nodes[other], keys[i], &got, &len));
        CHECK(len == sizes[i] && memcmp(got, files[i], len) == 0);
        cas_buffer_free(got, len);
    }
}

static void test_get_file_on_another(void) {
    char *dest = harness_join(dir, "copy.bin");
    CHECK_OK(cas_node_get_file(nodes[2], keys[0], dest, NULL, NULL));
    FILE *fp = fopen(dest, "rb");
    CHECK(fp != NULL);
    if (fp != NULL) {
        unsigned char *got = (unsigned char *)malloc(sizes[0] + 1);
        CHECK(fread(got, 1, sizes[0] + 1, fp) == sizes[0] && memcmp(got, files[0], sizes[0]) == 0);
        free(got);
        fclose(fp);
    }
    free(dest);
}

static void test_stream_write_on_one_read_on_another(void) {
    size_t len = 4 * CHUNK + 3;
    unsigned char *data = harness_bytes(len, 999);
    cas_writer *writer = NULL;
    char *key = NULL;
    CHECK_OK(cas_writer_open(nodes[0], len, NULL, NULL, &writer));
    CHECK_OK(harness_write_all(writer, data, len, 10000));
    CHECK_OK(cas_writer_finish(writer, &key));
    cas_writer_free(writer);

    cas_reader *reader = NULL;
    CHECK_OK(cas_reader_open(nodes[1], key, &reader));
    unsigned char *got = (unsigned char *)malloc(len);
    size_t total = 0, n = 0;
    CHECK_OK(harness_read_all(reader, got, len, 7000, &total));
    CHECK(total == len && memcmp(got, data, len) == 0);
    CHECK_OK(cas_reader_seek(reader, 2 * CHUNK, CAS_SEEK_SET, NULL));
    CHECK_OK(cas_reader_read(reader, got, 100, &n));
    CHECK(n == 100 && memcmp(got, data + 2 * CHUNK, 100) == 0);
    cas_reader_free(reader);

    /* The file is replicated: stat on a third node sees other holders. */
    cas_stat *stat = NULL;
    cas_file_info info;
    CHECK_OK(cas_node_stat(nodes[2], key, &stat));
    CHECK_OK(cas_stat_file_info(stat, &info));
    CHECK(info.size == len && info.min_holders >= 2);
    cas_stat_free(stat);

    free(got);
    free(data);
    cas_string_free(key);
}

int main(void) {
    static const struct harness_test tests[] = {
        TEST_ENTRY(test_nodes_join),
        TEST_ENTRY(test_put_on_one_get_buffer_on_another),
        TEST_ENTRY(test_get_file_on_another),
        TEST_ENTRY(test_stream_write_on_one_read_on_another),
    };
    const size_t count = sizeof tests / sizeof tests[0];
    dir = harness_tempdir();
    int rc = 1;
    char *address = NULL;
    cas_status s = cas_generate_network_key(network_key);
    if (s == CAS_OK) s = start_node(0, NULL);
    if (s == CAS_OK) s = cas_node_address(nodes[0], &address);
    if (s != CAS_OK) {
        printf("  FAIL  starting node 1: %s: %s\n", cas_status_str(s), cas_last_error());
        printf("test_network: 0 passed, 1 failed\n");
    } else if (address == NULL) {
        printf("  FAIL  node 1 started with a listen address but reports none\n");
        printf("test_network: 0 passed, 1 failed\n");
    } else {
        printf("  node 1 listens on %s\n", address);
        s = start_node(1, address);
        if (s == CAS_OK) s = start_node(2, address);
        if (s != CAS_OK) {
            printf("  FAIL  starting nodes 2 and 3: %s: %s\n", cas_status_str(s), cas_last_error());
            printf("test_network: 0 passed, 1 failed\n");
        } else {
            rc = harness_main("test_network", tests, count, 0);
        }
    }
    cas_string_free(address);
    for (int i = 0; i < NODES; i++) {
        cas_node_free(nodes[i]);
        cas_string_free(keys[i]);
        free(files[i]);
    }
    harness_remove_dir(dir);
    return rc;
}
