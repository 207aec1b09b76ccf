// The C side of cloze-models' int8 inference: libtorch's dynamic int8 linear
// (fbgemm on x86), which tch does not bind. A weight is quantised once, per
// output channel and symmetrically, and packed by `quantized::linear_prepack`;
// each call quantises its fp32 input per tensor on the fly, multiplies in
// int8 with int32 accumulation and returns fp32 (what PyTorch's
// `quantize_dynamic` does for an nn.Linear). Every C++ exception is caught
// here and handed to Rust as a malloc'd message.
//
// Only the dispatcher and the packed-params object's virtual methods are
// called, so no fbgemm header is needed.

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/native/quantized/PackedParams.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

namespace {

using Packed = c10::intrusive_ptr<LinearPackedParamsBase>;

char* copy_message(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.c_str(), s.size() + 1);
  }
  return out;
}

template <typename F>
int guarded(char** err, F f) {
  try {
    f();
    return 0;
  } catch (const c10::Error& e) {
    *err = copy_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    *err = copy_message(e.what());
  } catch (...) {
    *err = copy_message("unknown C++ exception");
  }
  return -1;
}

// libtorch marks quantised tensors deprecated and says so once per process
// on stderr; cloze documents the kernel's status itself, so the warning is
// swallowed while a weight is quantised.
class Quiet : public c10::WarningHandler {
 public:
  void process(const c10::Warning&) override {}
};

}  // namespace

extern "C" {

// Whether libtorch was built with the fbgemm engine (x86 builds are).
int cloze_int8_available() {
  for (auto e : at::globalContext().supportedQEngines()) {
    if (e == at::QEngine::FBGEMM) {
      return 1;
    }
  }
  return 0;
}

// Quantises `weight` [out, in] (fp32) per output row, symmetric int8 with
// scale max|w_row| / 127, and packs it with `bias` [out] (may be null).
// Returns an owned handle, or null with *err set.
void* cloze_int8_pack(void* weight, void* bias, char** err) {
  Packed* out = nullptr;
  guarded(err, [&] {
    Quiet quiet;
    c10::WarningUtils::WarningHandlerGuard guard(&quiet);
    at::globalContext().setQEngine(at::QEngine::FBGEMM);
    at::NoGradGuard no_grad;
    const at::Tensor& w = *static_cast<at::Tensor*>(weight);
    TORCH_CHECK(w.dim() == 2, "an int8 weight must be [out, in], got ", w.sizes());
    at::Tensor wf = w.to(at::kFloat).contiguous();
    at::Tensor scales =
        wf.abs().amax({1}).clamp_min(1e-12).div(127.0).to(at::kDouble);
    at::Tensor zeros = at::zeros({wf.size(0)}, at::kLong);
    at::Tensor q = at::quantize_per_channel(wf, scales, zeros, 0, at::kQInt8);
    std::optional<at::Tensor> b;
    if (bias != nullptr) {
      b = static_cast<at::Tensor*>(bias)->to(at::kFloat).contiguous();
    }
    static auto prepack =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("quantized::linear_prepack", "")
            .typed<Packed(at::Tensor, std::optional<at::Tensor>)>();
    out = new Packed(prepack.call(q, b));
  });
  return out;
}

void cloze_int8_free(void* packed) { delete static_cast<Packed*>(packed); }

void cloze_int8_free_message(char* s) { std::free(s); }

// y = x W^T + b for fp32 `input` [..., in]: the input is quantised per tensor
// (with the reduced 7-bit range PyTorch's dynamic linear uses on x86, which
// keeps fbgemm's 16-bit intermediate sums from saturating on CPUs without
// VNNI). Returns a new tensor (`torch::Tensor*`, owned by the caller), or
// null with *err set.
void* cloze_int8_linear(void* packed, void* input, char** err) {
  at::Tensor* out = nullptr;
  guarded(err, [&] {
    at::NoGradGuard no_grad;
    const Packed& p = *static_cast<Packed*>(packed);
    at::Tensor x = static_cast<at::Tensor*>(input)->to(at::kFloat).contiguous();
    out = new at::Tensor(p->apply_dynamic(x, /*reduce_range=*/true));
  });
  return out;
}

}  // extern "C"
