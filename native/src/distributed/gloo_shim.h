// The C interface of bertkit_gloo.so, the one file that links Gloo.
//
// Debian ships Gloo as a shared C++ library only (libgloo.so.0), so linking it
// into the addon would make every bertkit binary need it. Instead the addon
// opens this small shim with dlopen() when a Gloo process group is created
// (dist/gloo_api.cpp), and a build or a machine without Gloo loads and trains
// on one process as before. Only C types cross this boundary: the shim and
// the addon may be linked against different C++ runtimes (the prebuilt addon
// carries its own libstdc++).
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Bumped whenever a signature below changes; the addon refuses a shim of
// another version with a message naming both.
#define BK_GLOO_ABI_VERSION 1

// Element types and reductions, as the addon numbers them (bertkit/dtype.h).
enum { BK_GLOO_F32 = 0, BK_GLOO_I32 = 3 };
enum { BK_GLOO_SUM = 0, BK_GLOO_MAX = 1, BK_GLOO_MIN = 2 };

// The key-value store Gloo's rendezvous writes its addresses to. The addon
// provides it (its TCP store, dist/tcp_store.h); the shim wraps it as a
// gloo::rendezvous::Store. Each returns 0 on success, else writes a message
// to err (NUL-terminated, at most err_len bytes) and returns non-zero.
// get() blocks until the key exists or timeout_ms passes; *value is malloc'd
// and freed by the shim with bk_free.
typedef struct bk_gloo_store {
  void* self;
  int (*set)(void* self, const char* key, const void* value, size_t size, char* err, size_t err_len);
  int (*get)(void* self, const char* key, int64_t timeout_ms, void** value, size_t* size, char* err, size_t err_len);
  void (*free_value)(void* value);
} bk_gloo_store;

typedef struct bk_gloo_group bk_gloo_group;

typedef int (*bk_gloo_abi_version_fn)(void);
// Connects a full mesh of TCP pairs among `size` processes. This process
// listens on network interface `iface` when it is not empty (as torch's
// GLOO_SOCKET_IFNAME), else on address `host`. Blocks up to timeout_ms; the
// same timeout then bounds every collective.
typedef bk_gloo_group* (*bk_gloo_connect_fn)(const bk_gloo_store* store, int rank, int size, const char* host,
                                             const char* iface, int64_t timeout_ms, char* err, size_t err_len);
// The address this process's pair towards `peer` listens on ("[ip]:port"), so
// peers can name the rank behind an address in Gloo's error messages.
typedef int (*bk_gloo_pair_address_fn)(bk_gloo_group* group, int peer, char* out, size_t out_len);
// In place on `data` (count elements of dtype).
typedef int (*bk_gloo_allreduce_fn)(bk_gloo_group* group, void* data, int64_t count, int dtype, int op, uint32_t tag,
                                    char* err, size_t err_len);
typedef int (*bk_gloo_broadcast_fn)(bk_gloo_group* group, void* data, int64_t count, int dtype, int root, uint32_t tag,
                                    char* err, size_t err_len);
// output holds size * count elements, rank r's input at r * count.
typedef int (*bk_gloo_allgather_fn)(bk_gloo_group* group, const void* input, void* output, int64_t count, int dtype,
                                    uint32_t tag, char* err, size_t err_len);
typedef int (*bk_gloo_barrier_fn)(bk_gloo_group* group, uint32_t tag, char* err, size_t err_len);
typedef void (*bk_gloo_destroy_fn)(bk_gloo_group* group);

#ifdef __cplusplus
}
#endif
