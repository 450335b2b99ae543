/* Store a file in CAS and get it back: the C API in one page.
 *
 *     cas-example DATA_DIR FILE [PEER_ADDRESS]
 *
 * Starts a node in DATA_DIR listening on 127.0.0.1 (a free port), joins
 * the node at PEER_ADDRESS if given, puts FILE, prints its key, gets it
 * back to FILE.copy and compares the two. Build: see Makefile here.
 *
 * Only nodes holding the network's key can connect: the first node (no
 * PEER_ADDRESS) creates DATA_DIR/network_key; copy that file into the data
 * directory of a node before it joins (or set the key with
 * cas_config_set_network_key). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cas.h>

/* Prints why a call failed and returns 1 from main. */
#define TRY(call)                                                                                   \
    do {                                                                                            \
        cas_status status_ = (call);                                                                \
        if (status_ != CAS_OK) {                                                                    \
            fprintf(stderr, "%s failed: %s: %s\n", #call, cas_status_str(status_), cas_last_error()); \
            goto fail;                                                                              \
        }                                                                                           \
    } while (0)

/* Runs on a library thread: keep it short and call no cas_* function. */
/* Returning non-zero would stop the operation (CAS_ERR_CANCELLED). */
static int show_progress(uint64_t done, uint64_t total, void *user) {
    fprintf(stderr, "\r%s: %llu / %llu bytes", (const char *)user, (unsigned long long)done,
            (unsigned long long)total);
    return 0;
}

/* Whether two files hold the same bytes. */
static int same_contents(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa != NULL && fb != NULL;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa != NULL) fclose(fa);
    if (fb != NULL) fclose(fb);
    return same;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s DATA_DIR FILE [PEER_ADDRESS]\n", argv[0]);
        return 2;
    }
    const char *data_dir = argv[1], *file = argv[2], *peer = argc == 4 ? argv[3] : NULL;
    cas_config *config = NULL;
    cas_node *node = NULL;
    char *id = NULL, *address = NULL, *key = NULL, *copy = NULL;
    int rc = 1;

    TRY(cas_config_new(data_dir, &config));
    TRY(cas_config_set_listen(config, "127.0.0.1:0"));
    if (peer != NULL) TRY(cas_config_add_bootstrap(config, peer));
    TRY(cas_node_start(config, &node));
    TRY(cas_node_id(node, &id));
    TRY(cas_node_address(node, &address));
    printf("node %s listening on %s\n", id, address != NULL ? address : "(no networking in this build)");

    TRY(cas_node_put_file(node, file, show_progress, "put", &key));
    fputc('\n', stderr);
    printf("key: %s\n", key);

    size_t len = strlen(file) + sizeof ".copy";
    copy = malloc(len);
    if (copy == NULL) goto fail;
    snprintf(copy, len, "%s.copy", file);
    TRY(cas_node_get_file(node, key, copy, show_progress, "get"));
    fputc('\n', stderr);
    if (!same_contents(file, copy)) {
        fprintf(stderr, "%s differs from %s\n", copy, file);
        goto fail;
    }
    printf("OK: %s is byte-identical to %s\n", copy, file);
    rc = 0;

fail:
    free(copy);
    cas_string_free(key);
    cas_string_free(address);
    cas_string_free(id);
    cas_node_free(node);
    cas_config_free(config);
    return rc;
}
