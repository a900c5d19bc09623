// quickstart.cpp - the jsonbus quickstart in C++17 with jsonbus.hpp: subscribe, publish, flush.
#include <atomic>
#include <iostream>
#include <string>

#include "jsonbus.hpp"

int main() try {
    jsonbus::Bus bus;  // its own dispatcher thread; closed and freed at the end of main
    std::atomic<int> orders{0};
    auto sub = bus.subscribe("orders.>", [&](const jsonbus::Message& m) {
        // runs on the bus's dispatcher thread; m is valid only during this call
        std::cout << m.topic() << " #" << m.seq() << ": " << m.json() << "\n";
        orders++;
    });
    for (int id = 1; id <= 3; id++) {
        bus.publish("orders.eu", "{\"id\":" + std::to_string(id) + "}");  // validated and copied
    }
    bus.flush();  // like Go's WaitGroup.Wait(): every message above has been handled
    std::cout << orders << " orders\n";
    return orders == 3 ? 0 : 1;
} catch (const jsonbus::Error& e) {  // status name and the library's message
    std::cerr << e.name() << ": " << e.what() << "\n";
    return 1;
}
