// jsonbus.hpp: the header-only C++17 RAII wrapper over the jsonbus C API (jsonbus.h).
//
//     #include "jsonbus.hpp"
//
//     jsonbus::Bus bus;                                  // jsonbus_new(NULL)
//     auto sub = bus.subscribe("orders.>", [&](const jsonbus::Message& m) {
//         use(m.topic(), m.json(), m.seq());             // valid only during the call
//     });
//     bus.publish("orders.eu", R"({"id":1})");           // throws jsonbus::Error
//     bus.flush();                                       // every message above handled
//
// Everything here is a thin layer over the C functions, which keep all their guarantees and
// rules (see jsonbus.h): this header only adds ownership, exceptions and C++ callables.
//
// Rules of the wrapper, in short:
// - Failures throw jsonbus::Error (status code + the library's message). Results that are not
//   failures are returned: flush/close time-outs as `false`, an empty pull queue as
//   `std::nullopt`, a subscription that had already ended as `false` from unsubscribe().
// - Bus, Subscription, PullSubscription and PulledMessage are move-only owners; their
//   destructors never throw. A moved-from object owns nothing, and destroying it does nothing.
// - A subscription's callable is stored on the heap and destroyed by the subscription's end
//   notice, exactly once, whatever ends it. An exception it throws is caught and counted as a
//   callback failure (`callback_failures` in the stats); it never reaches the library.
// - Subscriptions may outlive their Bus: once the Bus is destroyed, destroying or using them
//   touches no freed memory (they own nothing any more; see Bus::~Bus).
// - A Bus may be destroyed in one of its own callables, end notices or reply callables (say,
//   one that holds the last std::shared_ptr<Bus>): its destructor then returns at once and a
//   new, detached thread frees the bus once that call is over (see Bus::~Bus).
//
// Include this header instead of jsonbus.h (or before it): the C API's bus type is
// `typedef struct jsonbus jsonbus;`, and C++ forbids a namespace `jsonbus` next to a type
// `jsonbus` in the global scope. So this header declares the C API with that one type renamed
// (`jsonbus::c_bus`); every C function is the same and may be called with `bus.raw()`.
// A later `#include "jsonbus.h"` in the same file does nothing (its include guard).

#ifndef JSONBUS_HPP
#define JSONBUS_HPP

#if __cplusplus < 201703L && !(defined(_MSVC_LANG) && _MSVC_LANG >= 201703L)
#error "jsonbus.hpp needs C++17 or later"
#endif

#ifdef JSONBUS_H
// (The C type `jsonbus` would make the C++ namespace `jsonbus` ill-formed; see above.)
#error "include jsonbus.hpp before jsonbus.h, or instead of it (its C API uses jsonbus::c_bus)"
#endif

#include <stddef.h>
#include <stdint.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>

// The C declarations, with `struct jsonbus` named `struct jsonbus_cbus_` (the functions are
// extern "C": their names, and so the library they link to, are unchanged).
#define jsonbus jsonbus_cbus_
#include "jsonbus.h"
#undef jsonbus

/// The C++ API of jsonbus: Bus, Subscription, PullSubscription, Message, PulledMessage, Error.
namespace jsonbus {

/// The C API's opaque bus type (`jsonbus` in jsonbus.h), as `Bus::raw()` returns it.
using c_bus = ::jsonbus_cbus_;

/// The C API's message struct, as `Message::raw()` returns it.
using c_message = ::jsonbus_message;

/// What the wrapper returns to the library when a subscription's callable throws: a negative
/// status, which the library counts as a callback failure (see `max_failures`).
inline constexpr std::int32_t callback_exception = -1;

/// The library's version, "MAJOR.MINOR.PATCH" (jsonbus_version).
inline const char* version() noexcept { return jsonbus_version(); }

/// The name of a status code, such as "JSONBUS_ERR_JSON" (jsonbus_status_name). Never NULL.
inline const char* status_name(std::int32_t status) noexcept { return jsonbus_status_name(status); }

/// The name of an end reason, such as "JSONBUS_END_SLOW" (jsonbus_end_reason_name). Never NULL.
inline const char* end_reason_name(std::int32_t reason) noexcept {
    return jsonbus_end_reason_name(reason);
}

/// Nanoseconds on the clock that stamps `Message::published_ns()` (jsonbus_now_ns).
inline std::uint64_t now_ns() noexcept { return jsonbus_now_ns(); }

/// A failed jsonbus call: the status code (`JSONBUS_ERR_*`) and, as what(), the library's
/// message for it (jsonbus_last_error(), read on the failing thread right after the call).
class Error : public std::runtime_error {
public:
    /// An error with this status and message (the status's name when the message is empty).
    Error(std::int32_t status, const std::string& message)
        : std::runtime_error(message.empty() ? std::string(jsonbus_status_name(status)) : message),
          status_(status) {}

    /// The error of the call that just failed on this thread with `status`, with
    /// jsonbus_last_error() as its message. Call it before any other jsonbus call.
    static Error last(std::int64_t status) {
        return Error(static_cast<std::int32_t>(status), std::string(jsonbus_last_error()));
    }

    /// The status code, a negative `JSONBUS_ERR_*`.
    std::int32_t status() const noexcept { return status_; }

    /// The status code's name, such as "JSONBUS_ERR_TOPIC" (static; never NULL).
    const char* name() const noexcept { return jsonbus_status_name(status_); }

private:
    std::int32_t status_;
};

namespace detail {

[[noreturn]] inline void throw_last(std::int64_t status) { throw Error::last(status); }

[[noreturn]] inline void throw_no_bus() {
    throw Error(JSONBUS_ERR_NOT_FOUND, "no subscription: this owns none, or its Bus is gone");
}

/// A NUL-terminated copy of a string argument, made only when it needs one: a `const char*`
/// or `std::string` is used as it is, a `std::string_view` is copied (on the stack when short,
/// as topics are). Remembers whether the text held a NUL byte, which C would read as its end.
class CString {
public:
    CString(const char* s) noexcept : p_(s) {}  // NOLINT: implicit on purpose
    CString(const std::string& s) noexcept      // NOLINT
        : p_(s.c_str()), nul_(std::memchr(s.data(), 0, s.size()) != nullptr), empty_(s.empty()) {}
    CString(std::string_view s) : nul_(false), empty_(s.empty()) {  // NOLINT
        if (!s.empty() && std::memchr(s.data(), 0, s.size()) != nullptr) {
            nul_ = true;
        }
        if (s.size() < sizeof buf_) {
            if (!s.empty()) {
                std::memcpy(buf_, s.data(), s.size());
            }
            buf_[s.size()] = '\0';
            p_ = buf_;
        } else {
            heap_.assign(s.data(), s.size());
            p_ = heap_.c_str();
        }
    }
    CString(const CString&) = delete;
    CString& operator=(const CString&) = delete;

    const char* c_str() const noexcept { return p_; }
    /// NULL for "" (options: the defaults), else c_str().
    const char* c_str_or_null() const noexcept {
        return (p_ == nullptr || empty_ || p_[0] == '\0') ? nullptr : p_;
    }
    /// Throws `status` when the text holds a NUL byte.
    void check(std::int32_t status, const char* what) const {
        if (nul_) {
            throw Error(status, std::string(what) + " holds a NUL byte");
        }
    }

private:
    const char* p_ = nullptr;
    bool nul_ = false;
    bool empty_ = false;
    char buf_[264];
    std::string heap_;
};

/// What a Bus shares with its subscriptions: the handle until the Bus is destroyed, and how
/// many subscription calls are using it right now (the Bus waits for them before jsonbus_free).
/// Its lock is only held to count, never across a library call.
class BusLink {
public:
    explicit BusLink(c_bus* bus) noexcept : bus_(bus) {}

    /// The handle for one call (then release()), or NULL once the Bus is gone.
    c_bus* acquire() noexcept {
        std::lock_guard<std::mutex> lock(mutex_);
        if (bus_ != nullptr) {
            ++users_;
        }
        return bus_;
    }
    void release() noexcept {
        std::lock_guard<std::mutex> lock(mutex_);
        if (--users_ == 0) {
            idle_.notify_all();
        }
    }
    /// Stops new calls at once; returns the handle, to free once wait_idle() returned.
    c_bus* close() noexcept {
        std::lock_guard<std::mutex> lock(mutex_);
        return std::exchange(bus_, nullptr);
    }
    /// Waits until no call that acquired the handle still uses it.
    void wait_idle() noexcept {
        std::unique_lock<std::mutex> lock(mutex_);
        idle_.wait(lock, [this] { return users_ == 0; });
    }

private:
    std::mutex mutex_;
    std::condition_variable idle_;
    c_bus* bus_;
    std::size_t users_ = 0;
};

/// A mark, on this thread's stack, that the thread is inside a use of a bus: a Subscription
/// call holding its handle (LinkUse), or one of the bus's callables, end notices or reply
/// callables. A thread's marks form a chain (innermost first; the head is a thread_local
/// pointer, trivially destructible) that the Bus's destructor reads: inside one of these
/// it must neither wait for the bus's users (itself among them) nor call jsonbus_free.
class InBus {
public:
    explicit InBus(const BusLink* link) noexcept : link_(link), outer_(head()) { head() = this; }
    ~InBus() { head() = outer_; }
    InBus(const InBus&) = delete;
    InBus& operator=(const InBus&) = delete;

    /// Whether this thread is inside a use of `link`'s bus.
    static bool inside(const BusLink* link) noexcept {
        for (const InBus* m = head(); m != nullptr; m = m->outer_) {
            if (m->link_ == link) {
                return true;
            }
        }
        return false;
    }

private:
    static const InBus*& head() noexcept {
        static thread_local const InBus* head = nullptr;
        return head;
    }
    const BusLink* link_;
    const InBus* outer_;
};

/// One use of a BusLink's handle (RAII around acquire/release), marked on this thread.
class LinkUse {
public:
    explicit LinkUse(BusLink* link) noexcept
        : mark_(link), link_(link), bus_(link != nullptr ? link->acquire() : nullptr) {}
    ~LinkUse() {
        if (bus_ != nullptr) {
            link_->release();
        }
    }
    LinkUse(const LinkUse&) = delete;
    LinkUse& operator=(const LinkUse&) = delete;
    c_bus* get() const noexcept { return bus_; }

private:
    InBus mark_;
    BusLink* link_;
    c_bus* bus_;
};

/// Takes a string the library allocated (freed with jsonbus_string_free), or throws.
inline std::string take_string(char* s) {
    if (s == nullptr) {
        throw_last(jsonbus_last_status());
    }
    std::unique_ptr<char, void (*)(char*)> owned(s, jsonbus_string_free);
    return std::string(s);
}

struct NoEndHook {
    void operator()(std::int32_t) const noexcept {}
};

template <class F, class E>
struct CallbackHolder;

}  // namespace detail

/// A message as a subscription's callable sees it: a view of the C `jsonbus_message`.
///
/// Valid only during the call that received it (copy what you keep, e.g.
/// `std::string(m.json())`); a PulledMessage, which is a Message, stays valid until released
/// (a Message copied from it is a view, valid as long as the PulledMessage holds it). Every
/// string is exactly the published bytes, and is also NUL-terminated in `raw()`.
class Message {
public:
    /// A view of a C message (from a C callback, for instance). `msg` must not be NULL.
    explicit Message(const c_message* msg) noexcept : msg_(msg) {}

    /// The topic it was published on.
    std::string_view topic() const noexcept { return {msg_->topic, msg_->topic_len}; }
    /// The payload: exactly the JSON bytes that were published.
    std::string_view json() const noexcept { return {msg_->json, msg_->json_len}; }
    /// Bus-wide publish order: starts at 1, strictly increasing.
    std::uint64_t seq() const noexcept { return msg_->seq; }
    /// jsonbus::now_ns() when it was published.
    std::uint64_t published_ns() const noexcept { return msg_->published_ns; }
    /// The id of the subscription it was delivered to (0 for the reply of request_async).
    std::int64_t subscription() const noexcept { return msg_->subscription; }
    /// For a request, the topic to answer on (Bus::reply does it); empty for other messages.
    std::string_view reply_to() const noexcept {
        return msg_->reply_to ? std::string_view(msg_->reply_to, msg_->reply_to_len)
                              : std::string_view();
    }
    /// Whether it is a request (it has a reply_to).
    bool is_request() const noexcept { return msg_->reply_to != nullptr; }
    /// The C message, for the C API.
    const c_message* raw() const noexcept { return msg_; }

protected:
    const c_message* msg_;
};

/// A message handed out by PullSubscription::next: a Message that owns its C message and
/// releases it (jsonbus_message_release) when destroyed. Move-only.
///
/// It stays valid until then, also after its subscription ended or its Bus was destroyed;
/// while it lives it counts as held by the bus (`queued` in the bus's stats, queue_capacity,
/// flush, close). A moved-from PulledMessage is empty: only destroy it or assign to it.
class PulledMessage : public Message {
public:
    /// Takes ownership of a message from jsonbus_next (not NULL).
    explicit PulledMessage(c_message* msg) noexcept : Message(msg) {}
    /// Takes `other`'s message; `other` is then empty.
    PulledMessage(PulledMessage&& other) noexcept : Message(other.msg_) { other.msg_ = nullptr; }
    /// Releases the message this held, then takes `other`'s.
    PulledMessage& operator=(PulledMessage&& other) noexcept {
        if (this != &other) {
            reset();
            msg_ = other.msg_;
            other.msg_ = nullptr;
        }
        return *this;
    }
    /// Move-only: a message is released once.
    PulledMessage(const PulledMessage&) = delete;
    PulledMessage& operator=(const PulledMessage&) = delete;
    /// Releases the message.
    ~PulledMessage() { reset(); }

    /// Releases the message now (jsonbus_message_release); afterwards this is empty.
    void reset() noexcept {
        if (msg_ != nullptr) {
            jsonbus_message_release(const_cast<c_message*>(msg_));
            msg_ = nullptr;
        }
    }
    /// Gives up ownership: the caller must jsonbus_message_release the result.
    c_message* release() noexcept {
        c_message* m = const_cast<c_message*>(msg_);
        msg_ = nullptr;
        return m;
    }
    /// Whether it holds a message (false once moved from, reset or released).
    explicit operator bool() const noexcept { return msg_ != nullptr; }
};

/// A callback subscription (Bus::subscribe). Move-only; its destructor unsubscribes.
///
/// Ending it by any means - unsubscribe() or the destructor, the callable returning
/// JSONBUS_UNSUBSCRIBE, `max_failures`, on_full "end", the bus closing - destroys the stored
/// callable exactly once, in the subscription's end notice.
///
/// Lifetime: it may outlive its Bus. Once the Bus's destructor has begun, the subscription
/// ends with the bus, and unsubscribe() and the destructor do nothing (stats() throws
/// JSONBUS_ERR_NOT_FOUND); nothing touches the freed bus. (So a Subscription destroyed on
/// another thread while the Bus is being destroyed returns at once; its callable may then run
/// until the bus is freed: when the Bus's destructor returns, or later, see Bus::~Bus.)
class Subscription {
public:
    /// An empty subscription (id 0) that owns nothing.
    Subscription() noexcept = default;
    /// Takes `other`'s subscription; `other` then owns none.
    Subscription(Subscription&& other) noexcept
        : link_(std::move(other.link_)), id_(other.id_.exchange(0)) {}
    /// Unsubscribes what this owned, then takes `other`'s subscription.
    Subscription& operator=(Subscription&& other) noexcept {
        if (this != &other) {
            unsubscribe();
            link_ = std::move(other.link_);
            id_.store(other.id_.exchange(0));
        }
        return *this;
    }
    /// Move-only: one owner ends the subscription.
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;
    /// unsubscribe(): see there for what it waits for.
    ~Subscription() { unsubscribe(); }

    /// The subscription's id (> 0; what Message::subscription() says), or 0 when this owns
    /// none (moved from, unsubscribed, detached, default-constructed).
    std::int64_t id() const noexcept { return id_.load(); }
    /// Whether this owns a subscription (it may have ended on its own meanwhile).
    explicit operator bool() const noexcept { return id() != 0; }

    /// Ends the subscription (jsonbus_unsubscribe); this then owns nothing. Returns true if it
    /// ended it, false if it had already ended on its own (returned JSONBUS_UNSUBSCRIBE,
    /// max_failures, slow, bus closed; its callable is then destroyed, or being destroyed, by
    /// whoever ended it) or this owned none.
    ///
    /// When it returns true, the callable is not running, will not run again and has been
    /// destroyed - except when called from a callable of another subscription of the same bus:
    /// then an invocation already running may still finish, and the callable is destroyed on a
    /// dispatcher thread after it (the C rule: a callback never waits for another). From the
    /// subscription's own callable it is allowed: the callable is destroyed after it returns.
    /// Safe to call from any thread; safe after the Bus was destroyed (does nothing).
    bool unsubscribe() noexcept {
        std::int64_t id = id_.exchange(0);
        if (id == 0) {
            return false;
        }
        detail::LinkUse use(link_.get());
        return use.get() != nullptr && jsonbus_unsubscribe(use.get(), id) == JSONBUS_OK;
    }

    /// Lets the subscription go on without an owner: it lasts until it ends on its own or the
    /// bus closes (its callable is still destroyed then). Returns its id; this owns nothing.
    std::int64_t detach() noexcept { return id_.exchange(0); }

    /// The subscription's counters as JSON (jsonbus_subscription_stats): `delivered`,
    /// `queued`, `max_queued`, `dropped`, `callback_failures`, `ended`, ... Throws
    /// JSONBUS_ERR_NOT_FOUND when this owns none or, some time after it ended, once the
    /// library has forgotten it (until then `ended` names the reason).
    std::string stats() const {
        detail::LinkUse use(link_.get());
        if (use.get() == nullptr) {
            detail::throw_no_bus();
        }
        return detail::take_string(jsonbus_subscription_stats(use.get(), id()));
    }

private:
    friend class Bus;
    Subscription(std::shared_ptr<detail::BusLink> link, std::int64_t id) noexcept
        : link_(std::move(link)), id_(id) {}

    std::shared_ptr<detail::BusLink> link_;
    std::atomic<std::int64_t> id_{0};
};

/// A pull subscription (Bus::subscribe_pull): no callable; take its messages with next(),
/// by iterating it, or in an event loop that polls fd(). Move-only; its destructor
/// unsubscribes (which also releases one that ended on its own).
///
/// next() may be called from several threads at once (each message goes to one of them), and
/// unsubscribe() from another thread while they wait: they then return no message.
///
/// Iterating (`for (auto& m : pull)` or `for (auto& m : pull.messages(timeout_ms))`) yields
/// PulledMessage&: each one is released when the loop moves to the next (move it out to keep
/// it). The loop ends when next() returns no message: with `pull` itself (no time limit) only
/// when the subscription ends (unsubscribed, slow, bus closed or destroyed); with
/// `pull.messages(t)` also when no message came for t ms (0: drain what is waiting now).
///
/// Lifetime: it may outlive its Bus; then next() returns no message, ended() is true, fd()
/// and stats() throw JSONBUS_ERR_NOT_FOUND, and the destructor does nothing.
class PullSubscription {
public:
    /// The end of an iteration (see the class).
    struct sentinel {};

    /// An input iterator over the messages (see the class): `*it` is the current
    /// PulledMessage, `++it` releases it and waits for the next.
    class iterator {
    public:
        /// The standard iterator types: an input iterator over PulledMessage.
        using iterator_category = std::input_iterator_tag;
        using value_type = PulledMessage;
        using difference_type = std::ptrdiff_t;
        using pointer = PulledMessage*;
        using reference = PulledMessage&;

        /// An iterator at the end.
        iterator() = default;
        /// The current message.
        reference operator*() const noexcept { return *current_; }
        /// The current message's members.
        pointer operator->() const noexcept { return &*current_; }
        /// Releases the current message and waits for the next one.
        iterator& operator++() {
            current_.reset();
            current_ = sub_->next(timeout_ms_);
            if (!current_) {
                sub_ = nullptr;
            }
            return *this;
        }
        /// ++it (an input iterator's it++ returns nothing useful).
        void operator++(int) { ++*this; }

        /// Whether the iteration has ended (next() returned no message).
        friend bool operator==(const iterator& it, sentinel) noexcept { return it.sub_ == nullptr; }
        friend bool operator==(sentinel s, const iterator& it) noexcept { return it == s; }
        friend bool operator!=(const iterator& it, sentinel s) noexcept { return !(it == s); }
        friend bool operator!=(sentinel s, const iterator& it) noexcept { return !(it == s); }

    private:
        friend class PullSubscription;
        iterator(PullSubscription* sub, int timeout_ms) : sub_(sub), timeout_ms_(timeout_ms) {
            ++*this;
        }
        PullSubscription* sub_ = nullptr;
        int timeout_ms_ = -1;
        mutable std::optional<PulledMessage> current_;
    };

    /// The range `messages(timeout_ms)` returns: each step waits up to timeout_ms.
    class Messages {
    public:
        /// Waits up to timeout_ms for the first message.
        iterator begin() { return iterator(sub_, timeout_ms_); }
        /// The end of the iteration.
        sentinel end() const noexcept { return {}; }

    private:
        friend class PullSubscription;
        Messages(PullSubscription* sub, int timeout_ms) noexcept
            : sub_(sub), timeout_ms_(timeout_ms) {}
        PullSubscription* sub_;
        int timeout_ms_;
    };

    /// An empty pull subscription (id 0) that owns nothing.
    PullSubscription() noexcept = default;
    /// Takes `other`'s subscription; `other` then owns none.
    PullSubscription(PullSubscription&& other) noexcept
        : link_(std::move(other.link_)), id_(other.id_.exchange(0)), ended_(other.ended_.load()) {}
    /// Unsubscribes what this owned, then takes `other`'s subscription.
    PullSubscription& operator=(PullSubscription&& other) noexcept {
        if (this != &other) {
            unsubscribe();
            link_ = std::move(other.link_);
            id_.store(other.id_.exchange(0));
            ended_.store(other.ended_.load());
        }
        return *this;
    }
    /// Move-only: one owner releases the subscription.
    PullSubscription(const PullSubscription&) = delete;
    PullSubscription& operator=(const PullSubscription&) = delete;
    /// unsubscribe().
    ~PullSubscription() { unsubscribe(); }

    /// The subscription's id (> 0), or 0 when this owns none.
    std::int64_t id() const noexcept { return id_.load(); }
    /// Whether this owns a subscription (it may have ended meanwhile).
    explicit operator bool() const noexcept { return id() != 0; }

    /// The next message, in `seq` order (jsonbus_next): waits up to `timeout_ms` for one
    /// (negative: no limit; 0: just look). No message (std::nullopt) when none came in time or
    /// the subscription has ended and its queue is empty (then ended() is true: unsubscribed,
    /// slow, bus closed or destroyed). Throws Error on other failures (JSONBUS_ERR_INTERNAL).
    std::optional<PulledMessage> next(int timeout_ms = -1) {
        // Long waits are made in slices, so that a Bus being destroyed on another thread
        // (which must wait until no call uses its handle) is not held up by a waiting next().
        constexpr int slice_ms = 50;
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        for (;;) {
            int wait = slice_ms;
            if (timeout_ms >= 0) {
                auto left = std::chrono::ceil<std::chrono::milliseconds>(
                                deadline - std::chrono::steady_clock::now())
                                .count();
                wait = left <= 0 ? 0 : (left < slice_ms ? static_cast<int>(left) : slice_ms);
            }
            std::int64_t id = id_.load();
            detail::LinkUse use(link_.get());
            if (id == 0 || use.get() == nullptr) {
                ended_.store(true);
                return std::nullopt;
            }
            c_message* msg = nullptr;
            std::int32_t rc = jsonbus_next(use.get(), id, wait, &msg);
            if (rc == JSONBUS_OK) {
                return PulledMessage(msg);
            }
            if (rc == JSONBUS_ERR_ENDED || rc == JSONBUS_ERR_NOT_FOUND) {
                ended_.store(true);
                return std::nullopt;
            }
            if (rc != JSONBUS_ERR_TIMEOUT) {
                detail::throw_last(rc);
            }
            if (timeout_ms >= 0 && (wait == 0 || std::chrono::steady_clock::now() >= deadline)) {
                return std::nullopt;
            }
        }
    }

    /// next(0): a message that is waiting now, or none.
    std::optional<PulledMessage> try_next() { return next(0); }

    /// Whether next() has seen the subscription ended (or this owns none).
    bool ended() const noexcept { return ended_.load() || id() == 0; }

    /// Iterates until the subscription ends (see the class).
    iterator begin() { return iterator(this, -1); }
    /// The end of an iteration.
    sentinel end() const noexcept { return {}; }
    /// A range over the messages that waits up to `timeout_ms` for each (see the class).
    Messages messages(int timeout_ms) noexcept { return Messages(this, timeout_ms); }

    /// The descriptor that polls readable while a message waits or the subscription has ended
    /// (jsonbus_pull_fd; POSIX): never read, write or close it; then call try_next() until it
    /// returns no message. Valid until this is unsubscribed or the bus destroyed. Throws
    /// JSONBUS_ERR_UNSUPPORTED on Windows.
    int fd() const {
        detail::LinkUse use(link_.get());
        if (use.get() == nullptr) {
            detail::throw_no_bus();
        }
        std::int32_t fd = jsonbus_pull_fd(use.get(), id());
        if (fd < 0) {
            detail::throw_last(fd);
        }
        return fd;
    }

    /// The subscription's counters as JSON (jsonbus_subscription_stats): `queued` (waiting,
    /// not yet taken), `delivered` (taken), `dropped`, `ended`, ...
    std::string stats() const {
        detail::LinkUse use(link_.get());
        if (use.get() == nullptr) {
            detail::throw_no_bus();
        }
        return detail::take_string(jsonbus_subscription_stats(use.get(), id()));
    }

    /// Ends and releases the subscription (jsonbus_unsubscribe; its waiting messages are
    /// dropped; messages already taken stay valid). Returns true if the library released it;
    /// false if this owned none or the bus is closed or destroyed. Safe from any thread.
    bool unsubscribe() noexcept {
        std::int64_t id = id_.exchange(0);
        if (id == 0) {
            return false;
        }
        detail::LinkUse use(link_.get());
        return use.get() != nullptr && jsonbus_unsubscribe(use.get(), id) == JSONBUS_OK;
    }

private:
    friend class Bus;
    PullSubscription(std::shared_ptr<detail::BusLink> link, std::int64_t id) noexcept
        : link_(std::move(link)), id_(id) {}

    std::shared_ptr<detail::BusLink> link_;
    std::atomic<std::int64_t> id_{0};
    std::atomic<bool> ended_{false};
};

namespace detail {

/// A subscription's callable and end hook, owned by the library from a successful subscribe
/// until the end notice, which deletes it.
template <class F, class E>
struct CallbackHolder {
    const BusLink* link;  // its bus's (only compared, by InBus)
    F fn;
    E on_end;

    template <class G, class H>
    CallbackHolder(const BusLink* l, G&& g, H&& h)
        : link(l), fn(std::forward<G>(g)), on_end(std::forward<H>(h)) {}

    static std::int32_t call(const c_message* msg, void* user_data) noexcept {
        auto* self = static_cast<CallbackHolder*>(user_data);
        const InBus mark(self->link);
        try {
            const Message m(msg);
            if constexpr (std::is_void_v<std::invoke_result_t<F&, const Message&>>) {
                std::invoke(self->fn, m);
                return JSONBUS_OK;
            } else {
                return static_cast<std::int32_t>(std::invoke(self->fn, m));
            }
        } catch (...) {
            return callback_exception;
        }
    }

    static void end(std::int64_t, std::int32_t reason, void* user_data) noexcept {
        auto* self = static_cast<CallbackHolder*>(user_data);
        const InBus mark(self->link);  // also around the delete: it may destroy the Bus
        try {
            std::invoke(self->on_end, reason);
        } catch (...) {
        }
        delete self;
    }
};

/// request_async's callable, deleted right after its one call.
template <class F>
struct ReplyHolder {
    const BusLink* link;  // its bus's (only compared, by InBus)
    F fn;

    template <class G>
    ReplyHolder(const BusLink* l, G&& g) : link(l), fn(std::forward<G>(g)) {}

    static void call(std::int32_t status, const c_message* reply, void* user_data) noexcept {
        auto* raw = static_cast<ReplyHolder*>(user_data);
        const InBus mark(raw->link);  // made before `self`, so it also covers the delete
        std::unique_ptr<ReplyHolder> self(raw);
        try {
            if (reply != nullptr) {
                const Message m(reply);
                std::invoke(self->fn, status, &m);
            } else {
                std::invoke(self->fn, status, static_cast<const Message*>(nullptr));
            }
        } catch (...) {
        }
    }
};

template <class F>
constexpr void check_callable() {
    static_assert(std::is_invocable_v<F&, const Message&>,
                  "a subscription's callable takes (const jsonbus::Message&)");
    using R = std::invoke_result_t<F&, const Message&>;
    static_assert(std::is_void_v<R> ||
                      (std::is_convertible_v<R, std::int32_t> &&
                       !std::is_same_v<std::decay_t<R>, bool>),
                  "a subscription's callable returns void or an int32_t status (JSONBUS_OK, "
                  "JSONBUS_UNSUBSCRIBE, negative = failure), not bool");
}

}  // namespace detail

/// A bus (jsonbus_new): publish JSON from any thread; subscriptions' callables run on its
/// dispatcher threads. Move-only; the destructor closes and frees it.
///
/// Every member may be called from any thread at once, and from the bus's own callables
/// (those that would wait for the calling callable throw JSONBUS_ERR_DEADLOCK instead: flush,
/// close, request). Do not destroy, move or assign a Bus while other threads use it, nor
/// while one of its own members runs on this thread (e.g. in an end notice that close()
/// runs). Destroying it in one of its callables is allowed: see ~Bus.
class Bus {
public:
    /// A bus with the default options (jsonbus_new(NULL)). Throws Error on failure.
    Bus() : Bus(jsonbus_new(nullptr), true) {}

    /// A bus with options, a JSON object such as `{"dispatcher_threads":4}` (keys:
    /// dispatcher_threads, queue_capacity, publish_timeout_ms, max_message_bytes, max_depth,
    /// dispatcher_spin_us; see jsonbus_new). Throws Error (JSONBUS_ERR_OPTIONS) on bad options.
    explicit Bus(std::string_view options_json) : Bus(open(options_json), true) {}

    /// The process-wide default bus (jsonbus_default()), the one the quick API uses, without
    /// owning it: destroying this does not close it (close() does: jsonbus_shutdown).
    static Bus default_bus() { return Bus(jsonbus_default(), false); }

    /// Attaches to the bus that another process of this user serves under `name`
    /// (jsonbus_attach; Linux): every call on the returned Bus works on that shared bus, and
    /// its callables run on this process's own dispatcher threads. `options_json`: the local
    /// side's dispatcher_threads, queue_capacity, publish_timeout_ms, dispatcher_spin_us, and
    /// connect_timeout_ms (1000; -1 waits for the name). Throws Error: JSONBUS_ERR_NO_BUS,
    /// PERMISSION, LIMIT, PEER, TOPIC (malformed name), OPTIONS, UNSUPPORTED. Calls on it throw
    /// JSONBUS_ERR_DISCONNECTED once the serving process is gone.
    static Bus attach(std::string_view name, std::string_view options_json = {}) {
        detail::CString n(name);
        n.check(JSONBUS_ERR_TOPIC, "name");
        detail::CString options(options_json);
        options.check(JSONBUS_ERR_OPTIONS, "options_json");
        c_bus* bus = jsonbus_attach(n.c_str(), options.c_str_or_null());
        if (bus == nullptr) {
            detail::throw_last(jsonbus_last_status());
        }
        return Bus(bus, true);
    }

    /// Serves this bus under `name` so that other processes can attach to it (jsonbus_serve;
    /// Linux), until it is closed or destroyed. `options_json`: max_peers, peer_ring_bytes,
    /// peer_stall_timeout_ms, allow_group. Throws Error: JSONBUS_ERR_NAME_IN_USE, PERMISSION,
    /// TOPIC, OPTIONS, CLOSED, UNSUPPORTED.
    void serve(std::string_view name, std::string_view options_json = {}) {
        detail::CString n(name);
        n.check(JSONBUS_ERR_TOPIC, "name");
        detail::CString options(options_json);
        options.check(JSONBUS_ERR_OPTIONS, "options_json");
        std::int32_t rc = jsonbus_serve(bus_, n.c_str(), options.c_str_or_null());
        if (rc != JSONBUS_OK) {
            detail::throw_last(rc);
        }
    }

    /// Takes ownership of a bus made with jsonbus_new (not NULL, not jsonbus_default()).
    static Bus adopt(c_bus* bus) {
        if (bus == nullptr) {
            throw Error(JSONBUS_ERR_NULL, "Bus::adopt: bus is NULL");
        }
        return Bus(bus, true);
    }

    /// Takes `other`'s bus and its subscriptions' link; `other` then owns none (raw() is NULL
    /// and its calls throw JSONBUS_ERR_NULL).
    Bus(Bus&& other) noexcept
        : bus_(std::exchange(other.bus_, nullptr)),
          link_(std::move(other.link_)),
          owned_(other.owned_) {}
    /// Closes and frees the bus this owned (as the destructor), then takes `other`'s.
    Bus& operator=(Bus&& other) noexcept {
        if (this != &other) {
            destroy();
            bus_ = std::exchange(other.bus_, nullptr);
            link_ = std::move(other.link_);
            owned_ = other.owned_;
        }
        return *this;
    }
    /// Move-only: one owner frees the bus.
    Bus(const Bus&) = delete;
    Bus& operator=(const Bus&) = delete;

    /// Closes and frees the bus (jsonbus_free): every queued callback delivery is made and
    /// every callable returns and is destroyed (as jsonbus_close(-1)); pull subscriptions end
    /// at once, their waiting messages dropped, and PulledMessages already taken stay valid.
    /// It first waits until no Subscription/PullSubscription call uses the bus (a waiting
    /// next() gives up within 50 ms); from then on those objects do nothing.
    /// (jsonbus_free rather than jsonbus_close(-1): close(-1) would wait forever for pull
    /// messages nobody takes and for PulledMessages still held.)
    ///
    /// Destroyed on a thread that is inside a callable, end notice or request_async callable
    /// of this bus (one that captured the last std::shared_ptr<Bus>, say), or inside a
    /// Subscription call of this bus (unsubscribe() running that end notice), it cannot wait
    /// for that call nor free the bus there (jsonbus_free refuses in the bus's callbacks). It
    /// then returns at once - its Subscriptions do nothing from then on - and a new detached
    /// thread frees the bus as above once that call and every other Subscription call using
    /// the bus have returned; the other callables are destroyed on that thread. Its end is
    /// not waited for: if the process exits before it is done, the rest is cut short as with
    /// any thread still running at exit (callables not destroyed, nothing freed); to know it
    /// is done, wait for your callables' destructors. (If no thread can be started, the bus
    /// is never freed.)
    ~Bus() { destroy(); }

    /// The C handle, for the C API (NULL once moved from). Still owned by this Bus.
    c_bus* raw() const noexcept { return bus_; }

    /// Publishes `json` on `topic` (jsonbus_publish): validated and copied before it returns;
    /// blocks, waits or fails when the bus is full as `publish_timeout_ms` says. Throws Error:
    /// JSONBUS_ERR_TOPIC, JSON, UTF8, TOO_LARGE, FULL, CLOSED.
    void publish(detail::CString topic, std::string_view json) {
        topic.check(JSONBUS_ERR_TOPIC, "topic");
        std::int32_t rc = jsonbus_publish(bus_, topic.c_str(), json.data(), json.size());
        if (rc != JSONBUS_OK) {
            detail::throw_last(rc);
        }
    }

    /// Waits until every message published before it - and what their callables publish into
    /// this bus - has been handled (jsonbus_flush; negative: no limit). Returns true, or false
    /// when `timeout_ms` ran out. Throws JSONBUS_ERR_DEADLOCK from a callable of this bus,
    /// JSONBUS_ERR_CLOSED if the bus closed meanwhile and discarded a message it waited for.
    /// Messages waiting in pull subscriptions, and PulledMessages not released, are waited for.
    bool flush(int timeout_ms = -1) {
        std::int32_t rc = jsonbus_flush(bus_, timeout_ms);
        if (rc == JSONBUS_ERR_TIMEOUT) {
            return false;
        }
        if (rc != JSONBUS_OK) {
            detail::throw_last(rc);
        }
        return true;
    }

    /// Closes the bus (jsonbus_close) without freeing it: no more publishes, what is queued is
    /// delivered for up to `timeout_ms` (negative: no limit), then every subscription ends and
    /// its callable is destroyed. Returns true, or false if it discarded messages or pulled
    /// messages were still held. Without a time limit it also waits until pull subscriptions'
    /// messages are taken and released. Throws JSONBUS_ERR_DEADLOCK from a callable of this bus.
    bool close(int timeout_ms = -1) {
        std::int32_t rc = jsonbus_close(bus_, timeout_ms);
        if (rc == JSONBUS_ERR_TIMEOUT) {
            return false;
        }
        if (rc != JSONBUS_OK) {
            detail::throw_last(rc);
        }
        return true;
    }

    /// The bus's counters as a JSON object (jsonbus_stats): published, delivered, unrouted,
    /// dropped, queued, subscriptions, callback_failures, timers, requests, rejected, ...
    std::string stats() const { return detail::take_string(jsonbus_stats(bus_)); }

    /// Subscribes `fn` to the topics `pattern` matches (`orders.*.new`, `orders.>`, `>`).
    ///
    /// `fn` is any callable taking `const jsonbus::Message&` and returning void (stay
    /// subscribed) or an int32_t status: JSONBUS_OK, JSONBUS_UNSUBSCRIBE (end this
    /// subscription), negative (a failure: counted, and ends it after `max_failures` in a row).
    /// It is moved (or copied) into heap storage; move-only callables are fine.
    ///
    /// It runs on a dispatcher thread, never concurrently with itself, in `seq` order, and may
    /// call this Bus (publish, subscribe, reply, ...). An exception it throws is caught and
    /// counted as a failure (returns jsonbus::callback_exception). The storage, and so what the
    /// callable captured, is destroyed exactly once when the subscription ends, whatever ends
    /// it: on the thread of the unsubscribe/close/destructor that ended it, else on a
    /// dispatcher thread (or the thread that frees a Bus destroyed in a callable: see ~Bus).
    ///
    /// `options_json` ("" or "{}" for the defaults): queue_limit, on_full ("block",
    /// "drop_oldest", "drop_new", "end"), max_failures, group (see jsonbus_subscribe_with).
    /// `on_end`, if given, is called with the end reason (JSONBUS_END_*) once, just before the
    /// storage is destroyed (exceptions from it are swallowed).
    ///
    /// Throws Error: JSONBUS_ERR_TOPIC, OPTIONS, CLOSED (then `fn` is destroyed before the
    /// throw reaches you). Keep the result: the subscription ends when it is destroyed.
    template <class F>
    [[nodiscard]] Subscription subscribe(detail::CString pattern, F&& fn) {
        return subscribe_impl(pattern.c_str(), std::forward<F>(fn), nullptr, detail::NoEndHook{},
                         pattern);
    }

    /// subscribe(pattern, fn) with subscription options (see there).
    template <class F>
    [[nodiscard]] Subscription subscribe(detail::CString pattern, F&& fn,
                                         detail::CString options_json) {
        options_json.check(JSONBUS_ERR_OPTIONS, "options_json");
        return subscribe_impl(pattern.c_str(), std::forward<F>(fn), options_json.c_str_or_null(),
                         detail::NoEndHook{}, pattern);
    }

    /// subscribe(pattern, fn, options_json) with an end hook: `on_end(int32_t reason)` (see
    /// subscribe(pattern, fn)).
    template <class F, class E>
    [[nodiscard]] Subscription subscribe(detail::CString pattern, F&& fn,
                                         detail::CString options_json, E&& on_end) {
        static_assert(std::is_invocable_v<std::decay_t<E>&, std::int32_t>,
                      "on_end takes (int32_t reason)");
        options_json.check(JSONBUS_ERR_OPTIONS, "options_json");
        return subscribe_impl(pattern.c_str(), std::forward<F>(fn), options_json.c_str_or_null(),
                         std::forward<E>(on_end), pattern);
    }

    /// Makes a pull subscription (jsonbus_subscribe_pull) with optional subscription options
    /// (see subscribe). Throws Error: JSONBUS_ERR_TOPIC, OPTIONS, CLOSED.
    [[nodiscard]] PullSubscription subscribe_pull(detail::CString pattern,
                                                  detail::CString options_json = "") {
        pattern.check(JSONBUS_ERR_TOPIC, "pattern");
        options_json.check(JSONBUS_ERR_OPTIONS, "options_json");
        std::int64_t id =
            jsonbus_subscribe_pull(bus_, pattern.c_str(), options_json.c_str_or_null());
        if (id <= 0) {
            detail::throw_last(id);
        }
        return PullSubscription(link_, id);
    }

    /// Publishes a request on `topic` and waits up to `timeout_ms` (negative: no limit) for
    /// the first reply (jsonbus_request); returns its payload. Throws Error on any failure:
    /// JSONBUS_ERR_NO_RESPONDERS (nothing subscribed to `topic`), TIMEOUT, CLOSED, DEADLOCK
    /// (from a callable of this bus: use request_async there), or a publish's errors.
    std::string request(detail::CString topic, std::string_view json, int timeout_ms) {
        topic.check(JSONBUS_ERR_TOPIC, "topic");
        char* reply = nullptr;
        std::size_t len = 0;
        std::int32_t rc = jsonbus_request(bus_, topic.c_str(), json.data(), json.size(), timeout_ms,
                                          &reply, &len);
        if (rc != JSONBUS_OK) {
            detail::throw_last(rc);  // *reply is NULL after a failure
        }
        std::unique_ptr<char, void (*)(char*)> owned(reply, jsonbus_string_free);
        return std::string(reply, len);
    }

    /// Publishes a request without waiting (jsonbus_request_async): `fn(int32_t status, const
    /// jsonbus::Message* reply)` is then called exactly once on a dispatcher thread (or on the
    /// thread closing the bus) - with JSONBUS_OK and the reply (valid during the call), or with
    /// JSONBUS_ERR_TIMEOUT / JSONBUS_ERR_CLOSED and NULL - and destroyed right after. It may
    /// run before this returns. Exceptions from it are swallowed. Throws Error (and `fn` is
    /// destroyed, never called): NO_RESPONDERS, CLOSED, a publish's errors.
    template <class F>
    void request_async(detail::CString topic, std::string_view json, int timeout_ms, F&& fn) {
        using Fn = std::decay_t<F>;
        static_assert(std::is_invocable_v<Fn&, std::int32_t, const Message*>,
                      "request_async's callable takes "
                      "(int32_t status, const jsonbus::Message* reply)");
        topic.check(JSONBUS_ERR_TOPIC, "topic");
        auto holder =
            std::make_unique<detail::ReplyHolder<Fn>>(link_.get(), std::forward<F>(fn));
        std::int32_t rc =
            jsonbus_request_async(bus_, topic.c_str(), json.data(), json.size(), timeout_ms,
                                  &detail::ReplyHolder<Fn>::call, holder.get());
        if (rc != JSONBUS_OK) {
            detail::throw_last(rc);  // the holder is destroyed after the Error is made
        }
        holder.release();  // the library calls it, which deletes it
    }

    /// Answers a request (a message with a reply_to) with `json` (jsonbus_reply), normally
    /// from the responder's callable. Throws Error: JSONBUS_ERR_NOT_FOUND when `request` is not
    /// a request, FULL (from a callable on a full bus), or a publish's errors.
    void reply(const Message& request, std::string_view json) {
        std::int32_t rc = jsonbus_reply(bus_, request.raw(), json.data(), json.size());
        if (rc != JSONBUS_OK) {
            detail::throw_last(rc);
        }
    }

    /// Publishes `json` on `topic` `delay_ms` from now (jsonbus_publish_after; checked and
    /// copied now). Returns the timer's id, for cancel(). Throws a publish's errors.
    std::int64_t publish_after(detail::CString topic, std::string_view json,
                               std::int64_t delay_ms) {
        topic.check(JSONBUS_ERR_TOPIC, "topic");
        std::int64_t id =
            jsonbus_publish_after(bus_, topic.c_str(), json.data(), json.size(), delay_ms);
        if (id <= 0) {
            detail::throw_last(id);
        }
        return id;
    }

    /// Stops a pending publish_after timer (jsonbus_cancel): true if it will never publish,
    /// false if it already fired, was cancelled or discarded by a close.
    bool cancel(std::int64_t timer) {
        std::int32_t rc = jsonbus_cancel(bus_, timer);
        if (rc == JSONBUS_ERR_NOT_FOUND) {
            return false;
        }
        if (rc != JSONBUS_OK) {
            detail::throw_last(rc);
        }
        return true;
    }

private:
    Bus(c_bus* bus, bool owned) : bus_(bus), owned_(owned) {
        if (bus_ == nullptr) {
            detail::throw_last(jsonbus_last_status());
        }
        try {
            link_ = std::make_shared<detail::BusLink>(bus_);
        } catch (...) {
            if (owned_) {
                jsonbus_free(bus_);
            }
            throw;
        }
    }

    static c_bus* open(std::string_view options_json) {
        detail::CString options(options_json);
        options.check(JSONBUS_ERR_OPTIONS, "options_json");
        c_bus* bus = jsonbus_new(options.c_str_or_null());
        if (bus == nullptr) {
            detail::throw_last(jsonbus_last_status());
        }
        return bus;
    }

    template <class F, class E>
    Subscription subscribe_impl(const char* pattern, F&& fn, const char* options, E&& on_end,
                           const detail::CString& pattern_arg) {
        using Fn = std::decay_t<F>;
        using En = std::decay_t<E>;
        detail::check_callable<Fn>();
        pattern_arg.check(JSONBUS_ERR_TOPIC, "pattern");
        using Holder = detail::CallbackHolder<Fn, En>;
        auto holder =
            std::make_unique<Holder>(link_.get(), std::forward<F>(fn), std::forward<E>(on_end));
        std::int64_t id = jsonbus_subscribe_with(bus_, pattern, options, &Holder::call,
                                                 &Holder::end, holder.get());
        if (id <= 0) {
            // The library never calls the end notice of a subscription it refused.
            detail::throw_last(id);  // the holder is destroyed after the Error is made
        }
        holder.release();  // from now on the end notice owns it
        return Subscription(link_, id);
    }

    void destroy() noexcept {
        if (link_ && owned_) {
            c_bus* bus = link_->close();  // from now on its Subscriptions do nothing
            if (!detail::InBus::inside(link_.get())) {
                link_->wait_idle();
                jsonbus_free(bus);
            } else {
                // In a callable, end notice or Subscription call of this bus: waiting here would
                // wait for this thread, and jsonbus_free refuses to run in the bus's callbacks.
                // A new thread frees it once this thread's use is over (see ~Bus).
                try {
                    std::thread([link = link_, bus] {
                        link->wait_idle();
                        jsonbus_free(bus);
                    }).detach();
                } catch (...) {  // no thread could be started: the bus cannot be freed
                }
            }
        }
        link_.reset();
        bus_ = nullptr;
    }

    c_bus* bus_ = nullptr;
    std::shared_ptr<detail::BusLink> link_;
    bool owned_ = true;
};

}  // namespace jsonbus

#endif  // JSONBUS_HPP
