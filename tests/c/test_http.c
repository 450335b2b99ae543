/* The HTTP gateway from C: cas_node_serve_http, then plain HTTP/1.1 over a
 * socket (GET a file stored through the C API, /health), and its errors. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netdb.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

/* Sends `request` to host:port and reads the whole answer (Connection:
 * close) into a malloc'd, NUL-terminated buffer; NULL on failure. */
static char *http_exchange(const char *bound, const char *request, size_t *len_out) {
    char host[64];
    const char *colon = strrchr(bound, ':');
    if (colon == NULL || (size_t)(colon - bound) >= sizeof host) return NULL;
    memcpy(host, bound, (size_t)(colon - bound));
    host[colon - bound] = '\0';
    struct addrinfo hints = {0}, *found = NULL;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, colon + 1, &hints, &found) != 0) return NULL;
    int fd = socket(found->ai_family, SOCK_STREAM, 0);
    int ok = fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) == 0;
    freeaddrinfo(found);
    if (ok) ok = write(fd, request, strlen(request)) == (ssize_t)strlen(request);
    size_t cap = 1 << 16, len = 0;
    char *buf = (char *)malloc(cap + 1);
    while (ok) {
        if (len == cap) buf = (char *)realloc(buf, (cap *= 2) + 1);
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) ok = 0;
        if (n <= 0) break;
        len += (size_t)n;
    }
    if (fd >= 0) close(fd);
    if (!ok) {
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    *len_out = len;
    return buf;
}

static void test_serve_and_get(void) {
    char *dir = harness_tempdir();
    char *data_dir = harness_join(dir, "node");
    cas_config *config = NULL;
    cas_node *node = NULL;
    char *key = NULL, *bound = NULL;
    CHECK_OK(cas_config_new(data_dir, &config));
    CHECK_OK(cas_config_set_fsync(config, false));
    CHECK_OK(cas_node_start(config, &node));
    size_t size = 300000;
    unsigned char *data = harness_bytes(size, 7);
    CHECK_OK(cas_node_put_buffer(node, data, size, NULL, NULL, &key));
    CHECK_OK(cas_node_serve_http(node, "127.0.0.1:0", &bound));
    CHECK(bound != NULL && strncmp(bound, "127.0.0.1:", 10) == 0 && strcmp(bound, "127.0.0.1:0") != 0);

    char request[512];
    snprintf(request, sizeof request, "GET /cas/%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", key,
             bound ? bound : "");
    size_t len = 0;
    char *answer = bound ? http_exchange(bound, request, &len) : NULL;
    CHECK(answer != NULL && strncmp(answer, "HTTP/1.1 200", 12) == 0);
    char *body = answer ? strstr(answer, "\r\n\r\n") : NULL;
    CHECK(body != NULL && len - (size_t)(body + 4 - answer) == size && memcmp(body + 4, data, size) == 0);
    CHECK(answer != NULL && strstr(answer, "content-length: 300000\r\n") != NULL);
    free(answer);

    snprintf(request, sizeof request, "GET /cas/nokey HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
             bound ? bound : "");
    answer = bound ? http_exchange(bound, request, &len) : NULL;
    CHECK(answer != NULL && strncmp(answer, "HTTP/1.1 400", 12) == 0 && strstr(answer, "\"error\"") != NULL);
    free(answer);

    /* Only its own address (or localhost) as Host: not another site's name
       (DNS rebinding), nor none. */
    const char *port = bound ? strrchr(bound, ':') : NULL;
    snprintf(request, sizeof request,
             "GET /api/files HTTP/1.1\r\nHost: attacker.example%s\r\nConnection: close\r\n\r\n", port ? port : "");
    answer = bound ? http_exchange(bound, request, &len) : NULL;
    CHECK(answer != NULL && strncmp(answer, "HTTP/1.1 403", 12) == 0 && strstr(answer, "\"error\"") != NULL);
    free(answer);
    answer = bound ? http_exchange(bound, "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n", &len) : NULL;
    CHECK(answer != NULL && strncmp(answer, "HTTP/1.1 403", 12) == 0);
    free(answer);
    snprintf(request, sizeof request, "GET /health HTTP/1.1\r\nHost: localhost%s\r\nConnection: close\r\n\r\n",
             port ? port : "");
    answer = bound ? http_exchange(bound, request, &len) : NULL;
    CHECK(answer != NULL && strncmp(answer, "HTTP/1.1 200", 12) == 0);
    free(answer);

    /* A second gateway, without asking for its address. */
    CHECK_OK(cas_node_serve_http(node, NULL, NULL));
    /* Errors: another address than loopback, a bad one, NULL node. */
    char *unset = NULL;
    CHECK_STATUS(cas_node_serve_http(node, "0.0.0.0:0", &unset), CAS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(cas_last_error(), "token") != NULL);
    CHECK_STATUS(cas_node_serve_http(node, "not an address", &unset), CAS_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cas_node_serve_http(NULL, "127.0.0.1:0", &unset), CAS_ERR_NULL_ARGUMENT);
    CHECK(unset == NULL);

    /* Stopping the node stops its gateways. */
    CHECK_OK(cas_node_stop(node));
    CHECK_STATUS(cas_node_serve_http(node, "127.0.0.1:0", &unset), CAS_ERR_CLOSED);
    int refused = 0;
    for (int i = 0; i < 500 && !refused; i++) { /* at most 5 s */
        answer = bound ? http_exchange(bound, request, &len) : NULL;
        refused = answer == NULL;
        free(answer);
        if (!refused) harness_sleep_ms(10);
    }
    CHECK(refused);

    cas_string_free(bound);
    cas_string_free(key);
    free(data);
    cas_node_free(node);
    cas_config_free(config);
    free(data_dir);
    harness_remove_dir(dir);
}

int main(void) {
    static const struct harness_test tests[] = {
        TEST_ENTRY(test_serve_and_get),
    };
    return harness_main("test_http", tests, sizeof tests / sizeof tests[0], 0);
}
