// go-seed: the Go pattern that jsonbus replaces, built with -buildmode=c-shared.
//
// push_json copies the C string (C.GoString), starts a goroutine per message that checks
// the JSON and then calls the registered C callbacks through a small C trampoline
// (seed_deliver in trampoline.c); a sync.WaitGroup tracks the goroutines and jsonbus_flush
// is wg.Wait(). No order, no bound: that is the seed.
//
// The check is json.Valid, the same work jsonbus does on every publish (validate, build
// nothing): the fair peer. With GOSEED_DECODE=map in the environment it decodes into a
// map[string]any instead, as the seed's own handler did (the "go-seed-map" row), which is
// work jsonbus does not do.
package main

/*
#include <stdint.h>
#include <stdlib.h>
extern uint64_t jsonbus_now_ns(void);
extern void seed_deliver(const char *json, size_t len, uint64_t seq, uint64_t published_ns);
*/
import "C"

import (
	"encoding/json"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"
)

var (
	decodeMap = os.Getenv("GOSEED_DECODE") == "map"
	wg        sync.WaitGroup
	seq       atomic.Uint64
	failures  atomic.Uint64
)

func process(s string, n uint64, published uint64) {
	defer wg.Done()
	// the seed does json.Unmarshal([]byte(s), ...); the extra NUL byte lets C read the
	// buffer as a C string, at no extra cost over the plain conversion
	buf := make([]byte, len(s)+1)
	copy(buf, s)
	if decodeMap {
		var m map[string]any
		if err := json.Unmarshal(buf[:len(s)], &m); err != nil {
			failures.Add(1)
			return
		}
	} else if !json.Valid(buf[:len(s)]) {
		failures.Add(1)
		return
	}
	C.seed_deliver((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(s)), C.uint64_t(n), C.uint64_t(published))
}

//export push_json
func push_json(cs *C.char) C.int32_t {
	if cs == nil {
		return -1
	}
	published := uint64(C.jsonbus_now_ns())
	s := C.GoString(cs)
	n := seq.Add(1)
	wg.Add(1)
	go process(s, n, published)
	return 0
}

//export jsonbus_flush
func jsonbus_flush(bus unsafe.Pointer, timeoutMs C.int32_t) C.int32_t {
	wg.Wait()
	return 0
}

//export add
func add(a, b C.int32_t) C.int32_t { return a + b }

func main() {}
