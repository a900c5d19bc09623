// header_compile.cpp: compiles jsonbus.hpp with -Wall -Wextra -Werror -pedantic (built once as
// C++17 and once as C++20), instantiates every template, checks the types' traits, and runs.
#include "jsonbus.hpp"
#include "jsonbus.hpp"  // twice: the include guard
#include "jsonbus.h"    // after the C++ header: a no-op (its own include guard)

#include <atomic>
#include <cstdio>
#include <string>
#include <type_traits>
#include <utility>
#if __cplusplus >= 202002L
#include <iterator>
#include <ranges>
#endif

using jsonbus::Bus;
using jsonbus::Message;
using jsonbus::PulledMessage;
using jsonbus::PullSubscription;
using jsonbus::Subscription;

// Owners are move-only, and moving never throws.
static_assert(!std::is_copy_constructible_v<Bus> && !std::is_copy_assignable_v<Bus>);
static_assert(!std::is_copy_constructible_v<Subscription> &&
              !std::is_copy_assignable_v<Subscription>);
static_assert(!std::is_copy_constructible_v<PullSubscription>);
static_assert(!std::is_copy_constructible_v<PulledMessage>);
static_assert(std::is_nothrow_move_constructible_v<Bus> && std::is_nothrow_move_assignable_v<Bus>);
static_assert(std::is_nothrow_move_constructible_v<Subscription> &&
              std::is_nothrow_move_assignable_v<Subscription>);
static_assert(std::is_nothrow_move_constructible_v<PullSubscription> &&
              std::is_nothrow_move_assignable_v<PullSubscription>);
static_assert(std::is_nothrow_move_constructible_v<PulledMessage>);
static_assert(std::is_nothrow_destructible_v<Bus> && std::is_nothrow_destructible_v<Subscription> &&
              std::is_nothrow_destructible_v<PullSubscription> &&
              std::is_nothrow_destructible_v<PulledMessage>);
// A Message is a copyable view; a PulledMessage is a Message.
static_assert(std::is_trivially_copyable_v<Message>);
static_assert(std::is_base_of_v<Message, PulledMessage>);
static_assert(std::is_base_of_v<std::runtime_error, jsonbus::Error>);
// The C handle type under its C++ name.
static_assert(std::is_same_v<decltype(std::declval<Bus&>().raw()), jsonbus::c_bus*>);
static_assert(std::is_same_v<decltype(jsonbus_new(nullptr)), jsonbus::c_bus*>);

#if __cplusplus >= 202002L
static_assert(std::input_iterator<PullSubscription::iterator>);
static_assert(std::sentinel_for<PullSubscription::sentinel, PullSubscription::iterator>);
static_assert(std::ranges::input_range<PullSubscription>);
static_assert(std::ranges::input_range<PullSubscription::Messages>);
#endif

namespace {

struct MoveOnly {
    MoveOnly() = default;
    MoveOnly(MoveOnly&&) = default;
    MoveOnly(const MoveOnly&) = delete;
};

int32_t plain_function(const Message& m) { return m.seq() > 0 ? JSONBUS_OK : -1; }

}  // namespace

int main() {
    try {
        Bus bus(R"({"dispatcher_threads":1})");
        std::atomic<int> seen{0};
        // every shape of callable: void, int32_t, a function, a mutable move-only lambda,
        // options, an end hook
        auto a = bus.subscribe("t.>", [&](const Message& m) { seen += m.json().empty() ? 0 : 1; });
        auto b = bus.subscribe("t.a", [](const Message&) -> int32_t {
            return JSONBUS_UNSUBSCRIBE;
        });
        auto c = bus.subscribe("t.a", plain_function, "{}");
        auto d = bus.subscribe("t.a", [m = MoveOnly{}](const Message&) mutable { (void)m; },
                               std::string(R"({"max_failures":2})"), [](int32_t) {});
        auto p = bus.subscribe_pull(std::string_view("t.*"));
        std::string topic = "t.a";
        bus.publish(topic, R"({"n":1})");
        bus.publish(std::string_view(topic), std::string(R"([1,2])"));
        for (auto& m : p.messages(1000)) {  // before flush(), which waits for them
            if (m.seq() == 2) {
                break;
            }
        }
        bus.flush();
        const int published = seen.load();  // before the request, which t.> also gets
        bus.request_async("t.a", "{}", 100, [](int32_t, const Message*) {});
        int64_t timer = bus.publish_after("t.b", "1", 100000);
        (void)bus.cancel(timer);
        std::string stats = bus.stats();
        std::printf("jsonbus %s, %d messages; %s\n", jsonbus::version(), published, stats.c_str());
        return published == 2 ? 0 : 1;
    } catch (const jsonbus::Error& e) {
        std::fprintf(stderr, "%s: %s\n", e.name(), e.what());
        return 1;
    }
}
