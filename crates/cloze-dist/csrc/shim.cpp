// The C side of cloze-dist: a handful of extern "C" functions over libtorch's
// own distributed engine (c10d). A TCPStore is the rendezvous, a
// ProcessGroupGloo the collectives. Every C++ exception is caught here and
// handed to Rust as a malloc'd message; nothing throws across the boundary.
//
// Only virtual methods of the process group and the store are called: the
// gloo headers we compile against (Debian's libgloo-dev) are older than the
// gloo linked into libtorch_cpu.so, so no inline gloo code may be used.

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};

char* copy_message(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.c_str(), s.size() + 1);
  }
  return out;
}

// Runs `f`, turning an exception into a message in *err and a return of -1.
template <typename F>
int guarded(char** err, F f) {
  try {
    f();
    return 0;
  } catch (const c10::Error& e) {
    // Without the C++ stack trace: the message is for users.
    *err = copy_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    *err = copy_message(e.what());
  } catch (...) {
    *err = copy_message("unknown C++ exception");
  }
  return -1;
}

std::vector<at::Tensor> tensors_of(void** ptrs, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    // tch hands out `torch::Tensor*` (torch-sys's `C_tensor`); the vector
    // holds new handles to the same storage, so results land in place.
    out.push_back(*static_cast<at::Tensor*>(ptrs[i]));
  }
  return out;
}

}  // namespace

extern "C" {

// Connects to (or, with is_server, hosts) the TCPStore at host:port, keys
// under `prefix`, and builds a Gloo process group over it. `iface`, when not
// empty, is the network interface Gloo binds to; else `device_host` names the
// address to bind (empty: the machine's hostname).
void* cloze_dist_connect(const char* host, uint16_t port, int is_server,
                         const char* prefix, int rank, int world,
                         int64_t timeout_ms, const char* iface,
                         const char* device_host, char** err) {
  Group* group = nullptr;
  guarded(err, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server != 0;
    opts.numWorkers = std::nullopt;
    opts.waitWorkers = false;
    opts.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    c10::intrusive_ptr<c10d::Store> store =
        c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
    auto pg_opts = c10d::ProcessGroupGloo::Options::create(timeout);
    if (iface != nullptr && iface[0] != '\0') {
      pg_opts->devices.push_back(
          c10d::ProcessGroupGloo::createDeviceForInterface(std::string(iface)));
    } else if (device_host != nullptr && device_host[0] != '\0') {
      pg_opts->devices.push_back(
          c10d::ProcessGroupGloo::createDeviceForHostname(
              std::string(device_host)));
    } else {
      pg_opts->devices.push_back(
          c10d::ProcessGroupGloo::createDefaultDevice());
    }
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world,
                                                          pg_opts);
    group = new Group{store, pg};
  });
  return group;
}

void cloze_dist_free(void* g) { delete static_cast<Group*>(g); }

void cloze_dist_free_message(char* s) { std::free(s); }

// op: 0 sum, 1 max, 2 min.
int cloze_dist_allreduce(void* g, void** tensors, size_t n, int op,
                         char** err) {
  return guarded(err, [&] {
    auto* group = static_cast<Group*>(g);
    auto ts = tensors_of(tensors, n);
    c10d::AllreduceOptions opts;
    opts.reduceOp = op == 1   ? c10d::ReduceOp(c10d::ReduceOp::MAX)
                    : op == 2 ? c10d::ReduceOp(c10d::ReduceOp::MIN)
                              : c10d::ReduceOp(c10d::ReduceOp::SUM);
    // A vector given to Gloo is one tensor per device of this rank (summed
    // together too), so each buffer is its own collective: all are started,
    // then all waited for, which lets Gloo's worker threads overlap them.
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    works.reserve(ts.size());
    for (auto& t : ts) {
      std::vector<at::Tensor> one{t};
      works.push_back(group->pg->allreduce(one, opts));
    }
    for (auto& w : works) {
      w->wait();
    }
  });
}

int cloze_dist_broadcast(void* g, void** tensors, size_t n, int root,
                         char** err) {
  return guarded(err, [&] {
    auto* group = static_cast<Group*>(g);
    auto ts = tensors_of(tensors, n);
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.rootTensor = 0;
    // Gloo broadcasts one tensor per call (one per device in a vector).
    for (auto& t : ts) {
      std::vector<at::Tensor> one{t};
      group->pg->broadcast(one, opts)->wait();
    }
  });
}

int cloze_dist_barrier(void* g, char** err) {
  return guarded(err, [&] {
    auto* group = static_cast<Group*>(g);
    group->pg->barrier()->wait();
  });
}

// Store access for the survivors' check-in after a failed collective.
int cloze_dist_store_add(void* g, const char* key, int64_t value,
                         int64_t* result, char** err) {
  return guarded(err, [&] {
    auto* group = static_cast<Group*>(g);
    *result = group->store->add(std::string(key), value);
  });
}

int cloze_dist_store_check(void* g, const char* key, int* present,
                           char** err) {
  return guarded(err, [&] {
    auto* group = static_cast<Group*>(g);
    *present = group->store->check({std::string(key)}) ? 1 : 0;
  });
}

int cloze_dist_store_set(void* g, const char* key, char** err) {
  return guarded(err, [&] {
    auto* group = static_cast<Group*>(g);
    std::vector<uint8_t> one{1};
    group->store->set(std::string(key), one);
  });
}

}  // extern "C"
