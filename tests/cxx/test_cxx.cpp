// test_cxx.cpp: behaviour tests of the C++ wrapper (include/jsonbus.hpp), run by ctest; exits
// non-zero with file:line at the first failed check.
#include "jsonbus.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#ifndef _WIN32
#include <unistd.h>
#endif

using jsonbus::Bus;
using jsonbus::Error;
using jsonbus::Message;
using jsonbus::PulledMessage;
using jsonbus::PullSubscription;
using jsonbus::Subscription;

// ---- checks --------------------------------------------------------------------------------

[[noreturn]] static void fail(const char* file, int line, const std::string& what) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what.c_str());
    std::fflush(stderr);
    std::_Exit(1);  // also from a dispatcher thread
}

template <class A, class B>
static void check_eq(const char* file, int line, const char* text, const A& a, const B& b) {
    if (!(a == b)) {
        std::ostringstream out;
        out << text << ": got " << a << ", expected " << b;
        fail(file, line, out.str());
    }
}

#define CHECK(cond)                                        \
    do {                                                   \
        if (!(cond)) fail(__FILE__, __LINE__, "CHECK(" #cond ")"); \
    } while (0)
#define CHECK_EQ(a, b) check_eq(__FILE__, __LINE__, #a " == " #b, (a), (b))
// `expr` must throw jsonbus::Error with `code`; the error is then in `err` for more checks.
#define CHECK_THROWS(expr, code)                                                              \
    do {                                                                                      \
        try {                                                                                 \
            expr;                                                                             \
        } catch (const Error& e_) {                                                           \
            if (e_.status() != (code))                                                        \
                fail(__FILE__, __LINE__,                                                      \
                     std::string(#expr " threw ") + e_.name() + " (" + e_.what() + "), not " + \
                         jsonbus::status_name(code));                                         \
            err = std::string(e_.what());                                                     \
            break;                                                                            \
        }                                                                                     \
        fail(__FILE__, __LINE__, #expr " did not throw");                                     \
    } while (0)

// Waits up to 10 s for `pred` (things that happen on dispatcher threads after a flush).
static bool wait_until(const std::function<bool()>& pred, int timeout_ms = 10000) {
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

// An integer field of a stats object: `"key":123` (top-level keys are unique in these tests).
static long long json_int(const std::string& json, const std::string& key) {
    std::string needle = "\"" + key + "\":";
    auto at = json.find(needle);
    if (at == std::string::npos) {
        fail(__FILE__, __LINE__, "no key " + key + " in " + json);
    }
    return std::strtoll(json.c_str() + at + needle.size(), nullptr, 10);
}

// Counts its destructions (moved-from ones do not count): captured by a callable, it tells
// how many times the callable's storage was destroyed.
struct Tracker {
    explicit Tracker(std::atomic<int>& count) : count_(&count) {}
    Tracker(Tracker&& other) noexcept : count_(std::exchange(other.count_, nullptr)) {}
    Tracker(const Tracker&) = delete;
    Tracker& operator=(const Tracker&) = delete;
    Tracker& operator=(Tracker&&) = delete;
    ~Tracker() {
        if (count_ != nullptr) {
            count_->fetch_add(1);
        }
    }

private:
    std::atomic<int>* count_;
};

static std::string id_json(int i) { return "{\"id\":" + std::to_string(i) + "}"; }

// ---- subscribe, publish, flush -------------------------------------------------------------

static void test_basic() {
    Bus bus(R"({"dispatcher_threads":2})");
    std::atomic<int> count{0};
    std::atomic<uint64_t> last_seq{0};
    std::atomic<int64_t> seen_subscription{0};
    std::atomic<bool> ok{true};
    auto sub = bus.subscribe("orders.>", [&](const Message& m) {
        // one publisher: the messages come in publish order, with increasing seq
        int n = count.load();
        if (m.seq() <= last_seq.load() || m.topic() != "orders.eu" || m.json() != id_json(n) ||
            !m.reply_to().empty() || m.is_request() || m.published_ns() == 0 ||
            m.raw()->json[m.json().size()] != '\0') {
            ok = false;
        }
        last_seq = m.seq();
        seen_subscription = m.subscription();
        count.fetch_add(1);
    });
    CHECK(sub.id() > 0);
    CHECK(static_cast<bool>(sub));
    for (int i = 0; i < 100; i++) {
        bus.publish("orders.eu", id_json(i));
        bus.publish(std::string("other.eu"), std::string_view("[1]"));
    }
    CHECK(bus.flush());
    CHECK_EQ(count.load(), 100);
    CHECK(ok.load());
    CHECK_EQ(seen_subscription.load(), sub.id());
    CHECK_EQ(last_seq.load(), uint64_t{199});
    std::string stats = bus.stats();
    CHECK_EQ(json_int(stats, "published"), 200);
    CHECK_EQ(json_int(stats, "delivered"), 100);
    CHECK_EQ(json_int(stats, "unrouted"), 100);
    CHECK_EQ(json_int(stats, "subscriptions"), 1);
    std::string sub_stats = sub.stats();
    CHECK_EQ(json_int(sub_stats, "id"), sub.id());
    CHECK_EQ(json_int(sub_stats, "delivered"), 100);
    CHECK(bus.flush(0));
    CHECK_EQ(std::string(jsonbus::version()), std::to_string(JSONBUS_VERSION_MAJOR) + "." +
                                                  std::to_string(JSONBUS_VERSION_MINOR) + "." +
                                                  std::to_string(JSONBUS_VERSION_PATCH));
}

// ---- JSONBUS_UNSUBSCRIBE, failures, exceptions, max_failures -------------------------------

static void test_unsubscribe_return() {
    Bus bus;
    std::atomic<int> calls{0}, destroyed{0}, reason{0};
    auto sub = bus.subscribe(
        "a",
        [&calls, t = Tracker(destroyed)](const Message&) -> int32_t {
            return calls.fetch_add(1) + 1 == 3 ? JSONBUS_UNSUBSCRIBE : JSONBUS_OK;
        },
        "", [&reason](int32_t r) { reason = r; });
    for (int i = 0; i < 10; i++) {
        bus.publish("a", "{}");
    }
    CHECK(bus.flush());
    CHECK_EQ(calls.load(), 3);
    CHECK(wait_until([&] { return destroyed.load() == 1; }));
    CHECK_EQ(reason.load(), JSONBUS_END_RETURNED);
    CHECK_EQ(json_int(bus.stats(), "subscriptions"), 0);
    CHECK(!sub.unsubscribe());  // it had ended on its own
    CHECK_EQ(sub.id(), int64_t{0});
    CHECK_EQ(destroyed.load(), 1);
}

static void test_exceptions() {
    Bus bus;
    std::string err;
    std::atomic<int> calls{0};
    auto sub = bus.subscribe("x", [&](const Message& m) {
        calls.fetch_add(1);
        if (m.json() == "1") {
            throw std::runtime_error("boom");
        }
        if (m.json() == "2") {
            throw 42;  // not even a std::exception
        }
    });
    for (const char* json : {"1", "1", "1", "2", "2", "3"}) {
        bus.publish("x", json);
    }
    CHECK(bus.flush());
    CHECK_EQ(calls.load(), 6);
    CHECK_EQ(json_int(bus.stats(), "callback_failures"), 5);
    CHECK_EQ(json_int(sub.stats(), "callback_failures"), 5);
    // still subscribed: failures end nothing without max_failures
    bus.publish("x", "3");
    CHECK(bus.flush());
    CHECK_EQ(calls.load(), 7);

    // max_failures: ended after 3 in a row; the callable is destroyed once
    std::atomic<int> failing_calls{0}, destroyed{0}, reason{0};
    auto failing = bus.subscribe(
        "y",
        [&failing_calls, t = Tracker(destroyed)](const Message&) {
            failing_calls.fetch_add(1);
            throw std::runtime_error("always");
        },
        R"({"max_failures":3})", [&reason](int32_t r) { reason = r; });
    for (int i = 0; i < 10; i++) {
        bus.publish("y", "{}");
    }
    CHECK(bus.flush());
    CHECK(wait_until([&] { return destroyed.load() == 1; }));
    CHECK_EQ(failing_calls.load(), 3);
    CHECK_EQ(reason.load(), JSONBUS_END_FAILED);
    CHECK_EQ(json_int(bus.stats(), "callback_failures"), 8);
    CHECK_EQ(json_int(bus.stats(), "subscriptions"), 1);
    // an ended callback subscription's stats: ended, or already forgotten (NOT_FOUND)
    try {
        CHECK(failing.stats().find("\"ended\":\"JSONBUS_END_FAILED\"") != std::string::npos);
    } catch (const Error& e) {
        CHECK_EQ(e.status(), JSONBUS_ERR_NOT_FOUND);
    }
    CHECK(!failing.unsubscribe());
    CHECK_EQ(destroyed.load(), 1);

    // an int32_t negative return is a failure too
    auto negative = bus.subscribe("z", [](const Message&) -> int32_t { return -7; },
                                  R"({"max_failures":0})");
    bus.publish("z", "{}");
    CHECK(bus.flush());
    CHECK_EQ(json_int(negative.stats(), "callback_failures"), 1);
}

// ---- errors ---------------------------------------------------------------------------------

static void test_errors() {
    std::string err;
    Bus bus;
    CHECK_THROWS(bus.publish("a..b", "{}"), JSONBUS_ERR_TOPIC);
    CHECK(!err.empty() && err != "JSONBUS_ERR_TOPIC");
    try {
        bus.publish("a", R"({"a":)");
        fail(__FILE__, __LINE__, "invalid JSON was published");
    } catch (const Error& e) {
        CHECK_EQ(e.status(), JSONBUS_ERR_JSON);
        CHECK_EQ(std::string(e.name()), std::string("JSONBUS_ERR_JSON"));
        CHECK(std::string(e.what()).find("line") != std::string::npos);
        const std::runtime_error& base = e;  // catchable as std::runtime_error
        CHECK(std::strlen(base.what()) > 0);
    }
    CHECK_THROWS(bus.publish("a", "\xff"), JSONBUS_ERR_UTF8);
    CHECK_THROWS(bus.publish("a.*", "{}"), JSONBUS_ERR_TOPIC);
    CHECK_THROWS(bus.publish(std::string_view("a\0b", 3), "1"), JSONBUS_ERR_TOPIC);
    CHECK(err.find("NUL") != std::string::npos);
    CHECK_THROWS(Bus(R"({"nope":1})"), JSONBUS_ERR_OPTIONS);
    CHECK(err.find("nope") != std::string::npos);
    CHECK_THROWS(Bus("[1"), JSONBUS_ERR_OPTIONS);

    // a refused subscription: the callable is destroyed exactly once, before the throw arrives
    std::atomic<int> destroyed{0};
    CHECK_THROWS((void)bus.subscribe("a..", [t = Tracker(destroyed)](const Message&) {}),
                 JSONBUS_ERR_TOPIC);
    CHECK_EQ(destroyed.load(), 1);
    CHECK_THROWS((void)bus.subscribe("a", [t = Tracker(destroyed)](const Message&) {},
                                     R"({"max_failures":-1})"),
                 JSONBUS_ERR_OPTIONS);
    CHECK(err.find("max_failures") != std::string::npos);
    CHECK_EQ(destroyed.load(), 2);
    CHECK_THROWS((void)bus.subscribe_pull(""), JSONBUS_ERR_TOPIC);
    CHECK_THROWS((void)bus.subscribe_pull("p", R"({"on_full":"sometimes"})"), JSONBUS_ERR_OPTIONS);
    CHECK_THROWS(bus.reply(Message(nullptr), "1"), JSONBUS_ERR_NULL);
    // the C last status agrees (the wrapper read it right after the failing call)
    CHECK_EQ(jsonbus_last_status(), JSONBUS_ERR_NULL);
    CHECK_EQ(json_int(bus.stats(), "published"), 0);
    CHECK_EQ(std::string(jsonbus::status_name(JSONBUS_ERR_CLOSED)), "JSONBUS_ERR_CLOSED");
    CHECK_EQ(std::string(jsonbus::end_reason_name(JSONBUS_END_SLOW)), "JSONBUS_END_SLOW");
    Error made(JSONBUS_ERR_FULL, "");
    CHECK_EQ(std::string(made.what()), std::string("JSONBUS_ERR_FULL"));

    // a closed bus
    CHECK(bus.close());
    CHECK_THROWS(bus.publish("a", "{}"), JSONBUS_ERR_CLOSED);
    CHECK_THROWS((void)bus.subscribe("a", [t = Tracker(destroyed)](const Message&) {}),
                 JSONBUS_ERR_CLOSED);
    CHECK_EQ(destroyed.load(), 3);
    CHECK(bus.flush());
    CHECK(bus.close());
    CHECK_EQ(json_int(bus.stats(), "published"), 0);
}

// ---- where a callable's storage is destroyed -----------------------------------------------

static void test_storage_lifetime() {
    std::string err;
    // 1. the Subscription's destructor: destroyed when it returns, end reason UNSUBSCRIBED
    {
        Bus bus;
        std::atomic<int> destroyed{0}, calls{0}, reason{0};
        {
            auto sub = bus.subscribe(
                "a", [&calls, t = Tracker(destroyed)](const Message&) { calls.fetch_add(1); }, "{}",
                [&reason](int32_t r) { reason = r; });
            bus.publish("a", "{}");
            CHECK(bus.flush());
        }
        CHECK_EQ(destroyed.load(), 1);
        CHECK_EQ(reason.load(), JSONBUS_END_UNSUBSCRIBED);
        bus.publish("a", "{}");
        CHECK(bus.flush());
        CHECK_EQ(calls.load(), 1);
    }
    // 2. unsubscribe(): true, then the destructor does nothing more
    {
        Bus bus;
        std::atomic<int> destroyed{0};
        auto sub = bus.subscribe("a", [t = Tracker(destroyed)](const Message&) {});
        CHECK(sub.unsubscribe());
        CHECK_EQ(destroyed.load(), 1);
        CHECK(!sub.unsubscribe());
        CHECK_THROWS(sub.stats(), JSONBUS_ERR_NOT_FOUND);
    }
    // 3. the Bus's destructor with live subscriptions that outlive it; queued messages are
    //    still delivered
    {
        std::atomic<int> destroyed{0}, calls{0}, reason{0};
        Subscription s1, s2;
        PullSubscription pull;
        {
            Bus bus;
            s1 = bus.subscribe("a", [&calls, t = Tracker(destroyed)](const Message&) {
                std::this_thread::sleep_for(std::chrono::microseconds(50));
                calls.fetch_add(1);
            });
            s2 = bus.subscribe("b", [t = Tracker(destroyed)](const Message&) {}, "",
                               [&reason](int32_t r) { reason = r; });
            pull = bus.subscribe_pull("a");
            for (int i = 0; i < 100; i++) {
                bus.publish("a", id_json(i));
            }
        }
        CHECK_EQ(destroyed.load(), 2);
        CHECK_EQ(calls.load(), 100);
        CHECK_EQ(reason.load(), JSONBUS_END_CLOSED);
        CHECK(s1.id() > 0);  // still owns its id, but nothing to do
        CHECK(!s1.unsubscribe());
        CHECK_THROWS(s2.stats(), JSONBUS_ERR_NOT_FOUND);
        CHECK(!pull.next(0));
        CHECK(pull.ended());
        CHECK_THROWS(pull.stats(), JSONBUS_ERR_NOT_FOUND);
        CHECK_THROWS((void)pull.fd(), JSONBUS_ERR_NOT_FOUND);
        CHECK_EQ(destroyed.load(), 2);
    }
    // 4. Bus::close(): every callable destroyed when it returns; the Subscriptions then do
    //    nothing
    {
        Bus bus;
        std::atomic<int> destroyed{0};
        auto s1 = bus.subscribe("a", [t = Tracker(destroyed)](const Message&) {});
        auto s2 = bus.subscribe("a", [t = Tracker(destroyed)](const Message&) {});
        bus.publish("a", "{}");
        CHECK(bus.close());
        CHECK_EQ(destroyed.load(), 2);
        CHECK(!s1.unsubscribe());
    }
    // 5. detach(): the subscription goes on until the bus ends it
    {
        std::atomic<int> destroyed{0}, calls{0};
        {
            Bus bus;
            auto sub = bus.subscribe("a", [&calls, t = Tracker(destroyed)](const Message&) {
                calls.fetch_add(1);
            });
            int64_t id = sub.id();
            CHECK_EQ(sub.detach(), id);
            CHECK_EQ(sub.id(), int64_t{0});
            bus.publish("a", "{}");
            CHECK(bus.flush());
            CHECK_EQ(calls.load(), 1);
            CHECK_EQ(destroyed.load(), 0);
        }
        CHECK_EQ(destroyed.load(), 1);
    }
    // (JSONBUS_UNSUBSCRIBE, max_failures and refused subscriptions: in the tests above)
}

// ---- a Bus destroyed in its own callables, end notices and Subscription calls -------------

// Runs `fn` on another thread and fails if it has not returned within 10 s: a deadlock then
// fails the test (fail() exits the process) instead of hanging it.
static void within_10s(const char* what, const std::function<void()>& fn) {
    std::atomic<bool> done{false};
    std::thread t([&] {
        fn();
        done = true;
    });
    if (!wait_until([&] { return done.load(); })) {
        fail(__FILE__, __LINE__, std::string(what) + ": deadlocked");
    }
    t.join();
}

static void test_bus_destroyed_inside() {
    using BusPtr = std::shared_ptr<Bus>;
    // Each case makes a bus with a callable `other` that only its free destroys, and a
    // pull subscription; then the last BusPtr is dropped inside a use of the bus. The bus
    // must then be freed (`other` destroyed once, `pull` ended), without a deadlock.
    auto run = [](const char* what, const std::function<void(BusPtr, std::atomic<int>&)>& body) {
        std::atomic<int> other_destroyed{0}, own_destroyed{0};
        Subscription other;
        PullSubscription pull;
        within_10s(what, [&] {
            auto bus = std::make_shared<Bus>(R"({"dispatcher_threads":2})");
            other = bus->subscribe("other", [t = Tracker(other_destroyed)](const Message&) {});
            pull = bus->subscribe_pull("pull");
            body(std::move(bus), own_destroyed);
        });
        if (!wait_until([&] { return other_destroyed.load() == 1; }, 5000)) {
            fail(__FILE__, __LINE__, std::string(what) + ": the bus was not freed (leaked)");
        }
        CHECK(wait_until([&] { return own_destroyed.load() == 1; }));
        CHECK(!other.unsubscribe());  // the Bus is gone: does nothing
        CHECK(!pull.next(0));
        CHECK(pull.ended());
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        CHECK_EQ(other_destroyed.load(), 1);
        CHECK_EQ(own_destroyed.load(), 1);
    };

    // 1. unsubscribe() on this thread: the end notice destroys the callable and the last Bus
    run("unsubscribe()", [](BusPtr bus, std::atomic<int>& own) {
        auto sub = bus->subscribe("a", [b = bus, t = Tracker(own)](const Message&) {});
        bus.reset();
        CHECK(sub.unsubscribe());
        CHECK_EQ(own.load(), 1);
    });
    // 2. the same by ~Subscription
    run("~Subscription", [](BusPtr bus, std::atomic<int>& own) {
        auto sub = bus->subscribe("a", [b = bus, t = Tracker(own)](const Message&) {});
        bus.reset();
    });
    // 3. the callable returns JSONBUS_UNSUBSCRIBE: the end notice, on a dispatcher thread
    run("JSONBUS_UNSUBSCRIBE", [](BusPtr bus, std::atomic<int>& own) {
        auto dropped = std::make_shared<std::atomic<bool>>(false);
        bus->subscribe("a", [b = bus, dropped, t = Tracker(own)](const Message&) {
               wait_until([&] { return dropped->load(); });  // until it holds the last BusPtr
               return JSONBUS_UNSUBSCRIBE;
           }).detach();
        bus->publish("a", "{}");
        bus.reset();
        *dropped = true;
    });
    // 4. in the callable itself, which drops the last BusPtr (its storage is destroyed
    //    later, by the free)
    run("in a callable", [](BusPtr bus, std::atomic<int>& own) {
        auto last = std::make_shared<BusPtr>(bus);  // read only by the callable
        auto ready = std::make_shared<std::atomic<bool>>(false);
        bus->subscribe("a", [last, ready, t = Tracker(own)](const Message&) {
               wait_until([&] { return ready->load(); });
               last->reset();
           }).detach();
        bus->publish("a", "{}");
        bus.reset();
        *ready = true;
    });
    // 5. request_async's callable holds the last BusPtr, destroyed right after its call
    run("request_async", [](BusPtr bus, std::atomic<int>& own) {
        jsonbus::c_bus* raw = bus->raw();
        bus->subscribe("svc", [raw](const Message& m) {
               return jsonbus_reply(raw, m.raw(), "1", 1);
           }).detach();
        auto ready = std::make_shared<std::atomic<bool>>(false);
        bus->request_async("svc", "{}", 5000,
                           [b = bus, ready, t = Tracker(own)](int32_t, const Message*) {
                               wait_until([&] { return ready->load(); });
                           });
        bus.reset();
        *ready = true;
    });
    // 6. nested: a callable of this bus unsubscribes a subscription of another bus, whose end
    //    notice (run on this dispatcher thread) drops this bus's last BusPtr
    run("nested end notice", [](BusPtr bus, std::atomic<int>& own) {
        Bus other_bus;
        auto holder = std::make_shared<std::optional<Subscription>>();
        *holder = other_bus.subscribe("x", [b = bus, t = Tracker(own)](const Message&) {});
        auto ready = std::make_shared<std::atomic<bool>>(false);
        bus->subscribe("a", [holder, ready](const Message&) {
               wait_until([&] { return ready->load(); });
               holder->reset();  // ends other_bus's subscription here: ~Bus of `bus` inside
           }).detach();
        bus->publish("a", "{}");
        bus.reset();
        *ready = true;
        CHECK(wait_until([&] { return own.load() == 1; }));
    });
}

// ---- move semantics ------------------------------------------------------------------------

static void test_move() {
    std::string err;
    std::atomic<int> calls{0}, destroyed{0};
    Bus b1;
    jsonbus::c_bus* raw = b1.raw();
    Bus b2(std::move(b1));
    CHECK(b1.raw() == nullptr);
    CHECK(b2.raw() == raw);
    CHECK_THROWS(b1.publish("m", "1"), JSONBUS_ERR_NULL);  // a moved-from Bus owns nothing

    auto s1 = b2.subscribe("m", [&calls, t = Tracker(destroyed)](const Message&) {
        calls.fetch_add(1);
    });
    int64_t id = s1.id();
    Subscription s2(std::move(s1));
    CHECK_EQ(s1.id(), int64_t{0});
    CHECK(!s1);
    CHECK_EQ(s2.id(), id);
    { Subscription gone(std::move(s1)); }  // destroying a moved-from one does nothing
    CHECK(!s1.unsubscribe());
    b2.publish("m", "1");
    CHECK(b2.flush());
    CHECK_EQ(calls.load(), 1);

    // the subscription follows its bus through moves
    Bus b3;
    b3 = std::move(b2);
    b3.publish("m", "1");
    CHECK(b3.flush());
    CHECK_EQ(calls.load(), 2);
    CHECK_EQ(destroyed.load(), 0);

    // move-assigning over a live subscription unsubscribes it
    std::atomic<int> other_destroyed{0};
    auto s3 = b3.subscribe("m", [t = Tracker(other_destroyed)](const Message&) {});
    s3 = std::move(s2);
    CHECK_EQ(other_destroyed.load(), 1);
    CHECK_EQ(s3.id(), id);
    CHECK_EQ(destroyed.load(), 0);

    // move-assigning over a live bus closes and frees it
    std::atomic<int> b4_destroyed{0};
    Bus b4;
    auto s4 = b4.subscribe("m", [t = Tracker(b4_destroyed)](const Message&) {});
    b4 = Bus();
    CHECK_EQ(b4_destroyed.load(), 1);
    CHECK(!s4.unsubscribe());

    // pull subscriptions and pulled messages
    auto p1 = b3.subscribe_pull("p");
    PullSubscription p2(std::move(p1));
    CHECK_EQ(p1.id(), int64_t{0});
    CHECK(p1.ended());
    CHECK(!p1.next(0));
    b3.publish("p", "7");
    std::optional<PulledMessage> m1 = p2.next(5000);
    CHECK(m1.has_value());
    PulledMessage m2(std::move(*m1));
    CHECK(!*m1);
    CHECK(static_cast<bool>(m2));
    CHECK(m2.json() == "7");
    PulledMessage m3 = std::move(m2);
    CHECK_EQ(json_int(b3.stats(), "queued"), 1);
    m3.reset();
    CHECK(!m3);
    CHECK_EQ(json_int(b3.stats(), "queued"), 0);

    s3.unsubscribe();
    CHECK_EQ(destroyed.load(), 1);
}

// ---- pull subscriptions --------------------------------------------------------------------

static void test_pull() {
    std::string err;
    Bus bus;
    auto pull = bus.subscribe_pull("jobs.*");
    CHECK(pull.id() > 0);
    CHECK(!pull.next(0));
    CHECK(!pull.try_next());
    CHECK(!pull.ended());
    auto t0 = std::chrono::steady_clock::now();
    CHECK(!pull.next(120));  // longer than one 50 ms slice
    auto waited = std::chrono::steady_clock::now() - t0;
    CHECK(waited >= std::chrono::milliseconds(110));
    CHECK(waited < std::chrono::milliseconds(5000));

    for (int i = 0; i < 5; i++) {
        bus.publish("jobs.a", id_json(i));
    }
    std::optional<PulledMessage> m = pull.next(5000);
    CHECK(m.has_value());
    CHECK(m->topic() == "jobs.a");
    CHECK(m->json() == id_json(0));
    CHECK_EQ(m->subscription(), pull.id());
    CHECK(m->seq() > 0);
    // held: one taken + four waiting count against the bus; four wait in the subscription
    CHECK_EQ(json_int(bus.stats(), "queued"), 5);
    CHECK_EQ(json_int(pull.stats(), "queued"), 4);
    m.reset();  // releases it
    CHECK_EQ(json_int(bus.stats(), "queued"), 4);

    int n = 1;
    uint64_t last_seq = 0;
    for (auto& msg : pull.messages(0)) {  // drains what waits now
        CHECK(msg.json() == id_json(n));
        CHECK(msg.seq() > last_seq);
        last_seq = msg.seq();
        n++;
    }
    CHECK_EQ(n, 5);
    CHECK_EQ(json_int(bus.stats(), "queued"), 0);
    CHECK_EQ(json_int(pull.stats(), "queued"), 0);
    CHECK_EQ(json_int(pull.stats(), "delivered"), 5);
    CHECK(!pull.ended());

    // messages moved out of the loop stay held until released
    std::vector<PulledMessage> kept;
    for (int i = 0; i < 3; i++) {
        bus.publish("jobs.b", id_json(i));
    }
    for (auto& msg : pull.messages(1000)) {
        kept.push_back(std::move(msg));
        if (kept.size() == 3) {
            break;
        }
    }
    CHECK_EQ(kept.size(), size_t{3});
    CHECK_EQ(json_int(bus.stats(), "queued"), 3);
    CHECK(kept[2].json() == id_json(2));
    kept.clear();
    CHECK_EQ(json_int(bus.stats(), "queued"), 0);
    CHECK(bus.flush());  // nothing held or waiting: returns

#ifndef _WIN32
    int fd = pull.fd();
    CHECK(fd >= 0);
    CHECK_EQ(pull.fd(), fd);
#endif

    // options: drop_oldest keeps the newest two
    auto limited = bus.subscribe_pull("lim", R"({"queue_limit":2,"on_full":"drop_oldest"})");
    for (int i = 0; i < 5; i++) {
        bus.publish("lim", id_json(i));
    }
    std::vector<std::string> got;
    for (auto& msg : limited.messages(0)) {
        got.emplace_back(msg.json());
    }
    CHECK_EQ(got.size(), size_t{2});
    CHECK(got[0] == id_json(3) && got[1] == id_json(4));
    CHECK_EQ(json_int(limited.stats(), "dropped"), 3);

    // on_full "end": the subscription ends on its own; next says so
    auto slow = bus.subscribe_pull("slow", R"({"queue_limit":1,"on_full":"end"})");
    bus.publish("slow", "1");
    bus.publish("slow", "2");
    CHECK(!slow.next(1000));
    CHECK(slow.ended());
    CHECK(slow.stats().find("JSONBUS_END_SLOW") != std::string::npos);
    CHECK(slow.unsubscribe());  // releases it

    // a thread loops until the subscription ends: by unsubscribe() from here
    {
        auto worker_pull = bus.subscribe_pull("work");
        std::atomic<int> seen{0};
        std::atomic<bool> done{false};
        std::thread worker([&] {
            for (auto& msg : worker_pull) {
                if (msg.json() == id_json(seen.load())) {
                    seen.fetch_add(1);
                }
            }
            done = true;
        });
        for (int i = 0; i < 10; i++) {
            bus.publish("work", id_json(i));
        }
        CHECK(wait_until([&] { return seen.load() == 10; }));
        CHECK(!done.load());
        CHECK(worker_pull.unsubscribe());
        worker.join();
        CHECK(done.load());
        CHECK(worker_pull.ended());
    }
    // ... by the bus closing
    {
        Bus b2;
        auto p = b2.subscribe_pull("work");
        std::atomic<int> seen{0};
        std::thread worker([&] {
            for (auto& msg : p) {
                (void)msg;
                seen.fetch_add(1);
            }
        });
        for (int i = 0; i < 10; i++) {
            b2.publish("work", id_json(i));
        }
        CHECK(wait_until([&] { return seen.load() == 10; }));
        CHECK(b2.close(5000));
        worker.join();
        CHECK(p.ended());
    }
    // ... by the Bus being destroyed while a thread waits without a time limit
    {
        auto b3 = std::make_unique<Bus>();
        auto p = b3->subscribe_pull("work");
        std::atomic<bool> started{false}, empty{false};
        std::thread waiter([&] {
            started = true;
            empty = !p.next(-1).has_value();
        });
        CHECK(wait_until([&] { return started.load(); }));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        b3.reset();
        waiter.join();
        CHECK(empty.load());
        CHECK(p.ended());
    }
    // a pulled message outlives its Bus
    {
        auto b4 = std::make_unique<Bus>();
        auto p = b4->subscribe_pull("keep");
        b4->publish("keep", R"({"kept":true})");
        auto msg = p.next(5000);
        CHECK(msg.has_value());
        b4.reset();  // jsonbus_free does not wait for it
        CHECK(msg->json() == R"({"kept":true})");
        CHECK(msg->topic() == "keep");
    }
}

// ---- requests and replies ------------------------------------------------------------------

static void test_request() {
    std::string err;
    Bus bus(R"({"dispatcher_threads":2})");
    std::atomic<bool> saw_request{false};
    auto responder = bus.subscribe("svc.echo", [&](const Message& m) {
        if (m.is_request() && m.reply_to().substr(0, 7) == "_INBOX.") {
            saw_request = true;
        }
        bus.reply(m, m.json());
    });
    CHECK_EQ(bus.request("svc.echo", R"({"x":1})", 5000), std::string(R"({"x":1})"));
    CHECK(saw_request.load());
    CHECK_THROWS(bus.request("svc.none", "{}", 1000), JSONBUS_ERR_NO_RESPONDERS);
    CHECK_EQ(json_int(bus.stats(), "no_responders"), 1);
    auto silent = bus.subscribe("svc.silent", [](const Message&) {});
    CHECK_THROWS(bus.request("svc.silent", "{}", 30), JSONBUS_ERR_TIMEOUT);
    CHECK_THROWS(bus.request("svc.echo", "{", 1000), JSONBUS_ERR_JSON);

    // reply to a message that is not a request; request from a callable (DEADLOCK)
    std::atomic<int32_t> reply_status{0}, request_status{0}, flush_status{0};
    auto plain = bus.subscribe("plain", [&](const Message& m) {
        try {
            bus.reply(m, "1");
        } catch (const Error& e) {
            reply_status = e.status();
        }
        try {
            (void)bus.request("svc.echo", "1", 1000);
        } catch (const Error& e) {
            request_status = e.status();
        }
        try {
            bus.flush();
        } catch (const Error& e) {
            flush_status = e.status();
        }
    });
    bus.publish("plain", "{}");
    CHECK(bus.flush());
    CHECK_EQ(reply_status.load(), JSONBUS_ERR_NOT_FOUND);
    CHECK_EQ(request_status.load(), JSONBUS_ERR_DEADLOCK);
    CHECK_EQ(flush_status.load(), JSONBUS_ERR_DEADLOCK);

    // request_async: one call, then the callable is destroyed
    {
        std::atomic<int> called{0}, destroyed{0};
        std::atomic<int32_t> status{1};
        std::string got;
        bus.request_async("svc.echo", R"({"a":2})", 5000,
                          [&, t = Tracker(destroyed)](int32_t st, const Message* reply) {
                              status = st;
                              if (reply != nullptr) {
                                  got = std::string(reply->json());
                              }
                              called.fetch_add(1);
                          });
        CHECK(wait_until([&] { return destroyed.load() == 1; }));
        CHECK_EQ(called.load(), 1);
        CHECK_EQ(status.load(), JSONBUS_OK);
        CHECK_EQ(got, std::string(R"({"a":2})"));
    }
    {
        std::atomic<int> called{0}, destroyed{0};
        CHECK_THROWS(bus.request_async("svc.none", "{}", 100,
                                       [&called, t = Tracker(destroyed)](int32_t, const Message*) {
                                           called.fetch_add(1);
                                       }),
                     JSONBUS_ERR_NO_RESPONDERS);
        CHECK_EQ(destroyed.load(), 1);
        CHECK_EQ(called.load(), 0);
    }
    {
        std::atomic<int> destroyed{0};
        std::atomic<int32_t> status{1};
        std::atomic<bool> null_reply{false};
        bus.request_async("svc.silent", "{}", 20,
                          [&, t = Tracker(destroyed)](int32_t st, const Message* reply) {
                              status = st;
                              null_reply = reply == nullptr;
                          });
        CHECK(wait_until([&] { return destroyed.load() == 1; }));
        CHECK_EQ(status.load(), JSONBUS_ERR_TIMEOUT);
        CHECK(null_reply.load());
    }
    {
        // pending when the bus closes: CLOSED before close() returns; a throwing callable
        Bus b2;
        auto s = b2.subscribe("q", [](const Message&) {});
        std::atomic<int> destroyed{0};
        std::atomic<int32_t> status{1};
        b2.request_async("q", "{}", -1, [&, t = Tracker(destroyed)](int32_t st, const Message*) {
            status = st;
            throw std::runtime_error("swallowed");
        });
        CHECK(b2.close());
        CHECK_EQ(destroyed.load(), 1);
        CHECK_EQ(status.load(), JSONBUS_ERR_CLOSED);
    }
}

// ---- timers ---------------------------------------------------------------------------------

static void test_timers() {
    std::string err;
    Bus bus;
    std::atomic<int> calls{0};
    auto sub = bus.subscribe("tm", [&](const Message& m) {
        if (m.json() == "1") {
            calls.fetch_add(1);
        }
    });
    int64_t soon = bus.publish_after("tm", "1", 30);
    int64_t late = bus.publish_after("tm", "2", 600000);
    CHECK(soon > 0 && late > 0 && soon != late);
    CHECK(bus.cancel(late));
    CHECK(!bus.cancel(late));
    CHECK(wait_until([&] { return calls.load() == 1; }));
    CHECK(!bus.cancel(soon));
    CHECK(bus.flush());
    CHECK_EQ(json_int(bus.stats(), "timers"), 0);
    CHECK_THROWS((void)bus.publish_after("a..", "1", 10), JSONBUS_ERR_TOPIC);
    CHECK_THROWS((void)bus.publish_after("a", "nope", 10), JSONBUS_ERR_JSON);
}

// ---- calls from callables: publish chains, unsubscribing others and oneself -------------------

static void test_reentrant() {
    Bus bus(R"({"dispatcher_threads":2})");
    std::atomic<int> b_calls{0};
    auto sub_b = bus.subscribe("r.b", [&](const Message&) { b_calls.fetch_add(1); });
    auto sub_a = bus.subscribe("r.a", [&](const Message& m) { bus.publish("r.b", m.json()); });
    for (int i = 0; i < 10; i++) {
        bus.publish("r.a", id_json(i));
    }
    CHECK(bus.flush());  // waits for what the callables published too
    CHECK_EQ(b_calls.load(), 10);

    // a callable destroys another subscription, and one destroys its own
    std::atomic<int> other_destroyed{0}, self_destroyed{0}, self_calls{0};
    std::optional<Subscription> other =
        bus.subscribe("r.other", [t = Tracker(other_destroyed)](const Message&) {});
    auto killer = bus.subscribe("r.kill", [&](const Message&) { other.reset(); });
    std::optional<Subscription> self;
    self = bus.subscribe("r.self", [&, t = Tracker(self_destroyed)](const Message&) {
        self_calls.fetch_add(1);
        self.reset();
    });
    bus.publish("r.kill", "{}");
    bus.publish("r.self", "{}");
    bus.publish("r.self", "{}");
    CHECK(bus.flush());
    CHECK(wait_until([&] { return other_destroyed.load() == 1 && self_destroyed.load() == 1; }));
    CHECK_EQ(self_calls.load(), 1);
    CHECK(!other.has_value());
    CHECK(!self.has_value());
    CHECK_EQ(json_int(bus.stats(), "subscriptions"), 3);
}

// ---- the default bus -----------------------------------------------------------------------

static void test_default_bus() {
    std::atomic<int> calls{0};
    {
        Bus d = Bus::default_bus();
        CHECK(d.raw() == jsonbus_default());
        auto sub = d.subscribe("dflt", [&](const Message&) { calls.fetch_add(1); });
        d.publish("dflt", "{}");
        CHECK(d.flush());
        CHECK_EQ(calls.load(), 1);
    }
    // destroying the wrapper did not close the default bus
    CHECK_EQ(push_json("{}"), JSONBUS_OK);
    Bus d = Bus::default_bus();
    CHECK(d.flush());
    CHECK(d.close());  // = jsonbus_shutdown
}

// ---- the hammer: 4 threads x 10,000 publishes into one callable ----------------------------

static void test_hammer() {
    constexpr int kThreads = 4;
    constexpr int kEach = 10000;
    Bus bus(R"({"dispatcher_threads":2})");
    std::atomic<int> count{0};
    std::array<std::atomic<int>, kThreads> next{};
    std::atomic<bool> in_order{true}, publish_ok{true};
    auto sub = bus.subscribe("h.>", [&](const Message& m) {
        int t = -1, i = -1;
        std::string json(m.json());
        if (std::sscanf(json.c_str(), "{\"t\":%d,\"i\":%d}", &t, &i) != 2 || t < 0 ||
            t >= kThreads ||
            next[static_cast<size_t>(t)].load(std::memory_order_relaxed) != i) {
            in_order = false;
        } else {
            next[static_cast<size_t>(t)].store(i + 1, std::memory_order_relaxed);
        }
        count.fetch_add(1, std::memory_order_relaxed);
    });
    std::vector<std::thread> publishers;
    for (int t = 0; t < kThreads; t++) {
        publishers.emplace_back([&, t] {
            std::string topic = "h." + std::to_string(t);
            try {
                for (int i = 0; i < kEach; i++) {
                    bus.publish(topic, "{\"t\":" + std::to_string(t) +
                                           ",\"i\":" + std::to_string(i) + "}");
                }
            } catch (const Error&) {
                publish_ok = false;
            }
        });
    }
    for (auto& p : publishers) {
        p.join();
    }
    CHECK(publish_ok.load());
    CHECK(bus.flush());
    CHECK_EQ(count.load(), kThreads * kEach);
    CHECK(in_order.load());
    std::string stats = bus.stats();
    CHECK_EQ(json_int(stats, "published"), kThreads * kEach);
    CHECK_EQ(json_int(stats, "delivered"), kThreads * kEach);
    CHECK_EQ(json_int(stats, "dropped"), 0);
}

// ---- a bus shared across processes (here hub and attached handle in one process) ----------

static void test_shared_bus() {
    std::string err;  // CHECK_THROWS leaves the message here
#ifdef _WIN32
    Bus hub;
    CHECK_THROWS(hub.serve("cxx-hub"), JSONBUS_ERR_UNSUPPORTED);
    CHECK_THROWS(Bus::attach("cxx-hub"), JSONBUS_ERR_UNSUPPORTED);
#else
    // A private name directory of our own, as the contract requires (mode 0700).
    char dir[] = "/tmp/jsonbus-cxx-XXXXXX";
    CHECK(mkdtemp(dir) != nullptr);
    CHECK_EQ(setenv("XDG_RUNTIME_DIR", dir, 1), 0);
    {
        Bus hub;
        hub.serve("cxx-hub", R"({"max_peers":2})");
        CHECK_THROWS(hub.serve("cxx-hub2"), JSONBUS_ERR_NAME_IN_USE);
        CHECK_THROWS(Bus::attach("no-such-name", R"({"connect_timeout_ms":0})"), JSONBUS_ERR_NO_BUS);
        CHECK_THROWS(Bus::attach(".bad"), JSONBUS_ERR_TOPIC);
        CHECK_THROWS(Bus::attach("cxx-hub", R"({"max_depth":3})"), JSONBUS_ERR_OPTIONS);
        Bus peer = Bus::attach("cxx-hub", R"({"dispatcher_threads":2})");
        std::atomic<int> count{0};
        std::atomic<uint64_t> last{0};
        std::atomic<bool> ok{true};
        auto sub = peer.subscribe("t.>", [&](const Message& m) {
            if (m.seq() <= last.load() || m.json() != id_json(count.load())) {
                ok = false;
            }
            last = m.seq();
            count.fetch_add(1);
        });
        auto echo = hub.subscribe("req", [&](const Message& m) { hub.reply(m, m.json()); });
        for (int i = 0; i < 200; i++) {
            hub.publish("t.a", id_json(i));
        }
        CHECK(hub.flush(10000));
        CHECK_EQ(count.load(), 200);
        CHECK(ok.load());
        CHECK_EQ(peer.request("req", "[7]", 5000), std::string("[7]"));
        CHECK_EQ(json_int(hub.stats(), "peers"), 1);
        Bus second = Bus::attach("cxx-hub");
        CHECK_THROWS(Bus::attach("cxx-hub"), JSONBUS_ERR_LIMIT);
        second.publish("t.b", "1");
        CHECK(second.flush(10000));
    }
    CHECK_EQ(unsetenv("XDG_RUNTIME_DIR"), 0);
    std::string sub_dir = std::string(dir) + "/jsonbus";
    CHECK_EQ(rmdir(sub_dir.c_str()), 0);  // empty: the name's files went with the hub
    CHECK_EQ(rmdir(dir), 0);
#endif
}

int main() {
    struct {
        const char* name;
        void (*fn)();
    } tests[] = {
        {"basic", test_basic},
        {"unsubscribe_return", test_unsubscribe_return},
        {"exceptions", test_exceptions},
        {"errors", test_errors},
        {"storage_lifetime", test_storage_lifetime},
        {"bus_destroyed_inside", test_bus_destroyed_inside},
        {"move", test_move},
        {"pull", test_pull},
        {"request", test_request},
        {"timers", test_timers},
        {"reentrant", test_reentrant},
        {"default_bus", test_default_bus},
        {"hammer", test_hammer},
        {"shared_bus", test_shared_bus},
    };
    for (const auto& t : tests) {
        auto start = std::chrono::steady_clock::now();
        try {
            t.fn();
        } catch (const Error& e) {
            fail(__FILE__, __LINE__,
                 std::string(t.name) + ": uncaught " + e.name() + ": " + e.what());
        } catch (const std::exception& e) {
            fail(__FILE__, __LINE__, std::string(t.name) + ": uncaught " + e.what());
        }
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - start);
        std::printf("ok %-20s %5lld ms\n", t.name, static_cast<long long>(ms.count()));
    }
    std::printf("test_cxx: all passed (jsonbus %s)\n", jsonbus::version());
    return 0;
}
