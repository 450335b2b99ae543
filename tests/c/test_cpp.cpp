// The header compiles as C++ and the library links and runs from C++.
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "cas.h"

namespace {

struct ConfigFree {
    void operator()(cas_config *c) const { cas_config_free(c); }
};
using ConfigPtr = std::unique_ptr<cas_config, ConfigFree>;

int failures = 0;

void check(bool ok, const char *what) {
    if (!ok) {
        std::fprintf(stderr, "    CHECK failed: %s\n", what);
        failures++;
    }
}

}  // namespace

int main() {
    check(std::string(cas_status_str(CAS_OK)) == "success", "cas_status_str(CAS_OK)");
    check(std::strlen(cas_version()) > 0, "cas_version()");

    cas_config *raw = nullptr;
    check(cas_config_new("/tmp/cas-cpp-test", &raw) == CAS_OK, "cas_config_new");
    ConfigPtr config(raw);
    check(cas_config_set_chunk_size(config.get(), 1 << 16) == CAS_OK, "cas_config_set_chunk_size");
    cas_status s = cas_node_start(nullptr, nullptr);
    check(s == CAS_ERR_NULL_ARGUMENT && std::strlen(cas_last_error()) > 0, "NULL argument status");

    std::printf("  %s  C++ include and calls\n", failures ? "FAIL" : "ok  ");
    std::printf("test_cpp: %d passed, %d failed\n", failures ? 0 : 1, failures ? 1 : 0);
    return failures ? 1 : 0;
}
