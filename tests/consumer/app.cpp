// tests/consumer/app.cpp: the installed C++ header (jsonbus.hpp) from a project outside the
// tree, over the installed shared library. Exits 0 only if all three messages arrive.
#include <jsonbus.hpp>

#include <atomic>
#include <cstdio>

int main() {
    std::atomic<int> got{0};
    try {
        jsonbus::Bus bus;
        auto sub = bus.subscribe("consumer.>", [&](const jsonbus::Message& m) {
            if (m.json() == R"({"cxx":true})") ++got;
        });
        for (int i = 0; i < 3; i++) bus.publish("consumer.cxx", R"({"cxx":true})");
        bus.flush();
    } catch (const jsonbus::Error& e) {
        std::fprintf(stderr, "%s: %s\n", e.name(), e.what());
        return 1;
    }
    std::printf("jsonbus.hpp: %d of 3 messages\n", got.load());
    return got == 3 ? 0 : 1;
}
