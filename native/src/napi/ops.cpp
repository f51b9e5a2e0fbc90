// One binding per backend op: unpack and validate the arguments, then hand the
// device a closure that calls the op (OpArgs::enqueue). No maths here.
#include "ops.h"

#include <climits>
#include <cmath>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bertkit/indices.h"
#include "op_args.h"
#ifdef BERTKIT_WITH_CUDA
#include "../cuda/cuda_switches.h"
#endif

namespace bertkit {

namespace {

// Range check of integer indices (token ids, labels) before any kernel reads
// memory with them: from the host copy of the values when the buffer has one,
// else by the backend in order with its ops (on the CPU stream when the op
// runs, a failure then surfacing at the next read or synchronize with the ops
// queued after it skipped; on CUDA by a download).
void check_indices(OpArgs& args, NativeBuffer* buf, int64_t n, const char* name, int64_t limit, bool allow_ignore,
                   int32_t ignore_index) {
  const Device device = args.device();  // mixed or unusable devices fail first, as for the op itself
  const std::string what = std::string(args.op()) + ": " + name;
  try {
    // The usual case (ids, masks, labels written from JavaScript) is checked here, at once.
    if (const std::vector<int32_t>* host = buf->host_indices()) {
      check_index_range(host->data(), n, limit, allow_ignore, ignore_index, what);
    } else {
      enqueue(device, [=, indices = i32p(buf)](Backend& be) {
        be.check_indices(indices, n, limit, allow_ignore, ignore_index, what);
      });
    }
  } catch (const Error& e) {
    throw Napi::Error::New(args.env(), e.what());
  }
}

Backend::Activation activation_kind(OpArgs& args, size_t index) {
  int32_t k = args.i32(index, "kind");
  if (k < 0 || k >= kActivationCount) args.fail("unknown activation kind " + std::to_string(k));
  return static_cast<Backend::Activation>(k);
}

float probability(OpArgs& args, size_t index, const char* name) {
  float p = args.number(index, name);
  if (!(p >= 0.0f && p < 1.0f)) args.fail(std::string("'") + name + "' must be in [0, 1), got " + std::to_string(p));
  return p;
}

// gemm(transA, transB, m, n, k, alpha, a, b, beta, c, batch, strideA, strideB, strideC)
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  OpArgs a(info, "gemm", 14);
  bool ta = a.flag(0, "transA"), tb = a.flag(1, "transB");
  int64_t m = a.dim(2, "m"), n = a.dim(3, "n"), k = a.dim(4, "k");
  float alpha = a.number(5, "alpha");
  NativeBuffer* A = a.buffer(6, "a", DType::F32);
  NativeBuffer* B = a.buffer(7, "b", DType::F32);
  float beta = a.number(8, "beta");
  NativeBuffer* C = a.buffer(9, "c", DType::F32);
  int64_t batch = a.positive_dim(10, "batch");
  int64_t sa = a.dim(11, "strideA"), sb = a.dim(12, "strideB"), sc = a.dim(13, "strideC");
  int64_t size_a = checked_mul(a, {m, k}), size_b = checked_mul(a, {k, n}), size_c = checked_mul(a, {m, n});
  if (batch > 1 && sc < size_c) a.fail("strideC " + std::to_string(sc) + " makes output matrices overlap");
  std::string shape_a = ta ? shape_str({k, m}) : shape_str({m, k});
  std::string shape_b = tb ? shape_str({n, k}) : shape_str({k, n});
  a.need(A, "a", checked_mul(a, {batch - 1, sa}) + size_a, "batch " + std::to_string(batch) + " x " + shape_a);
  a.need(B, "b", checked_mul(a, {batch - 1, sb}) + size_b, "batch " + std::to_string(batch) + " x " + shape_b);
  a.need(C, "c", checked_mul(a, {batch - 1, sc}) + size_c, "batch " + std::to_string(batch) + " x " + shape_str({m, n}));
  a.distinct(C, "c", A, "a");
  a.distinct(C, "c", B, "b");
  return a.enqueue([=, A = f32(A), B = f32(B), C = f32(C)](Backend& be) {
    be.gemm(ta, tb, m, n, k, alpha, A, B, beta, C, batch, sa, sb, sc);
  });
}

// gemmMixed(transA, transB, m, n, k, alpha, a, b, beta, c, batch, strideA, strideB, strideC[, halfDtype[, bias[, streamC]]])
// a and b: float16 or bfloat16, the same dtype; c: float32. On the CPU either
// operand may instead be float32, rounded to the half dtype as it is read;
// halfDtype (a dtype code) names that dtype, needed when both are float32
// (undefined or null: none). bias (float32, at least n values; undefined or
// null: none) is added to every row of every C after the product. streamC:
// C is not read again soon, write it around the caches (Backend::gemm_mixed).
Napi::Value GemmMixed(const Napi::CallbackInfo& info) {
  const bool named = info.Length() >= 15 && !info[14].IsUndefined() && !info[14].IsNull();
  OpArgs a(info, "gemmMixed", 14, 17);
  bool ta = a.flag(0, "transA"), tb = a.flag(1, "transB");
  int64_t m = a.dim(2, "m"), n = a.dim(3, "n"), k = a.dim(4, "k");
  float alpha = a.number(5, "alpha");
  if (!NativeBuffer::Is(info[6])) a.fail("argument 'a' must be a NativeBuffer");
  if (!NativeBuffer::Is(info[7])) a.fail("argument 'b' must be a NativeBuffer");
  const DType da = NativeBuffer::Unwrap(info[6])->dtype(), db = NativeBuffer::Unwrap(info[7])->dtype();
  auto is_half = [](DType d) { return d == DType::F16 || d == DType::BF16; };
  for (auto [d, name] : {std::pair<DType, const char*>{da, "a"}, {db, "b"}}) {
    if (!is_half(d) && d != DType::F32) {
      a.fail(std::string("tensor '") + name + "' has dtype " + dtype_name(d) + ", expected float16, bfloat16 or float32");
    }
  }
  DType ab = is_half(da) ? da : db;
  if (named) {
    const int32_t code = a.i32(14, "halfDtype");
    if (code != static_cast<int>(DType::F16) && code != static_cast<int>(DType::BF16)) {
      a.fail("halfDtype must be the code of float16 or bfloat16, got " + std::to_string(code));
    }
    const DType want = static_cast<DType>(code);
    if (is_half(ab) && ab != want) {
      a.fail(std::string("halfDtype is ") + dtype_name(want) + " but the operands are " + dtype_name(ab));
    }
    ab = want;
  } else if (!is_half(ab)) {
    a.fail("a and b are both float32: pass halfDtype (float16 or bfloat16) to say how to round them");
  }
  const bool fa = da == DType::F32, fb = db == DType::F32;
  NativeBuffer* A = a.buffer(6, "a", fa ? DType::F32 : ab);
  NativeBuffer* B = a.buffer(7, "b", fb ? DType::F32 : ab);
  float beta = a.number(8, "beta");
  NativeBuffer* C = a.buffer(9, "c", DType::F32);
  int64_t batch = a.positive_dim(10, "batch");
  int64_t sa = a.dim(11, "strideA"), sb = a.dim(12, "strideB"), sc = a.dim(13, "strideC");
  NativeBuffer* bias = info.Length() >= 16 ? a.buffer(15, "bias", DType::F32, true) : nullptr;
  const bool stream_c = a.optional_flag(16, "streamC");
  int64_t size_a = checked_mul(a, {m, k}), size_b = checked_mul(a, {k, n}), size_c = checked_mul(a, {m, n});
  if (batch > 1 && sc < size_c) a.fail("strideC " + std::to_string(sc) + " makes output matrices overlap");
  std::string shape_a = ta ? shape_str({k, m}) : shape_str({m, k});
  std::string shape_b = tb ? shape_str({n, k}) : shape_str({k, n});
  a.need(A, "a", checked_mul(a, {batch - 1, sa}) + size_a, "batch " + std::to_string(batch) + " x " + shape_a);
  a.need(B, "b", checked_mul(a, {batch - 1, sb}) + size_b, "batch " + std::to_string(batch) + " x " + shape_b);
  a.need(C, "c", checked_mul(a, {batch - 1, sc}) + size_c, "batch " + std::to_string(batch) + " x " + shape_str({m, n}));
  a.need(bias, "bias", n, shape_str({n}));
  a.distinct(C, "c", bias, "bias");
  if (fa || fb) {
    a.distinct(C, "c", A, "a");
    a.distinct(C, "c", B, "b");
    if (a.device() != Device::CPU) a.fail("float32 operands are read only on the CPU; cast them to the half dtype first");
  }
  return a.enqueue([=, C = f32(C), A = A->data(), B = B->data(), bias = bias ? f32(bias) : nullptr](Backend& be) {
    be.gemm_mixed(ta, tb, m, n, k, alpha, A, B, ab, beta, C, batch, sa, sb, sc, fa, fb, bias, stream_c);
  });
}

// setAllowTf32(device, flag): torch.backends.cuda.matmul.allow_tf32 for the
// device's fp32 products. The CPU has no TF32: its products stay fp32 either way.
Napi::Value SetAllowTf32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsNumber() || !info[1].IsBoolean()) {
    throw Napi::TypeError::New(env, "setAllowTf32: expected (device: number, flag: boolean)");
  }
  int device = info[0].As<Napi::Number>().Int32Value();
  bool allow = info[1].As<Napi::Boolean>().Value();
  if (device != static_cast<int>(Device::CPU) && device != static_cast<int>(Device::CUDA)) {
    throw Napi::RangeError::New(env, "setAllowTf32: unknown device " + std::to_string(device));
  }
  if (device == static_cast<int>(Device::CPU)) return env.Undefined();
  try {
#ifdef BERTKIT_WITH_CUDA
    cuda_set_allow_tf32(allow);
#else
    (void)allow;
    backend_for(Device::CUDA);  // throws: not compiled with CUDA
#endif
  } catch (const Error& e) {
    throw Napi::Error::New(env, std::string("setAllowTf32: ") + e.what());
  }
  return env.Undefined();
}

// fill(x, n, value)
Napi::Value Fill(const Napi::CallbackInfo& info) {
  OpArgs a(info, "fill", 3);
  NativeBuffer* x = a.buffer(0, "x", DType::F32);
  int64_t n = a.dim(1, "n");
  float value = static_cast<float>(info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 0);
  if (!info[2].IsNumber()) a.fail("'value' must be a number");
  a.need(x, "x", n, shape_str({n}));
  return a.enqueue([=, x = f32(x)](Backend& be) { be.fill(x, n, value); });
}

// axpby(n, alpha, x, beta, y):  y = alpha * x + beta * y
Napi::Value Axpby(const Napi::CallbackInfo& info) {
  OpArgs a(info, "axpby", 5);
  int64_t n = a.dim(0, "n");
  float alpha = a.number(1, "alpha");
  NativeBuffer* x = a.buffer(2, "x", DType::F32);
  float beta = a.number(3, "beta");
  NativeBuffer* y = a.buffer(4, "y", DType::F32);
  a.need(x, "x", n, shape_str({n}));
  a.need(y, "y", n, shape_str({n}));
  return a.enqueue([=, x = f32(x), y = f32(y)](Backend& be) { be.axpby(n, alpha, x, beta, y); });
}

// mul(n, a, b, out)
Napi::Value Mul(const Napi::CallbackInfo& info) {
  OpArgs a(info, "mul", 4);
  int64_t n = a.dim(0, "n");
  NativeBuffer* x = a.buffer(1, "a", DType::F32);
  NativeBuffer* y = a.buffer(2, "b", DType::F32);
  NativeBuffer* out = a.buffer(3, "out", DType::F32);
  a.need(x, "a", n, shape_str({n}));
  a.need(y, "b", n, shape_str({n}));
  a.need(out, "out", n, shape_str({n}));
  return a.enqueue([=, x = f32(x), y = f32(y), out = f32(out)](Backend& be) { be.mul(n, x, y, out); });
}

// addBiasRows(rows, cols, bias, y)
Napi::Value AddBiasRows(const Napi::CallbackInfo& info) {
  OpArgs a(info, "addBiasRows", 4);
  int64_t rows = a.dim(0, "rows"), cols = a.dim(1, "cols");
  NativeBuffer* bias = a.buffer(2, "bias", DType::F32);
  NativeBuffer* y = a.buffer(3, "y", DType::F32);
  a.need(bias, "bias", cols, shape_str({cols}));
  a.need(y, "y", checked_mul(a, {rows, cols}), shape_str({rows, cols}));
  a.distinct(y, "y", bias, "bias");
  return a.enqueue([=, bias = f32(bias), y = f32(y)](Backend& be) { be.add_bias_rows(rows, cols, bias, y); });
}

// sumRows(rows, cols, x, out, write?):  out[c] += sum_r x[r, c]; with write, out
// holds nothing yet and is written (Backend::sum_rows_write).
Napi::Value SumRows(const Napi::CallbackInfo& info) {
  OpArgs a(info, "sumRows", 4, 5);
  const bool write = a.optional_flag(4, "write");
  int64_t rows = a.dim(0, "rows"), cols = a.dim(1, "cols");
  NativeBuffer* x = a.buffer(2, "x", DType::F32);
  NativeBuffer* out = a.buffer(3, "out", DType::F32);
  a.need(x, "x", checked_mul(a, {rows, cols}), shape_str({rows, cols}));
  a.need(out, "out", cols, shape_str({cols}));
  a.distinct(out, "out", x, "x");
  return a.enqueue([=, x = f32(x), out = f32(out)](Backend& be) {
    if (write) be.sum_rows_write(rows, cols, x, out);
    else be.sum_rows(rows, cols, x, out);
  });
}

// sum(n, x, out) / sumSquares(n, x, out):  out[0] += ...
Napi::Value SumImpl(const Napi::CallbackInfo& info, const char* op, bool squares) {
  OpArgs a(info, op, 3);
  int64_t n = a.dim(0, "n");
  NativeBuffer* x = a.buffer(1, "x", DType::F32);
  NativeBuffer* out = a.buffer(2, "out", DType::F32);
  a.need(x, "x", n, shape_str({n}));
  a.need(out, "out", 1, shape_str({1}));
  a.distinct(out, "out", x, "x");
  return a.enqueue([=, x = f32(x), out = f32(out)](Backend& be) {
    if (squares) be.sum_squares(n, x, out);
    else be.sum(n, x, out);
  });
}
Napi::Value Sum(const Napi::CallbackInfo& info) { return SumImpl(info, "sum", false); }
Napi::Value SumSquares(const Napi::CallbackInfo& info) { return SumImpl(info, "sumSquares", true); }

// cast(n, src, dst): dtypes are taken from the buffers.
Napi::Value Cast(const Napi::CallbackInfo& info) {
  OpArgs a(info, "cast", 3);
  int64_t n = a.dim(0, "n");
  if (!NativeBuffer::Is(info[1]) || !NativeBuffer::Is(info[2])) a.fail("'src' and 'dst' must be NativeBuffers");
  DType sd = NativeBuffer::Unwrap(info[1])->dtype(), dd = NativeBuffer::Unwrap(info[2])->dtype();
  NativeBuffer* src = a.buffer(1, "src", sd);
  NativeBuffer* dst = a.buffer(2, "dst", dd);
  bool supported = (sd == DType::F32 && (dd == DType::F16 || dd == DType::BF16 || dd == DType::F32)) ||
                   ((sd == DType::F16 || sd == DType::BF16 || sd == DType::I32) && dd == DType::F32);
  if (!supported) a.fail(std::string("cannot cast ") + dtype_name(sd) + " to " + dtype_name(dd));
  a.need(src, "src", n, shape_str({n}));
  a.need(dst, "dst", n, shape_str({n}));
  a.distinct(dst, "dst", src, "src");
  return a.enqueue([=, src = src->data(), dst = dst->data()](Backend& be) { be.cast(n, sd, src, dd, dst); });
}

// castSumRows(rows, cols, x, dst, sums[, write]): dst = x cast to dst's dtype
// (float16 / bfloat16), sums += (or = when write) the column sums of x.
Napi::Value CastSumRows(const Napi::CallbackInfo& info) {
  OpArgs a(info, "castSumRows", 5, 6);
  const bool write = a.optional_flag(5, "write");
  int64_t rows = a.dim(0, "rows"), cols = a.dim(1, "cols");
  NativeBuffer* x = a.buffer(2, "x", DType::F32);
  if (!NativeBuffer::Is(info[3])) a.fail("'dst' must be a NativeBuffer");
  const DType dd = NativeBuffer::Unwrap(info[3])->dtype();
  if (dd != DType::F16 && dd != DType::BF16) a.fail(std::string("'dst' must be float16 or bfloat16, got ") + dtype_name(dd));
  NativeBuffer* dst = a.buffer(3, "dst", dd);
  NativeBuffer* sums = a.buffer(4, "sums", DType::F32);
  const int64_t n = checked_mul(a, {rows, cols});
  a.need(x, "x", n, shape_str({rows, cols}));
  a.need(dst, "dst", n, shape_str({rows, cols}));
  a.need(sums, "sums", cols, shape_str({cols}));
  a.distinct(dst, "dst", x, "x");
  a.distinct(sums, "sums", x, "x");
  a.distinct(sums, "sums", dst, "dst");
  return a.enqueue([=, x = f32(x), dst = dst->data(), sums = f32(sums)](Backend& be) {
    be.cast_sum_rows(rows, cols, x, dd, dst, sums, write);
  });
}

// sliceRowsForward(batch, srcRows, cols, start, count, src, dst)
// sliceRowsBackward(batch, srcRows, cols, start, count, ddst, dsrc)
Napi::Value SliceRowsImpl(const Napi::CallbackInfo& info, const char* op, bool backward) {
  OpArgs a(info, op, 7);
  int64_t batch = a.dim(0, "batch"), src_rows = a.dim(1, "srcRows"), cols = a.dim(2, "cols");
  int64_t start = a.dim(3, "start"), count = a.dim(4, "count");
  if (start + count > src_rows) {
    a.fail("rows [" + std::to_string(start) + ", " + std::to_string(start + count) +
           ") exceed the " + std::to_string(src_rows) + " rows of the source");
  }
  NativeBuffer* x = a.buffer(5, backward ? "ddst" : "src", DType::F32);
  NativeBuffer* y = a.buffer(6, backward ? "dsrc" : "dst", DType::F32);
  int64_t src_n = checked_mul(a, {batch, src_rows, cols}), dst_n = checked_mul(a, {batch, count, cols});
  a.need(x, backward ? "ddst" : "src", backward ? dst_n : src_n,
         backward ? shape_str({batch, count, cols}) : shape_str({batch, src_rows, cols}));
  a.need(y, backward ? "dsrc" : "dst", backward ? src_n : dst_n,
         backward ? shape_str({batch, src_rows, cols}) : shape_str({batch, count, cols}));
  a.distinct(y, "out", x, "in");
  return a.enqueue([=, x = f32(x), y = f32(y)](Backend& be) {
    if (backward) be.slice_rows_backward(batch, src_rows, cols, start, count, x, y);
    else be.slice_rows_forward(batch, src_rows, cols, start, count, x, y);
  });
}
Napi::Value SliceRowsForward(const Napi::CallbackInfo& info) { return SliceRowsImpl(info, "sliceRowsForward", false); }
Napi::Value SliceRowsBackward(const Napi::CallbackInfo& info) { return SliceRowsImpl(info, "sliceRowsBackward", true); }

// activationForward(kind, n, x, y)
// An optional trailing float16 / bfloat16 buffer (null or absent: none).
NativeBuffer* optional_half(OpArgs& a, const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (info.Length() <= index || info[index].IsNull() || info[index].IsUndefined()) return nullptr;
  if (!NativeBuffer::Is(info[index])) a.fail(std::string("'") + name + "' must be a NativeBuffer or null");
  const DType dt = NativeBuffer::Unwrap(info[index])->dtype();
  if (dt != DType::F16 && dt != DType::BF16) {
    a.fail(std::string("'") + name + "' must be float16 or bfloat16, got " + dtype_name(dt));
  }
  return a.buffer(index, name, dt);
}

// activationForward(kind, n, x, y[, half]): half, when given, gets y cast to its dtype.
Napi::Value ActivationForward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "activationForward", 4, 5);
  Backend::Activation kind = activation_kind(a, 0);
  int64_t n = a.dim(1, "n");
  NativeBuffer* x = a.buffer(2, "x", DType::F32);
  NativeBuffer* y = a.buffer(3, "y", DType::F32);
  NativeBuffer* half = optional_half(a, info, 4, "half");
  a.need(x, "x", n, shape_str({n}));
  a.need(y, "y", n, shape_str({n}));
  if (!half) return a.enqueue([=, x = f32(x), y = f32(y)](Backend& be) { be.activation_forward(kind, n, x, y); });
  a.need(half, "half", n, shape_str({n}));
  a.distinct(half, "half", x, "x");
  a.distinct(half, "half", y, "y");
  const DType hd = half->dtype();
  return a.enqueue([=, x = f32(x), y = f32(y), half = half->data()](Backend& be) {
    be.activation_forward_half(kind, n, x, y, hd, half);
  });
}

// activationBackward(kind, n, x, dy, dx, write?): with write, dx holds nothing
// yet and is written (Backend::activation_backward_write).
Napi::Value ActivationBackward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "activationBackward", 5, 6);
  const bool write = a.optional_flag(5, "write");
  Backend::Activation kind = activation_kind(a, 0);
  int64_t n = a.dim(1, "n");
  NativeBuffer* x = a.buffer(2, "x", DType::F32);
  NativeBuffer* dy = a.buffer(3, "dy", DType::F32);
  NativeBuffer* dx = a.buffer(4, "dx", DType::F32);
  a.need(x, "x", n, shape_str({n}));
  a.need(dy, "dy", n, shape_str({n}));
  a.need(dx, "dx", n, shape_str({n}));
  a.distinct(dx, "dx", x, "x");
  return a.enqueue([=, x = f32(x), dy = f32(dy), dx = f32(dx)](Backend& be) {
    if (write) be.activation_backward_write(kind, n, x, dy, dx);
    else be.activation_backward(kind, n, x, dy, dx);
  });
}

// activationBackwardCastSumRows(kind, rows, cols, h, dy, scratch, dst, sums|null[, write]):
// dh = dy * f'(h) as activationBackward writes it, cast into dst (float16 /
// bfloat16), its column sums added to (write: written into) sums; scratch is
// a float32 [rows, cols] buffer a backend may keep dh in (the CPU does not).
Napi::Value ActivationBackwardCastSumRows(const Napi::CallbackInfo& info) {
  OpArgs a(info, "activationBackwardCastSumRows", 8, 9);
  const bool write = a.optional_flag(8, "write");
  Backend::Activation kind = activation_kind(a, 0);
  int64_t rows = a.dim(1, "rows"), cols = a.dim(2, "cols");
  NativeBuffer* h = a.buffer(3, "h", DType::F32);
  NativeBuffer* dy = a.buffer(4, "dy", DType::F32);
  NativeBuffer* scratch = a.buffer(5, "scratch", DType::F32);
  NativeBuffer* dst = optional_half(a, info, 6, "dst");
  if (!dst) a.fail("'dst' must be a float16 or bfloat16 NativeBuffer");
  NativeBuffer* sums = a.buffer(7, "sums", DType::F32, true);
  const int64_t n = checked_mul(a, {rows, cols});
  const std::string shape = shape_str({rows, cols});
  a.need(h, "h", n, shape);
  a.need(dy, "dy", n, shape);
  a.need(scratch, "scratch", n, shape);
  a.need(dst, "dst", n, shape);
  a.need(sums, "sums", cols, shape_str({cols}));
  a.distinct(scratch, "scratch", h, "h");
  a.distinct(scratch, "scratch", dy, "dy");
  a.distinct(dst, "dst", h, "h");
  a.distinct(dst, "dst", dy, "dy");
  a.distinct(dst, "dst", scratch, "scratch");
  if (sums) {
    a.distinct(sums, "sums", h, "h");
    a.distinct(sums, "sums", dy, "dy");
    a.distinct(sums, "sums", scratch, "scratch");
    a.distinct(sums, "sums", dst, "dst");
  }
  const DType dd = dst->dtype();
  return a.enqueue([=, h = f32(h), dy = f32(dy), scratch = f32(scratch), dst = dst->data(), sums = f32(sums)](Backend& be) {
    be.activation_backward_cast_sum_rows(kind, rows, cols, h, dy, scratch, dd, dst, sums, write);
  });
}

// dropoutForward(n, p, seed, offset, x, y) / dropoutBackward(n, p, seed, offset, dy, dx)
Napi::Value DropoutImpl(const Napi::CallbackInfo& info, const char* op, bool backward) {
  OpArgs a(info, op, 6);
  int64_t n = a.dim(0, "n");
  float p = probability(a, 1, "p");
  uint64_t seed = a.u64(2, "seed"), offset = a.u64(3, "offset");
  NativeBuffer* x = a.buffer(4, backward ? "dy" : "x", DType::F32);
  NativeBuffer* y = a.buffer(5, backward ? "dx" : "y", DType::F32);
  a.need(x, backward ? "dy" : "x", n, shape_str({n}));
  a.need(y, backward ? "dx" : "y", n, shape_str({n}));
  return a.enqueue([=, x = f32(x), y = f32(y)](Backend& be) {
    if (backward) be.dropout_backward(n, p, seed, offset, x, y);
    else be.dropout_forward(n, p, seed, offset, x, y);
  });
}
Napi::Value DropoutForward(const Napi::CallbackInfo& info) { return DropoutImpl(info, "dropoutForward", false); }
Napi::Value DropoutBackward(const Napi::CallbackInfo& info) { return DropoutImpl(info, "dropoutBackward", true); }

// layernormForward(rows, cols, eps, x, residual|null, gamma, beta, y, sumOut|null, mean, rstd[, half]):
// half, when given, gets y cast to its dtype (float16 / bfloat16).
Napi::Value LayerNormForward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "layernormForward", 11, 12);
  int64_t rows = a.dim(0, "rows"), cols = a.positive_dim(1, "cols");
  float eps = a.number(2, "eps");
  if (!(eps > 0)) a.fail("'eps' must be positive");
  NativeBuffer* x = a.buffer(3, "x", DType::F32);
  NativeBuffer* residual = a.buffer(4, "residual", DType::F32, true);
  NativeBuffer* gamma = a.buffer(5, "gamma", DType::F32);
  NativeBuffer* beta = a.buffer(6, "beta", DType::F32);
  NativeBuffer* y = a.buffer(7, "y", DType::F32);
  NativeBuffer* sum_out = a.buffer(8, "sumOut", DType::F32, true);
  NativeBuffer* mean = a.buffer(9, "mean", DType::F32);
  NativeBuffer* rstd = a.buffer(10, "rstd", DType::F32);
  int64_t numel = checked_mul(a, {rows, cols});
  std::string shape = shape_str({rows, cols});
  a.need(x, "x", numel, shape);
  a.need(residual, "residual", numel, shape);
  a.need(gamma, "gamma", cols, shape_str({cols}));
  a.need(beta, "beta", cols, shape_str({cols}));
  a.need(y, "y", numel, shape);
  if (residual && !sum_out) a.fail("'sumOut' is required when 'residual' is given");
  a.need(sum_out, "sumOut", numel, shape);
  a.need(mean, "mean", rows, shape_str({rows}));
  a.need(rstd, "rstd", rows, shape_str({rows}));
  NativeBuffer* half = optional_half(a, info, 11, "half");
  if (half) {
    a.need(half, "half", numel, shape);
    a.distinct(half, "half", x, "x");
    a.distinct(half, "half", y, "y");
  }
  const DType hd = half ? half->dtype() : DType::F32;
  return a.enqueue([=, x = f32(x), residual = f32(residual), gamma = f32(gamma), beta = f32(beta), y = f32(y),
                    sum_out = f32(sum_out), mean = f32(mean), rstd = f32(rstd),
                    half = half ? half->data() : nullptr](Backend& be) {
    float* sums = residual ? sum_out : nullptr;
    if (half) be.layernorm_forward_half(rows, cols, eps, x, residual, gamma, beta, y, sums, mean, rstd, hd, half);
    else be.layernorm_forward(rows, cols, eps, x, residual, gamma, beta, y, sums, mean, rstd);
  });
}

// layernormBackward(rows, cols, x, gamma, mean, rstd, dy, dx|null, dgamma|null, dbeta|null, writeDgamma?,
//                   writeDbeta?, writeDx?, dxCopy|null?) (write*: that gradient holds nothing yet and is
//                   written, Backend::layernorm_backward_write / _dx_write; dxCopy: also written with dx)
Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "layernormBackward", 10, 14);
  const bool write_dgamma = a.optional_flag(10, "writeDgamma"), write_dbeta = a.optional_flag(11, "writeDbeta");
  const bool write_dx = a.optional_flag(12, "writeDx");
  int64_t rows = a.dim(0, "rows"), cols = a.positive_dim(1, "cols");
  NativeBuffer* x = a.buffer(2, "x", DType::F32);
  NativeBuffer* gamma = a.buffer(3, "gamma", DType::F32);
  NativeBuffer* mean = a.buffer(4, "mean", DType::F32);
  NativeBuffer* rstd = a.buffer(5, "rstd", DType::F32);
  NativeBuffer* dy = a.buffer(6, "dy", DType::F32);
  NativeBuffer* dx = a.buffer(7, "dx", DType::F32, true);
  NativeBuffer* dgamma = a.buffer(8, "dgamma", DType::F32, true);
  NativeBuffer* dbeta = a.buffer(9, "dbeta", DType::F32, true);
  int64_t numel = checked_mul(a, {rows, cols});
  std::string shape = shape_str({rows, cols});
  a.need(x, "x", numel, shape);
  a.need(gamma, "gamma", cols, shape_str({cols}));
  a.need(mean, "mean", rows, shape_str({rows}));
  a.need(rstd, "rstd", rows, shape_str({rows}));
  a.need(dy, "dy", numel, shape);
  a.need(dx, "dx", numel, shape);
  a.need(dgamma, "dgamma", cols, shape_str({cols}));
  a.need(dbeta, "dbeta", cols, shape_str({cols}));
  a.distinct(dx, "dx", dy, "dy");
  a.distinct(dx, "dx", x, "x");
  NativeBuffer* dx_copy = info.Length() > 13 ? a.buffer(13, "dxCopy", DType::F32, true) : nullptr;
  if (dx_copy) {
    if (!dx || !write_dx) a.fail("'dxCopy' needs a 'dx' that is written (writeDx true)");
    a.need(dx_copy, "dxCopy", numel, shape);
    a.distinct(dx_copy, "dxCopy", dx, "dx");
    a.distinct(dx_copy, "dxCopy", dy, "dy");
    a.distinct(dx_copy, "dxCopy", x, "x");
  }
  return a.enqueue([=, x = f32(x), gamma = f32(gamma), mean = f32(mean), rstd = f32(rstd), dy = f32(dy), dx = f32(dx),
                    dx_copy = f32(dx_copy), dgamma = f32(dgamma), dbeta = f32(dbeta)](Backend& be) {
    if (write_dx && dx) {
      be.layernorm_backward_dx_write(rows, cols, x, gamma, mean, rstd, dy, dx, dx_copy, dgamma, dbeta, write_dgamma,
                                     write_dbeta);
    } else if (write_dgamma || write_dbeta) {
      be.layernorm_backward_write(rows, cols, x, gamma, mean, rstd, dy, dx, dgamma, dbeta, write_dgamma, write_dbeta);
    } else {
      be.layernorm_backward(rows, cols, x, gamma, mean, rstd, dy, dx, dgamma, dbeta);
    }
  });
}

// embeddingForward(n, dim, vocab, ids, table, out)
Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "embeddingForward", 6);
  int64_t n = a.dim(0, "n"), dim = a.dim(1, "dim"), vocab = a.dim(2, "vocab");
  NativeBuffer* ids = a.buffer(3, "ids", DType::I32);
  NativeBuffer* table = a.buffer(4, "table", DType::F32);
  NativeBuffer* out = a.buffer(5, "out", DType::F32);
  a.need(ids, "ids", n, shape_str({n}));
  a.need(table, "table", checked_mul(a, {vocab, dim}), shape_str({vocab, dim}));
  a.need(out, "out", checked_mul(a, {n, dim}), shape_str({n, dim}));
  check_indices(a, ids, n, "ids", vocab, false, 0);
  return a.enqueue([=, table = f32(table), out = f32(out), ids = i32p(ids)](Backend& be) {
    be.embedding_forward(n, dim, ids, table, out);
  });
}

// The arguments embeddingBackward and embeddingBackwardRows share:
// (n, dim, vocab, ids, dout, dtable, paddingIdx), checked.
struct EmbeddingGrad {
  int64_t n, dim, vocab, padding_idx;
  NativeBuffer *ids, *dout, *dtable;
};
EmbeddingGrad embedding_grad_args(OpArgs& a) {
  EmbeddingGrad e;
  e.n = a.dim(0, "n");
  e.dim = a.dim(1, "dim");
  e.vocab = a.dim(2, "vocab");
  e.padding_idx = a.i32(6, "paddingIdx");
  if (e.padding_idx < -1 || e.padding_idx >= e.vocab) {
    a.fail("'paddingIdx' " + std::to_string(e.padding_idx) + " is outside [-1, " + std::to_string(e.vocab) + ")");
  }
  e.ids = a.buffer(3, "ids", DType::I32);
  e.dout = a.buffer(4, "dout", DType::F32);
  e.dtable = a.buffer(5, "dtable", DType::F32);
  a.need(e.ids, "ids", e.n, shape_str({e.n}));
  a.need(e.dout, "dout", checked_mul(a, {e.n, e.dim}), shape_str({e.n, e.dim}));
  a.need(e.dtable, "dtable", checked_mul(a, {e.vocab, e.dim}), shape_str({e.vocab, e.dim}));
  a.distinct(e.dtable, "dtable", e.dout, "dout");
  return e;
}

// embeddingBackward(n, dim, vocab, ids, dout, dtable, paddingIdx)  (paddingIdx -1: none)
Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "embeddingBackward", 7);
  const EmbeddingGrad e = embedding_grad_args(a);
  check_indices(a, e.ids, e.n, "ids", e.vocab, false, 0);
  return a.enqueue([=, n = e.n, dim = e.dim, vocab = e.vocab, padding_idx = e.padding_idx, dout = f32(e.dout),
                    dtable = f32(e.dtable), ids = i32p(e.ids)](Backend& be) {
    be.embedding_backward(n, dim, vocab, padding_idx, ids, dout, dtable);
  });
}

// embeddingBackwardRows(n, dim, vocab, ids, dout, dtable, paddingIdx, rowMarks, marksFresh)
Napi::Value EmbeddingBackwardRows(const Napi::CallbackInfo& info) {
  OpArgs a(info, "embeddingBackwardRows", 9);
  const EmbeddingGrad e = embedding_grad_args(a);
  NativeBuffer* marks = a.buffer(7, "rowMarks", DType::I32);
  bool fresh = a.flag(8, "marksFresh");
  a.need(marks, "rowMarks", e.vocab, shape_str({e.vocab}));
  a.distinct(marks, "rowMarks", e.ids, "ids");
  check_indices(a, e.ids, e.n, "ids", e.vocab, false, 0);
  return a.enqueue([=, n = e.n, dim = e.dim, vocab = e.vocab, padding_idx = e.padding_idx, dout = f32(e.dout),
                    dtable = f32(e.dtable), ids = i32p(e.ids), marks = static_cast<int32_t*>(marks->data())](Backend& be) {
    be.embedding_backward_rows(n, dim, vocab, padding_idx, ids, dout, dtable, marks, fresh);
  });
}

// zeroUnmarkedRows(rows, width, rowMarks, x)
Napi::Value ZeroUnmarkedRows(const Napi::CallbackInfo& info) {
  OpArgs a(info, "zeroUnmarkedRows", 4);
  int64_t rows = a.dim(0, "rows"), width = a.dim(1, "width");
  NativeBuffer* marks = a.buffer(2, "rowMarks", DType::I32);
  NativeBuffer* x = a.buffer(3, "x", DType::F32);
  a.need(marks, "rowMarks", rows, shape_str({rows}));
  a.need(x, "x", checked_mul(a, {rows, width}), shape_str({rows, width}));
  return a.enqueue([=, marks = i32p(marks), x = f32(x)](Backend& be) { be.zero_unmarked_rows(rows, width, marks, x); });
}

// The eight arguments every attention binding starts with, validated, and the
// size of q, k, v and out ([batch, seq, heads * head_dim]) they imply.
struct AttentionDims {
  int64_t batch, seq, heads, head_dim;
  float scale, p;
  uint64_t seed, offset;
};
struct AttentionArgs : AttentionDims {
  int64_t numel;
  std::string shape;
};

AttentionArgs attention_args(OpArgs& a) {
  AttentionArgs g;
  g.batch = a.dim(0, "batch");
  g.seq = a.dim(1, "seq");
  g.heads = a.positive_dim(2, "heads");
  g.head_dim = a.positive_dim(3, "headDim");
  g.scale = a.number(4, "scale");
  g.p = probability(a, 5, "dropoutP");
  g.seed = a.u64(6, "seed");
  g.offset = a.u64(7, "offset");
  int64_t hidden = checked_mul(a, {g.heads, g.head_dim});
  g.numel = checked_mul(a, {g.batch, g.seq, hidden});
  g.shape = shape_str({g.batch, g.seq, hidden});
  return g;
}

// attentionForward(batch, seq, heads, headDim, scale, dropoutP, seed, offset, q, k, v, mask, probs, out)
Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "attentionForward", 14);
  const AttentionArgs g = attention_args(a);
  NativeBuffer* q = a.buffer(8, "q", DType::F32);
  NativeBuffer* k = a.buffer(9, "k", DType::F32);
  NativeBuffer* v = a.buffer(10, "v", DType::F32);
  NativeBuffer* mask = a.buffer(11, "mask", DType::I32);
  NativeBuffer* probs = a.buffer(12, "probs", DType::F32);
  NativeBuffer* out = a.buffer(13, "out", DType::F32);
  a.need(q, "q", g.numel, g.shape);
  a.need(k, "k", g.numel, g.shape);
  a.need(v, "v", g.numel, g.shape);
  a.need(mask, "mask", checked_mul(a, {g.batch, g.seq}), shape_str({g.batch, g.seq}));
  a.need(probs, "probs", checked_mul(a, {g.batch, g.heads, g.seq, g.seq}), shape_str({g.batch, g.heads, g.seq, g.seq}));
  a.need(out, "out", g.numel, g.shape);
  a.distinct(out, "out", q, "q");
  a.distinct(out, "out", k, "k");
  a.distinct(out, "out", v, "v");
  return a.enqueue([=, g = AttentionDims(g), q = f32(q), k = f32(k), v = f32(v), probs = f32(probs), out = f32(out),
                    mask = i32p(mask)](Backend& be) {
    be.attention_forward(g.batch, g.seq, g.heads, g.head_dim, g.scale, g.p, g.seed, g.offset, q, k, v, mask, probs,
                         out);
  });
}

// attentionBackward(batch, seq, heads, headDim, scale, dropoutP, seed, offset, q, k, v, probs, dout, dq|null, dk|null, dv|null)
Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "attentionBackward", 16);
  const AttentionArgs g = attention_args(a);
  NativeBuffer* q = a.buffer(8, "q", DType::F32);
  NativeBuffer* k = a.buffer(9, "k", DType::F32);
  NativeBuffer* v = a.buffer(10, "v", DType::F32);
  NativeBuffer* probs = a.buffer(11, "probs", DType::F32);
  NativeBuffer* dout = a.buffer(12, "dout", DType::F32);
  NativeBuffer* dq = a.buffer(13, "dq", DType::F32, true);
  NativeBuffer* dk = a.buffer(14, "dk", DType::F32, true);
  NativeBuffer* dv = a.buffer(15, "dv", DType::F32, true);
  for (auto [buf, name] : {std::pair{q, "q"}, {k, "k"}, {v, "v"}, {dout, "dout"}, {dq, "dq"}, {dk, "dk"}, {dv, "dv"}}) {
    a.need(buf, name, g.numel, g.shape);
  }
  a.need(probs, "probs", checked_mul(a, {g.batch, g.heads, g.seq, g.seq}), shape_str({g.batch, g.heads, g.seq, g.seq}));
  for (auto [out, oname] : {std::pair{dq, "dq"}, {dk, "dk"}, {dv, "dv"}}) {
    for (auto [in, iname] : {std::pair{q, "q"}, {k, "k"}, {v, "v"}, {dout, "dout"}, {probs, "probs"}}) {
      a.distinct(out, oname, in, iname);
    }
  }
  return a.enqueue([=, g = AttentionDims(g), q = f32(q), k = f32(k), v = f32(v), probs = f32(probs), dout = f32(dout),
                    dq = f32(dq), dk = f32(dk), dv = f32(dv)](Backend& be) {
    be.attention_backward(g.batch, g.seq, g.heads, g.head_dim, g.scale, g.p, g.seed, g.offset, q, k, v,
                          probs, dout, dq, dk, dv);
  });
}

// swapAxesForward(outer, rows, cols, inner, src, dst):  dst[o, c, r, i] = src[o, r, c, i]
Napi::Value SwapAxesForward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "swapAxesForward", 6);
  int64_t outer = a.dim(0, "outer"), rows = a.dim(1, "rows"), cols = a.dim(2, "cols"), inner = a.dim(3, "inner");
  NativeBuffer* src = a.buffer(4, "src", DType::F32);
  NativeBuffer* dst = a.buffer(5, "dst", DType::F32);
  int64_t numel = checked_mul(a, {outer, rows, cols, inner});
  a.need(src, "src", numel, shape_str({outer, rows, cols, inner}));
  a.need(dst, "dst", numel, shape_str({outer, cols, rows, inner}));
  a.distinct(dst, "dst", src, "src");
  return a.enqueue([=, src = f32(src), dst = f32(dst)](Backend& be) {
    be.swap_axes_forward(outer, rows, cols, inner, src, dst);
  });
}

// swapAxesBackward(outer, rows, cols, inner, ddst, dsrc):  dsrc[o, r, c, i] += ddst[o, c, r, i]
Napi::Value SwapAxesBackward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "swapAxesBackward", 6);
  int64_t outer = a.dim(0, "outer"), rows = a.dim(1, "rows"), cols = a.dim(2, "cols"), inner = a.dim(3, "inner");
  NativeBuffer* ddst = a.buffer(4, "ddst", DType::F32);
  NativeBuffer* dsrc = a.buffer(5, "dsrc", DType::F32);
  int64_t numel = checked_mul(a, {outer, rows, cols, inner});
  a.need(ddst, "ddst", numel, shape_str({outer, cols, rows, inner}));
  a.need(dsrc, "dsrc", numel, shape_str({outer, rows, cols, inner}));
  a.distinct(dsrc, "dsrc", ddst, "ddst");
  return a.enqueue([=, ddst = f32(ddst), dsrc = f32(dsrc)](Backend& be) {
    be.swap_axes_backward(outer, rows, cols, inner, ddst, dsrc);
  });
}

// gatherColumnsForward(batch, rows, width, picks, x, index, out):  out[n, s, t] = x[n, s, index[s, t]]
Napi::Value GatherColumnsForward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "gatherColumnsForward", 7);
  int64_t batch = a.dim(0, "batch"), rows = a.dim(1, "rows"), width = a.dim(2, "width"), picks = a.dim(3, "picks");
  NativeBuffer* x = a.buffer(4, "x", DType::F32);
  NativeBuffer* index = a.buffer(5, "index", DType::I32);
  NativeBuffer* out = a.buffer(6, "out", DType::F32);
  a.need(x, "x", checked_mul(a, {batch, rows, width}), shape_str({batch, rows, width}));
  a.need(index, "index", checked_mul(a, {rows, picks}), shape_str({rows, picks}));
  a.need(out, "out", checked_mul(a, {batch, rows, picks}), shape_str({batch, rows, picks}));
  a.distinct(out, "out", x, "x");
  check_indices(a, index, rows * picks, "index", width, false, 0);
  return a.enqueue([=, x = f32(x), out = f32(out), index = i32p(index)](Backend& be) {
    be.gather_columns_forward(batch, rows, width, picks, x, index, out);
  });
}

// gatherColumnsBackward(batch, rows, width, picks, index, dout, dx):  dx[n, s, index[s, t]] += dout[n, s, t]
Napi::Value GatherColumnsBackward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "gatherColumnsBackward", 7);
  int64_t batch = a.dim(0, "batch"), rows = a.dim(1, "rows"), width = a.dim(2, "width"), picks = a.dim(3, "picks");
  NativeBuffer* index = a.buffer(4, "index", DType::I32);
  NativeBuffer* dout = a.buffer(5, "dout", DType::F32);
  NativeBuffer* dx = a.buffer(6, "dx", DType::F32);
  a.need(index, "index", checked_mul(a, {rows, picks}), shape_str({rows, picks}));
  a.need(dout, "dout", checked_mul(a, {batch, rows, picks}), shape_str({batch, rows, picks}));
  a.need(dx, "dx", checked_mul(a, {batch, rows, width}), shape_str({batch, rows, width}));
  a.distinct(dx, "dx", dout, "dout");
  check_indices(a, index, rows * picks, "index", width, false, 0);
  return a.enqueue([=, dout = f32(dout), dx = f32(dx), index = i32p(index)](Backend& be) {
    be.gather_columns_backward(batch, rows, width, picks, index, dout, dx);
  });
}

// maskedSoftmaxForward(groups, batch, seq, scale, x, mask, probs)
Napi::Value MaskedSoftmaxForward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "maskedSoftmaxForward", 7);
  int64_t groups = a.dim(0, "groups"), batch = a.dim(1, "batch"), seq = a.dim(2, "seq");
  float scale = a.number(3, "scale");
  NativeBuffer* x = a.buffer(4, "x", DType::F32);
  NativeBuffer* mask = a.buffer(5, "mask", DType::I32);
  NativeBuffer* probs = a.buffer(6, "probs", DType::F32);
  int64_t numel = checked_mul(a, {groups, batch, seq, seq});
  std::string shape = shape_str({groups, batch, seq, seq});
  a.need(x, "x", numel, shape);
  a.need(mask, "mask", checked_mul(a, {batch, seq}), shape_str({batch, seq}));
  a.need(probs, "probs", numel, shape);
  return a.enqueue([=, x = f32(x), probs = f32(probs), mask = i32p(mask)](Backend& be) {
    be.masked_softmax_forward(groups, batch, seq, scale, x, mask, probs);
  });
}

// maskedSoftmaxBackward(groups, batch, seq, scale, probs, dprobs, mask, dx)
Napi::Value MaskedSoftmaxBackward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "maskedSoftmaxBackward", 8);
  int64_t groups = a.dim(0, "groups"), batch = a.dim(1, "batch"), seq = a.dim(2, "seq");
  float scale = a.number(3, "scale");
  NativeBuffer* probs = a.buffer(4, "probs", DType::F32);
  NativeBuffer* dprobs = a.buffer(5, "dprobs", DType::F32);
  NativeBuffer* mask = a.buffer(6, "mask", DType::I32);
  NativeBuffer* dx = a.buffer(7, "dx", DType::F32);
  int64_t numel = checked_mul(a, {groups, batch, seq, seq});
  std::string shape = shape_str({groups, batch, seq, seq});
  a.need(probs, "probs", numel, shape);
  a.need(dprobs, "dprobs", numel, shape);
  a.need(mask, "mask", checked_mul(a, {batch, seq}), shape_str({batch, seq}));
  a.need(dx, "dx", numel, shape);
  a.distinct(dx, "dx", probs, "probs");
  a.distinct(dx, "dx", dprobs, "dprobs");
  return a.enqueue([=, probs = f32(probs), dprobs = f32(dprobs), dx = f32(dx), mask = i32p(mask)](Backend& be) {
    be.masked_softmax_backward(groups, batch, seq, scale, probs, dprobs, mask, dx);
  });
}

// maskedMaxPoolForward(batch, seq, dim, h, mask, out, argmax):  out[b, d] = max over s with mask[b, s] != 0
// of h[b, s, d], argmax[b, d] = that s (int32; -1 with out = 0 for a row with no token)
Napi::Value MaskedMaxPoolForward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "maskedMaxPoolForward", 7);
  int64_t batch = a.dim(0, "batch"), seq = a.dim(1, "seq"), dim = a.dim(2, "dim");
  // argmax holds seq indices as int32.
  if (seq > INT32_MAX) a.fail("'seq' " + std::to_string(seq) + " does not fit the int32 argmax");
  NativeBuffer* h = a.buffer(3, "h", DType::F32);
  NativeBuffer* mask = a.buffer(4, "mask", DType::I32);
  NativeBuffer* out = a.buffer(5, "out", DType::F32);
  NativeBuffer* argmax = a.buffer(6, "argmax", DType::I32);
  a.need(h, "h", checked_mul(a, {batch, seq, dim}), shape_str({batch, seq, dim}));
  a.need(mask, "mask", checked_mul(a, {batch, seq}), shape_str({batch, seq}));
  a.need(out, "out", checked_mul(a, {batch, dim}), shape_str({batch, dim}));
  a.need(argmax, "argmax", checked_mul(a, {batch, dim}), shape_str({batch, dim}));
  a.distinct(out, "out", h, "h");
  a.distinct(argmax, "argmax", mask, "mask");
  // The op writes int32 on the device: a host copy from an earlier write() would be stale.
  argmax->forget_host_indices();
  return a.enqueue([=, h = f32(h), mask = i32p(mask), out = f32(out),
                    argmax = static_cast<int32_t*>(argmax->data())](Backend& be) {
    be.masked_max_pool_forward(batch, seq, dim, h, mask, out, argmax);
  });
}

// maskedMaxPoolBackward(batch, seq, dim, argmax, dout, dh|null):  dh[b, argmax[b, d], d] += dout[b, d]
// argmax is not range-checked (on CUDA that would be a device read): values
// outside [0, seq), such as an empty row's -1, send no gradient.
Napi::Value MaskedMaxPoolBackward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "maskedMaxPoolBackward", 6);
  int64_t batch = a.dim(0, "batch"), seq = a.dim(1, "seq"), dim = a.dim(2, "dim");
  NativeBuffer* argmax = a.buffer(3, "argmax", DType::I32);
  NativeBuffer* dout = a.buffer(4, "dout", DType::F32);
  NativeBuffer* dh = a.buffer(5, "dh", DType::F32, true);
  a.need(argmax, "argmax", checked_mul(a, {batch, dim}), shape_str({batch, dim}));
  a.need(dout, "dout", checked_mul(a, {batch, dim}), shape_str({batch, dim}));
  a.need(dh, "dh", checked_mul(a, {batch, seq, dim}), shape_str({batch, seq, dim}));
  a.distinct(dh, "dh", dout, "dout");
  return a.enqueue([=, dout = f32(dout), dh = f32(dh), argmax = i32p(argmax)](Backend& be) {
    be.masked_max_pool_backward(batch, seq, dim, argmax, dout, dh);
  });
}

// flashAttentionForward(batch, seq, heads, headDim, scale, dropoutP, seed, offset, q, k, v, mask, lse, out)
Napi::Value FlashAttentionForward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "flashAttentionForward", 14);
  const AttentionArgs g = attention_args(a);
  NativeBuffer* q = a.buffer(8, "q", DType::F32);
  NativeBuffer* k = a.buffer(9, "k", DType::F32);
  NativeBuffer* v = a.buffer(10, "v", DType::F32);
  NativeBuffer* mask = a.buffer(11, "mask", DType::I32);
  NativeBuffer* lse = a.buffer(12, "lse", DType::F32);
  NativeBuffer* out = a.buffer(13, "out", DType::F32);
  a.need(q, "q", g.numel, g.shape);
  a.need(k, "k", g.numel, g.shape);
  a.need(v, "v", g.numel, g.shape);
  a.need(mask, "mask", checked_mul(a, {g.batch, g.seq}), shape_str({g.batch, g.seq}));
  a.need(lse, "lse", checked_mul(a, {g.batch, g.heads, g.seq}), shape_str({g.batch, g.heads, g.seq}));
  a.need(out, "out", g.numel, g.shape);
  for (auto [o, oname] : {std::pair{out, "out"}, {lse, "lse"}}) {
    for (auto [in, iname] : {std::pair{q, "q"}, {k, "k"}, {v, "v"}}) a.distinct(o, oname, in, iname);
  }
  a.distinct(out, "out", lse, "lse");
  return a.enqueue([=, g = AttentionDims(g), q = f32(q), k = f32(k), v = f32(v), lse = f32(lse), out = f32(out),
                    mask = i32p(mask)](Backend& be) {
    be.flash_attention_forward(g.batch, g.seq, g.heads, g.head_dim, g.scale, g.p, g.seed, g.offset, q, k, v,
                               mask, lse, out);
  });
}

// flashAttentionBackward(batch, seq, heads, headDim, scale, dropoutP, seed, offset, q, k, v, mask, lse, out, dout,
//                        dq|null, dk|null, dv|null)
Napi::Value FlashAttentionBackward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "flashAttentionBackward", 18);
  const AttentionArgs g = attention_args(a);
  NativeBuffer* q = a.buffer(8, "q", DType::F32);
  NativeBuffer* k = a.buffer(9, "k", DType::F32);
  NativeBuffer* v = a.buffer(10, "v", DType::F32);
  NativeBuffer* mask = a.buffer(11, "mask", DType::I32);
  NativeBuffer* lse = a.buffer(12, "lse", DType::F32);
  NativeBuffer* out = a.buffer(13, "out", DType::F32);
  NativeBuffer* dout = a.buffer(14, "dout", DType::F32);
  NativeBuffer* dq = a.buffer(15, "dq", DType::F32, true);
  NativeBuffer* dk = a.buffer(16, "dk", DType::F32, true);
  NativeBuffer* dv = a.buffer(17, "dv", DType::F32, true);
  for (auto [buf, name] : {std::pair{q, "q"}, {k, "k"}, {v, "v"}, {out, "out"}, {dout, "dout"}, {dq, "dq"},
                           {dk, "dk"}, {dv, "dv"}}) {
    a.need(buf, name, g.numel, g.shape);
  }
  a.need(mask, "mask", checked_mul(a, {g.batch, g.seq}), shape_str({g.batch, g.seq}));
  a.need(lse, "lse", checked_mul(a, {g.batch, g.heads, g.seq}), shape_str({g.batch, g.heads, g.seq}));
  for (auto [o, oname] : {std::pair{dq, "dq"}, {dk, "dk"}, {dv, "dv"}}) {
    for (auto [in, iname] : {std::pair{q, "q"}, {k, "k"}, {v, "v"}, {out, "out"}, {dout, "dout"}, {lse, "lse"}}) {
      a.distinct(o, oname, in, iname);
    }
  }
  return a.enqueue([=, g = AttentionDims(g), q = f32(q), k = f32(k), v = f32(v), lse = f32(lse), out = f32(out),
                    dout = f32(dout), dq = f32(dq), dk = f32(dk), dv = f32(dv), mask = i32p(mask)](Backend& be) {
    be.flash_attention_backward(g.batch, g.seq, g.heads, g.head_dim, g.scale, g.p, g.seed, g.offset, q, k, v,
                                mask, lse, out, dout, dq, dk, dv);
  });
}

// ---- unpadded execution: rows of a padded batch, packed sequences ----------------------

// Row indices (dropout rows, gathers): the host copy, every value in [0, limit).
// These indices are built by the TypeScript layer from the attention mask, so
// they always come from write(); a buffer without a host copy is refused
// rather than read back from the device.
void check_host_indices(OpArgs& a, NativeBuffer* buf, int64_t n, const char* name, int64_t limit) {
  const std::vector<int32_t>* host = buf->host_indices();
  if (!host) a.fail(std::string("'") + name + "' must be written from the host (its values are checked before any kernel reads them)");
  try {
    check_index_range(host->data(), n, limit, false, 0, name);
  } catch (const Error& e) {
    a.fail(e.what());
  }
}

// dropoutRowsForward(rows, cols, p, seed, offset, rowIndex, x, y) /
// dropoutRowsBackward(rows, cols, p, seed, offset, rowIndex, dy, dx, write?)
// (write: dx holds nothing yet, Backend::dropout_rows_backward_write)
Napi::Value DropoutRowsImpl(const Napi::CallbackInfo& info, const char* op, bool backward) {
  OpArgs a(info, op, 8, backward ? 9 : 8);
  const bool write = backward && a.optional_flag(8, "write");
  int64_t rows = a.dim(0, "rows"), cols = a.dim(1, "cols");
  float p = probability(a, 2, "p");
  uint64_t seed = a.u64(3, "seed"), offset = a.u64(4, "offset");
  NativeBuffer* index = a.buffer(5, "rowIndex", DType::I32);
  NativeBuffer* x = a.buffer(6, backward ? "dy" : "x", DType::F32);
  NativeBuffer* y = a.buffer(7, backward ? "dx" : "y", DType::F32);
  int64_t numel = checked_mul(a, {rows, cols});
  a.need(index, "rowIndex", rows, shape_str({rows}));
  a.need(x, backward ? "dy" : "x", numel, shape_str({rows, cols}));
  a.need(y, backward ? "dx" : "y", numel, shape_str({rows, cols}));
  // Any row of a padded tensor of up to 2^31 rows: the flat index row * cols + c must fit 64 bits.
  check_host_indices(a, index, rows, "rowIndex", INT32_MAX);
  return a.enqueue([=, x = f32(x), y = f32(y), index = i32p(index)](Backend& be) {
    if (backward && write) be.dropout_rows_backward_write(rows, cols, p, seed, offset, index, x, y);
    else if (backward) be.dropout_rows_backward(rows, cols, p, seed, offset, index, x, y);
    else be.dropout_rows_forward(rows, cols, p, seed, offset, index, x, y);
  });
}
Napi::Value DropoutRowsForward(const Napi::CallbackInfo& info) { return DropoutRowsImpl(info, "dropoutRowsForward", false); }
Napi::Value DropoutRowsBackward(const Napi::CallbackInfo& info) { return DropoutRowsImpl(info, "dropoutRowsBackward", true); }

// gatherRowsForward(n, cols, srcRows, index, src, dst, accumulate):  dst[i] (+)= src[index[i]]
Napi::Value GatherRowsForward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "gatherRowsForward", 7);
  int64_t n = a.dim(0, "n"), cols = a.dim(1, "cols"), src_rows = a.dim(2, "srcRows");
  NativeBuffer* index = a.buffer(3, "index", DType::I32);
  NativeBuffer* src = a.buffer(4, "src", DType::F32);
  NativeBuffer* dst = a.buffer(5, "dst", DType::F32);
  bool accumulate = a.flag(6, "accumulate");
  a.need(index, "index", n, shape_str({n}));
  a.need(src, "src", checked_mul(a, {src_rows, cols}), shape_str({src_rows, cols}));
  a.need(dst, "dst", checked_mul(a, {n, cols}), shape_str({n, cols}));
  a.distinct(dst, "dst", src, "src");
  check_host_indices(a, index, n, "index", src_rows);
  return a.enqueue([=, src = f32(src), dst = f32(dst), index = i32p(index)](Backend& be) {
    be.gather_rows_forward(n, cols, src_rows, index, src, dst, accumulate);
  });
}

// gatherRowsBackward(n, cols, srcRows, index, ddst, dsrc):  dsrc[index[i]] += ddst[i]
Napi::Value GatherRowsBackward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "gatherRowsBackward", 6);
  int64_t n = a.dim(0, "n"), cols = a.dim(1, "cols"), src_rows = a.dim(2, "srcRows");
  NativeBuffer* index = a.buffer(3, "index", DType::I32);
  NativeBuffer* ddst = a.buffer(4, "ddst", DType::F32);
  NativeBuffer* dsrc = a.buffer(5, "dsrc", DType::F32);
  a.need(index, "index", n, shape_str({n}));
  a.need(ddst, "ddst", checked_mul(a, {n, cols}), shape_str({n, cols}));
  a.need(dsrc, "dsrc", checked_mul(a, {src_rows, cols}), shape_str({src_rows, cols}));
  a.distinct(dsrc, "dsrc", ddst, "ddst");
  check_host_indices(a, index, n, "index", src_rows);
  return a.enqueue([=, ddst = f32(ddst), dsrc = f32(dsrc), index = i32p(index)](Backend& be) {
    be.gather_rows_backward(n, cols, src_rows, index, ddst, dsrc);
  });
}

// The sequences of a varlen attention call, from cu_seqlens' host copy: [batch
// + 1] values rising from 0 to tokens, each length <= seq. Returns tokens and
// the number of probs elements, heads * sum of length^2.
struct VarlenLayout {
  int64_t tokens, probs;
};
VarlenLayout varlen_layout(OpArgs& a, NativeBuffer* cu, int64_t batch, int64_t seq, int64_t heads) {
  a.need(cu, "cuSeqlens", batch + 1, shape_str({batch + 1}));
  const std::vector<int32_t>* host = cu->host_indices();
  if (!host) a.fail("'cuSeqlens' must be written from the host (its values size the work and are checked first)");
  const std::vector<int32_t>& c = *host;
  if (c[0] != 0) a.fail("cuSeqlens[0] must be 0, got " + std::to_string(c[0]));
  int64_t squares = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t len = static_cast<int64_t>(c[b + 1]) - c[b];
    if (len < 0 || len > seq) {
      a.fail("sequence " + std::to_string(b) + " has length " + std::to_string(len) + " (cuSeqlens[" +
             std::to_string(b) + "] = " + std::to_string(c[b]) + ", cuSeqlens[" + std::to_string(b + 1) + "] = " +
             std::to_string(c[b + 1]) + "); lengths must be in [0, seq = " + std::to_string(seq) + "]");
    }
    squares += len * len;
  }
  return VarlenLayout{c[batch], checked_mul(a, {heads, squares})};
}

// varlenAttentionForward(batch, seq, heads, headDim, scale, dropoutP, seed, offset, cuSeqlens, q, k, v, probs, out)
Napi::Value VarlenAttentionForward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "varlenAttentionForward", 14);
  const AttentionArgs g = attention_args(a);
  NativeBuffer* cu = a.buffer(8, "cuSeqlens", DType::I32);
  NativeBuffer* q = a.buffer(9, "q", DType::F32);
  NativeBuffer* k = a.buffer(10, "k", DType::F32);
  NativeBuffer* v = a.buffer(11, "v", DType::F32);
  NativeBuffer* probs = a.buffer(12, "probs", DType::F32);
  NativeBuffer* out = a.buffer(13, "out", DType::F32);
  const VarlenLayout l = varlen_layout(a, cu, g.batch, g.seq, g.heads);
  const int64_t hidden = g.heads * g.head_dim;
  const std::string shape = shape_str({l.tokens, hidden});
  for (auto [buf, name] : {std::pair{q, "q"}, {k, "k"}, {v, "v"}, {out, "out"}}) {
    a.need(buf, name, checked_mul(a, {l.tokens, hidden}), shape);
  }
  a.need(probs, "probs", l.probs, "[" + std::to_string(l.probs) + "] (heads x sum of squared lengths)");
  for (auto [o, oname] : {std::pair{out, "out"}, {probs, "probs"}}) {
    for (auto [in, iname] : {std::pair{q, "q"}, {k, "k"}, {v, "v"}}) a.distinct(o, oname, in, iname);
  }
  a.distinct(out, "out", probs, "probs");
  const int64_t tokens = l.tokens;
  return a.enqueue([=, g = AttentionDims(g), q = f32(q), k = f32(k), v = f32(v), probs = f32(probs), out = f32(out),
                    cu = i32p(cu)](Backend& be) {
    be.varlen_attention_forward(g.batch, tokens, g.seq, g.heads, g.head_dim, g.scale, g.p, g.seed, g.offset, cu, q,
                                k, v, probs, out);
  });
}

// varlenAttentionBackward(batch, seq, heads, headDim, scale, dropoutP, seed, offset, cuSeqlens, q, k, v, probs,
//                         dout, dq|null, dk|null, dv|null, writeQ?, writeK?, writeV?)
// (write*: that gradient holds nothing yet, Backend::varlen_attention_backward_write)
Napi::Value VarlenAttentionBackward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "varlenAttentionBackward", 17, 20);
  const bool write_q = a.optional_flag(17, "writeQ"), write_k = a.optional_flag(18, "writeK");
  const bool write_v = a.optional_flag(19, "writeV");
  const AttentionArgs g = attention_args(a);
  NativeBuffer* cu = a.buffer(8, "cuSeqlens", DType::I32);
  NativeBuffer* q = a.buffer(9, "q", DType::F32);
  NativeBuffer* k = a.buffer(10, "k", DType::F32);
  NativeBuffer* v = a.buffer(11, "v", DType::F32);
  NativeBuffer* probs = a.buffer(12, "probs", DType::F32);
  NativeBuffer* dout = a.buffer(13, "dout", DType::F32);
  NativeBuffer* dq = a.buffer(14, "dq", DType::F32, true);
  NativeBuffer* dk = a.buffer(15, "dk", DType::F32, true);
  NativeBuffer* dv = a.buffer(16, "dv", DType::F32, true);
  const VarlenLayout l = varlen_layout(a, cu, g.batch, g.seq, g.heads);
  const int64_t hidden = g.heads * g.head_dim;
  const std::string shape = shape_str({l.tokens, hidden});
  for (auto [buf, name] : {std::pair{q, "q"}, {k, "k"}, {v, "v"}, {dout, "dout"}, {dq, "dq"}, {dk, "dk"}, {dv, "dv"}}) {
    a.need(buf, name, checked_mul(a, {l.tokens, hidden}), shape);
  }
  a.need(probs, "probs", l.probs, "[" + std::to_string(l.probs) + "] (heads x sum of squared lengths)");
  for (auto [out, oname] : {std::pair{dq, "dq"}, {dk, "dk"}, {dv, "dv"}}) {
    for (auto [in, iname] : {std::pair{q, "q"}, {k, "k"}, {v, "v"}, {dout, "dout"}, {probs, "probs"}}) {
      a.distinct(out, oname, in, iname);
    }
  }
  const int64_t tokens = l.tokens;
  return a.enqueue([=, g = AttentionDims(g), q = f32(q), k = f32(k), v = f32(v), probs = f32(probs), dout = f32(dout),
                    dq = f32(dq), dk = f32(dk), dv = f32(dv), cu = i32p(cu)](Backend& be) {
    if (write_q || write_k || write_v) {
      be.varlen_attention_backward_write(g.batch, tokens, g.seq, g.heads, g.head_dim, g.scale, g.p, g.seed, g.offset,
                                         cu, q, k, v, probs, dout, dq, dk, dv, write_q, write_k, write_v);
    } else {
      be.varlen_attention_backward(g.batch, tokens, g.seq, g.heads, g.head_dim, g.scale, g.p, g.seed, g.offset, cu,
                                   q, k, v, probs, dout, dq, dk, dv);
    }
  });
}

// crossEntropyForward(rows, classes, logits, labels, ignoreIndex, classWeights|null, loss)
Napi::Value CrossEntropyForward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "crossEntropyForward", 7);
  int64_t rows = a.dim(0, "rows"), classes = a.positive_dim(1, "classes");
  NativeBuffer* logits = a.buffer(2, "logits", DType::F32);
  NativeBuffer* labels = a.buffer(3, "labels", DType::I32);
  int32_t ignore = a.i32(4, "ignoreIndex");
  NativeBuffer* weights = a.buffer(5, "classWeights", DType::F32, true);
  NativeBuffer* loss = a.buffer(6, "loss", DType::F32);
  a.need(logits, "logits", checked_mul(a, {rows, classes}), shape_str({rows, classes}));
  a.need(labels, "labels", rows, shape_str({rows}));
  a.need(weights, "classWeights", classes, shape_str({classes}));
  a.need(loss, "loss", 1, shape_str({1}));
  a.distinct(loss, "loss", logits, "logits");
  check_indices(a, labels, rows, "labels", classes, true, ignore);
  return a.enqueue([=, logits = f32(logits), weights = f32(weights), loss = f32(loss),
                    labels = i32p(labels)](Backend& be) {
    be.cross_entropy_forward(rows, classes, logits, labels, ignore, weights, loss);
  });
}

// crossEntropyBackward(rows, classes, logits, labels, ignoreIndex, classWeights|null, dloss, dlogits)
Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  OpArgs a(info, "crossEntropyBackward", 8);
  int64_t rows = a.dim(0, "rows"), classes = a.positive_dim(1, "classes");
  NativeBuffer* logits = a.buffer(2, "logits", DType::F32);
  NativeBuffer* labels = a.buffer(3, "labels", DType::I32);
  int32_t ignore = a.i32(4, "ignoreIndex");
  NativeBuffer* weights = a.buffer(5, "classWeights", DType::F32, true);
  NativeBuffer* dloss = a.buffer(6, "dloss", DType::F32);
  NativeBuffer* dlogits = a.buffer(7, "dlogits", DType::F32);
  a.need(logits, "logits", checked_mul(a, {rows, classes}), shape_str({rows, classes}));
  a.need(labels, "labels", rows, shape_str({rows}));
  a.need(weights, "classWeights", classes, shape_str({classes}));
  a.need(dloss, "dloss", 1, shape_str({1}));
  a.need(dlogits, "dlogits", checked_mul(a, {rows, classes}), shape_str({rows, classes}));
  a.distinct(dlogits, "dlogits", logits, "logits");
  check_indices(a, labels, rows, "labels", classes, true, ignore);
  return a.enqueue([=, logits = f32(logits), weights = f32(weights), dloss = f32(dloss), dlogits = f32(dlogits),
                    labels = i32p(labels)](Backend& be) {
    be.cross_entropy_backward(rows, classes, logits, labels, ignore, weights, dloss, dlogits);
  });
}

// One parameter's AdamW tensors (a null grad passes where the op allows
// one): `numel` elements each, and no updated one sharing memory with another.
void check_adam_tensors(OpArgs& a, NativeBuffer* grad, NativeBuffer* param, NativeBuffer* m, NativeBuffer* v,
                        int64_t numel, const std::string& shape) {
  a.need(grad, "grad", numel, shape);
  a.need(param, "param", numel, shape);
  a.need(m, "expAvg", numel, shape);
  a.need(v, "expAvgSq", numel, shape);
  a.distinct(param, "param", grad, "grad");
  a.distinct(m, "expAvg", v, "expAvgSq");
  a.distinct(param, "param", m, "expAvg");
  a.distinct(param, "param", v, "expAvgSq");
}

// adamwStep(n, lr, beta1, beta2, eps, weightDecay, step, gradScale|null, grad, param, expAvg, expAvgSq)
Napi::Value AdamWStep(const Napi::CallbackInfo& info) {
  OpArgs a(info, "adamwStep", 12);
  int64_t n = a.dim(0, "n");
  double lr = a.real(1, "lr"), beta1 = a.real(2, "beta1"), beta2 = a.real(3, "beta2");
  double eps = a.real(4, "eps"), wd = a.real(5, "weightDecay");
  int64_t step = a.positive_dim(6, "step");
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) a.fail("betas must be in [0, 1)");
  if (lr < 0 || eps < 0 || wd < 0) a.fail("lr, eps and weightDecay must be non-negative");
  NativeBuffer* scale = a.buffer(7, "gradScale", DType::F32, true);
  NativeBuffer* grad = a.buffer(8, "grad", DType::F32);
  NativeBuffer* param = a.buffer(9, "param", DType::F32);
  NativeBuffer* m = a.buffer(10, "expAvg", DType::F32);
  NativeBuffer* v = a.buffer(11, "expAvgSq", DType::F32);
  std::string shape = shape_str({n});
  a.need(scale, "gradScale", 1, shape_str({1}));
  check_adam_tensors(a, grad, param, m, v, n, shape);
  return a.enqueue([=, scale = f32(scale), grad = f32(grad), param = f32(param), m = f32(m),
                    v = f32(v)](Backend& be) {
    be.adamw_step(n, lr, beta1, beta2, eps, wd, step, scale, grad, param, m, v);
  });
}

// clipCoefficient(sumSq, maxNorm, clipCoef)
Napi::Value ClipCoefficient(const Napi::CallbackInfo& info) {
  OpArgs a(info, "clipCoefficient", 3);
  NativeBuffer* sum_sq = a.buffer(0, "sumSq", DType::F32);
  float max_norm = a.number(1, "maxNorm");
  if (!(max_norm > 0)) a.fail("'maxNorm' must be positive");
  NativeBuffer* coef = a.buffer(2, "clipCoef", DType::F32);
  a.need(sum_sq, "sumSq", 1, shape_str({1}));
  a.need(coef, "clipCoef", 1, shape_str({1}));
  return a.enqueue([=, sum_sq = f32(sum_sq),
                    coef = f32(coef)](Backend& be) { be.clip_coefficient(sum_sq, max_norm, coef); });
}

// ---- multi-tensor ops: arrays of tensors, one op for many -----------------------------

// A JavaScript array argument of exactly `count` entries.
Napi::Array array_arg(OpArgs& a, const Napi::CallbackInfo& info, size_t index, const char* name, int64_t count) {
  Napi::Value v = info[index];
  if (!v.IsArray()) a.fail(std::string("'") + name + "' must be an array");
  Napi::Array arr = v.As<Napi::Array>();
  if (static_cast<int64_t>(arr.Length()) != count) {
    a.fail(std::string("'") + name + "' has " + std::to_string(arr.Length()) + " entries but count is " +
           std::to_string(count));
  }
  return arr;
}

// Per-tensor integers (sizes, step numbers), each at least `min`.
std::vector<int64_t> integer_list(OpArgs& a, const Napi::CallbackInfo& info, size_t index, const char* name,
                                  int64_t count, int64_t min) {
  Napi::Array arr = array_arg(a, info, index, name, count);
  std::vector<int64_t> out(static_cast<size_t>(count));
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value v = arr.Get(i);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1.0;
    if (!(d >= static_cast<double>(min)) || d != std::floor(d) || d > 9.0e15) {
      a.fail(std::string(name) + "[" + std::to_string(i) + "] must be an integer >= " + std::to_string(min) + ", got " +
             (v.IsNumber() ? std::to_string(d) : std::string("a non-number")));
    }
    out[i] = static_cast<int64_t>(d);
  }
  return out;
}

// The tensors of an array argument: live float32 buffers, tensor i holding at
// least sizes[i] elements, all on `device` (the device of the first tensor
// seen, named by device_of). Errors name the entry: "tensor 'grads[3]' ...".
std::vector<NativeBuffer*> tensor_list(OpArgs& a, const Napi::CallbackInfo& info, size_t index, const char* name,
                                       const std::vector<int64_t>& sizes, NativeBuffer*& first, std::string& first_name) {
  Napi::Array arr = array_arg(a, info, index, name, static_cast<int64_t>(sizes.size()));
  std::vector<NativeBuffer*> out(sizes.size());
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    const std::string entry = std::string(name) + "[" + std::to_string(i) + "]";
    Napi::Value v = arr.Get(i);
    if (!NativeBuffer::Is(v)) a.fail("'" + entry + "' must be a NativeBuffer");
    NativeBuffer* b = NativeBuffer::Unwrap(v);
    if (b->freed()) a.fail("tensor '" + entry + "' was already freed (use after free)");
    if (b->dtype() != DType::F32) {
      a.fail("tensor '" + entry + "' has dtype " + dtype_name(b->dtype()) + ", expected float32");
    }
    if (b->numel() < sizes[i]) {
      a.fail("tensor '" + entry + "' holds " + std::to_string(b->numel()) + " elements but sizes[" +
             std::to_string(i) + "] = " + std::to_string(sizes[i]) + " needs " + std::to_string(sizes[i]));
    }
    if (!first) {
      first = b;
      first_name = entry;
    } else if (b->device() != first->device()) {
      a.fail("tensors on different devices: '" + first_name + "' is on " + device_name(first->device()) + ", '" +
             entry + "' is on " + device_name(b->device()));
    }
    out[i] = b;
  }
  return out;
}

// A one-element tensor argument (gradScale, foundInf, out) on the tensors' device.
NativeBuffer* scalar_tensor(OpArgs& a, size_t index, const char* name, bool optional, NativeBuffer*& first,
                            std::string& first_name) {
  NativeBuffer* b = a.buffer(index, name, DType::F32, optional);
  if (!b) return nullptr;
  a.need(b, name, 1, shape_str({1}));
  if (!first) {
    first = b;
    first_name = name;
  } else if (b->device() != first->device()) {
    a.fail("tensors on different devices: '" + first_name + "' is on " + device_name(first->device()) + ", '" +
           name + "' is on " + device_name(b->device()));
  }
  return b;
}

template <typename T = float>
std::vector<T*> pointers(const std::vector<NativeBuffer*>& list) {
  std::vector<T*> out(list.size());
  for (size_t i = 0; i < list.size(); ++i) out[i] = static_cast<T*>(list[i]->data());
  return out;
}

// multiTensorAdamw(count, sizes, params, grads, expAvgs, expAvgSqs, lr, beta1, beta2, eps, weightDecay, steps,
//                  gradScale|null, foundInf|null[, halves])
// halves (optional): per tensor a BF16 buffer (or null) that receives the updated parameter's bf16 copy.
Napi::Value MultiTensorAdamW(const Napi::CallbackInfo& info) {
  OpArgs a(info, "multiTensorAdamw", info.Length() == 15 ? 15 : 14);
  int64_t count = a.dim(0, "count");
  std::vector<int64_t> sizes = integer_list(a, info, 1, "sizes", count, 0);
  NativeBuffer* first = nullptr;
  std::string first_name;
  std::vector<NativeBuffer*> params = tensor_list(a, info, 2, "params", sizes, first, first_name);
  std::vector<NativeBuffer*> grads = tensor_list(a, info, 3, "grads", sizes, first, first_name);
  std::vector<NativeBuffer*> avgs = tensor_list(a, info, 4, "expAvgs", sizes, first, first_name);
  std::vector<NativeBuffer*> avg_sqs = tensor_list(a, info, 5, "expAvgSqs", sizes, first, first_name);
  double lr = a.real(6, "lr"), beta1 = a.real(7, "beta1"), beta2 = a.real(8, "beta2");
  double eps = a.real(9, "eps"), wd = a.real(10, "weightDecay");
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) a.fail("betas must be in [0, 1)");
  if (lr < 0 || eps < 0 || wd < 0) a.fail("lr, eps and weightDecay must be non-negative");
  std::vector<int64_t> steps = integer_list(a, info, 11, "steps", count, 1);
  NativeBuffer* scale = scalar_tensor(a, 12, "gradScale", true, first, first_name);
  NativeBuffer* found = scalar_tensor(a, 13, "foundInf", true, first, first_name);
  // Every written buffer must be written once and read by nobody else: a
  // parameter listed twice, or a moment shared with a gradient, would race
  // between CUDA blocks and update twice.
  std::unordered_map<const void*, std::string> written;
  auto write_once = [&](NativeBuffer* b, const std::string& name) {
    auto [it, fresh] = written.emplace(b->data(), name);
    if (!fresh) a.fail("tensor '" + name + "' is the same buffer as '" + it->second + "' (each is written)");
  };
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string at = "[" + std::to_string(i) + "]";
    write_once(params[i], "params" + at);
    write_once(avgs[i], "expAvgs" + at);
    write_once(avg_sqs[i], "expAvgSqs" + at);
  }
  auto read_only = [&](NativeBuffer* b, const std::string& name) {
    auto it = b ? written.find(b->data()) : written.end();
    if (it != written.end()) a.fail("output '" + it->second + "' must not be the same buffer as input '" + name + "'");
  };
  for (size_t i = 0; i < grads.size(); ++i) read_only(grads[i], "grads[" + std::to_string(i) + "]");
  read_only(scale, "gradScale");
  read_only(found, "foundInf");
  std::vector<uint16_t*> halves;
  if (info.Length() == 15 && !info[14].IsUndefined() && !info[14].IsNull()) {
    Napi::Array arr = array_arg(a, info, 14, "halves", count);
    halves.assign(static_cast<size_t>(count), nullptr);
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      Napi::Value v = arr.Get(i);
      if (v.IsNull() || v.IsUndefined()) continue;
      const std::string entry = "halves[" + std::to_string(i) + "]";
      if (!NativeBuffer::Is(v)) a.fail("'" + entry + "' must be a NativeBuffer or null");
      NativeBuffer* b = NativeBuffer::Unwrap(v);
      if (b->freed()) a.fail("tensor '" + entry + "' was already freed (use after free)");
      if (b->dtype() != DType::BF16) a.fail("tensor '" + entry + "' has dtype " + dtype_name(b->dtype()) + ", expected bfloat16");
      if (b->numel() < sizes[i]) {
        a.fail("tensor '" + entry + "' holds " + std::to_string(b->numel()) + " elements but sizes[" + std::to_string(i) +
               "] = " + std::to_string(sizes[i]));
      }
      if (b->device() != params[i]->device()) a.fail("tensor '" + entry + "' is not on the device of params[" + std::to_string(i) + "]");
      write_once(b, entry);
      halves[i] = static_cast<uint16_t*>(b->data());
    }
  }
  if (!first) return info.Env().Undefined();  // no tensors at all: nothing to update
  return a.enqueue(first->device(), [=, sizes = std::move(sizes), steps = std::move(steps), params = pointers(params),
                                     grads = pointers<const float>(grads), avgs = pointers(avgs),
                                     avg_sqs = pointers(avg_sqs), scale = f32(scale), found = f32(found),
                                     halves = std::move(halves)](Backend& be) {
    be.multi_tensor_adamw(count, sizes.data(), params.data(), grads.data(), avgs.data(), avg_sqs.data(), lr, beta1,
                          beta2, eps, wd, steps.data(), scale, found, halves.empty() ? nullptr : halves.data());
  });
}

// multiTensorSumSquares(count, sizes, tensors, out):  out[0] += sum over the tensors of sum x^2
Napi::Value MultiTensorSumSquares(const Napi::CallbackInfo& info) {
  OpArgs a(info, "multiTensorSumSquares", 4);
  int64_t count = a.dim(0, "count");
  std::vector<int64_t> sizes = integer_list(a, info, 1, "sizes", count, 0);
  NativeBuffer* first = nullptr;
  std::string first_name;
  std::vector<NativeBuffer*> tensors = tensor_list(a, info, 2, "tensors", sizes, first, first_name);
  NativeBuffer* out = scalar_tensor(a, 3, "out", false, first, first_name);
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i]->data() == out->data()) {
      a.fail("output 'out' must not be the same buffer as input 'tensors[" + std::to_string(i) + "]'");
    }
  }
  return a.enqueue(first->device(), [=, sizes = std::move(sizes), tensors = pointers<const float>(tensors),
                                     out = f32(out)](Backend& be) {
    be.multi_tensor_sum_squares(count, sizes.data(), tensors.data(), out);
  });
}

// multiTensorSumSquaresRows(count, sizes, tensors, rowMarks, widths, out): multiTensorSumSquares where
// rowMarks[i] (a NativeBuffer or null) marks the rows of width widths[i] of a row-sparse tensor i.
Napi::Value MultiTensorSumSquaresRows(const Napi::CallbackInfo& info) {
  OpArgs a(info, "multiTensorSumSquaresRows", 6);
  int64_t count = a.dim(0, "count");
  std::vector<int64_t> sizes = integer_list(a, info, 1, "sizes", count, 0);
  NativeBuffer* first = nullptr;
  std::string first_name;
  std::vector<NativeBuffer*> tensors = tensor_list(a, info, 2, "tensors", sizes, first, first_name);
  Napi::Array marks_arr = array_arg(a, info, 3, "rowMarks", count);
  std::vector<int64_t> widths = integer_list(a, info, 4, "widths", count, 0);
  std::vector<const int32_t*> marks(static_cast<size_t>(count), nullptr);
  for (uint32_t i = 0; i < marks_arr.Length(); ++i) {
    Napi::Value v = marks_arr.Get(i);
    if (v.IsNull() || v.IsUndefined()) continue;
    const std::string entry = "rowMarks[" + std::to_string(i) + "]";
    if (!NativeBuffer::Is(v)) a.fail("'" + entry + "' must be a NativeBuffer or null");
    NativeBuffer* b = NativeBuffer::Unwrap(v);
    if (b->freed()) a.fail("tensor '" + entry + "' was already freed (use after free)");
    if (b->dtype() != DType::I32) a.fail("tensor '" + entry + "' has dtype " + dtype_name(b->dtype()) + ", expected int32");
    if (widths[i] < 1 || sizes[i] % widths[i] != 0) {
      a.fail("widths[" + std::to_string(i) + "] = " + std::to_string(widths[i]) + " does not divide sizes[" +
             std::to_string(i) + "] = " + std::to_string(sizes[i]) + " into rows");
    }
    if (b->numel() < sizes[i] / widths[i]) {
      a.fail("tensor '" + entry + "' holds " + std::to_string(b->numel()) + " marks for " +
             std::to_string(sizes[i] / widths[i]) + " rows");
    }
    if (b->device() != tensors[i]->device()) a.fail("tensor '" + entry + "' is not on the device of its tensor");
    marks[i] = static_cast<const int32_t*>(b->data());
  }
  NativeBuffer* out = scalar_tensor(a, 5, "out", false, first, first_name);
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i]->data() == out->data()) {
      a.fail("output 'out' must not be the same buffer as input 'tensors[" + std::to_string(i) + "]'");
    }
  }
  return a.enqueue(first->device(), [=, sizes = std::move(sizes), tensors = pointers<const float>(tensors),
                                     marks = std::move(marks), widths = std::move(widths), out = f32(out)](Backend& be) {
    be.multi_tensor_sum_squares_rows(count, sizes.data(), tensors.data(), marks.data(), widths.data(), out);
  });
}

// adamwRows(rows, width, ids|null, nIds, rowMarks|null, rowSteps, log, scaleLog, gradScale|null, grad|null,
//           param, expAvg, expAvgSq): log is an array of 6 numbers per step (lr, beta1, beta2, eps,
//           weightDecay, step), the steps consecutive.
Napi::Value AdamWRows(const Napi::CallbackInfo& info) {
  OpArgs a(info, "adamwRows", 13);
  int64_t rows = a.dim(0, "rows"), width = a.dim(1, "width");
  NativeBuffer* ids = a.buffer(2, "ids", DType::I32, true);
  int64_t n_ids = a.dim(3, "nIds");
  NativeBuffer* marks = a.buffer(4, "rowMarks", DType::I32, true);
  NativeBuffer* row_steps = a.buffer(5, "rowSteps", DType::I32);
  if (!info[6].IsArray()) a.fail("'log' must be an array");
  Napi::Array log_arr = info[6].As<Napi::Array>();
  if (log_arr.Length() % 6 != 0) a.fail("'log' must hold 6 numbers per step, got " + std::to_string(log_arr.Length()));
  const int64_t log_len = log_arr.Length() / 6;
  std::vector<double> log(log_arr.Length());
  for (uint32_t i = 0; i < log_arr.Length(); ++i) {
    Napi::Value v = log_arr.Get(i);
    if (!v.IsNumber()) a.fail("log[" + std::to_string(i) + "] must be a number");
    log[i] = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(log[i])) a.fail("log[" + std::to_string(i) + "] must be finite");
  }
  for (int64_t j = 0; j < log_len; ++j) {
    const double* e = log.data() + 6 * j;
    if (!(e[1] >= 0 && e[1] < 1) || !(e[2] >= 0 && e[2] < 1)) a.fail("betas of log step " + std::to_string(j) + " must be in [0, 1)");
    if (e[0] < 0 || e[3] < 0 || e[4] < 0) a.fail("lr, eps and weightDecay of log step " + std::to_string(j) + " must be non-negative");
    if (!(e[5] >= 1) || e[5] != std::floor(e[5]) || e[5] > 2.0e9 || (j > 0 && e[5] != e[-1] + 1)) {
      a.fail("log step numbers must be consecutive integers >= 1, got " + std::to_string(e[5]) + " at entry " + std::to_string(j));
    }
  }
  NativeBuffer* scale_log = a.buffer(7, "scaleLog", DType::F32);
  NativeBuffer* scale = a.buffer(8, "gradScale", DType::F32, true);
  NativeBuffer* grad = a.buffer(9, "grad", DType::F32, true);
  NativeBuffer* param = a.buffer(10, "param", DType::F32);
  NativeBuffer* m = a.buffer(11, "expAvg", DType::F32);
  NativeBuffer* v = a.buffer(12, "expAvgSq", DType::F32);
  const std::string shape = shape_str({rows, width});
  const int64_t numel = checked_mul(a, {rows, width});
  if (grad && !marks) a.fail("a step (grad given) needs 'rowMarks'");
  if (grad && log_len == 0) a.fail("a step (grad given) needs its own entry at the end of 'log'");
  a.need(ids, "ids", n_ids, shape_str({n_ids}));
  if (ids) check_indices(a, ids, n_ids, "ids", rows, false, 0);
  a.need(marks, "rowMarks", rows, shape_str({rows}));
  a.need(row_steps, "rowSteps", rows, shape_str({rows}));
  a.need(scale_log, "scaleLog", log_len, shape_str({log_len}));
  a.need(scale, "gradScale", 1, shape_str({1}));
  check_adam_tensors(a, grad, param, m, v, numel, shape);
  a.distinct(scale_log, "scaleLog", scale, "gradScale");
  return a.enqueue([=, log = std::move(log), ids = i32p(ids), marks = i32p(marks),
                    row_steps = static_cast<int32_t*>(row_steps->data()), scale_log = f32(scale_log),
                    scale = f32(scale), grad = f32(grad), param = f32(param), m = f32(m), v = f32(v)](Backend& be) {
    be.adamw_rows(rows, width, ids, n_ids, marks, row_steps, log_len, log.data(), scale_log, scale, grad, param, m, v);
  });
}

// nonfiniteFlag(x, foundInf):  foundInf[0] = x[0] is inf or NaN ? 1 : 0
Napi::Value NonfiniteFlag(const Napi::CallbackInfo& info) {
  OpArgs a(info, "nonfiniteFlag", 2);
  NativeBuffer* x = a.buffer(0, "x", DType::F32);
  NativeBuffer* found = a.buffer(1, "foundInf", DType::F32);
  a.need(x, "x", 1, shape_str({1}));
  a.need(found, "foundInf", 1, shape_str({1}));
  return a.enqueue([=, x = f32(x), found = f32(found)](Backend& be) { be.nonfinite_flag(x, found); });
}

}  // namespace

void RegisterOps(Napi::Env env, Napi::Object exports) {
  exports.Set("gemm", Napi::Function::New(env, Gemm, "gemm"));
  exports.Set("gemmMixed", Napi::Function::New(env, GemmMixed, "gemmMixed"));
  exports.Set("setAllowTf32", Napi::Function::New(env, SetAllowTf32, "setAllowTf32"));
  exports.Set("fill", Napi::Function::New(env, Fill, "fill"));
  exports.Set("axpby", Napi::Function::New(env, Axpby, "axpby"));
  exports.Set("mul", Napi::Function::New(env, Mul, "mul"));
  exports.Set("addBiasRows", Napi::Function::New(env, AddBiasRows, "addBiasRows"));
  exports.Set("sumRows", Napi::Function::New(env, SumRows, "sumRows"));
  exports.Set("sum", Napi::Function::New(env, Sum, "sum"));
  exports.Set("sumSquares", Napi::Function::New(env, SumSquares, "sumSquares"));
  exports.Set("cast", Napi::Function::New(env, Cast, "cast"));
  exports.Set("castSumRows", Napi::Function::New(env, CastSumRows, "castSumRows"));
  exports.Set("sliceRowsForward", Napi::Function::New(env, SliceRowsForward, "sliceRowsForward"));
  exports.Set("sliceRowsBackward", Napi::Function::New(env, SliceRowsBackward, "sliceRowsBackward"));
  exports.Set("activationForward", Napi::Function::New(env, ActivationForward, "activationForward"));
  exports.Set("activationBackward", Napi::Function::New(env, ActivationBackward, "activationBackward"));
  exports.Set("activationBackwardCastSumRows",
              Napi::Function::New(env, ActivationBackwardCastSumRows, "activationBackwardCastSumRows"));
  exports.Set("dropoutForward", Napi::Function::New(env, DropoutForward, "dropoutForward"));
  exports.Set("dropoutBackward", Napi::Function::New(env, DropoutBackward, "dropoutBackward"));
  exports.Set("layernormForward", Napi::Function::New(env, LayerNormForward, "layernormForward"));
  exports.Set("layernormBackward", Napi::Function::New(env, LayerNormBackward, "layernormBackward"));
  exports.Set("embeddingForward", Napi::Function::New(env, EmbeddingForward, "embeddingForward"));
  exports.Set("embeddingBackward", Napi::Function::New(env, EmbeddingBackward, "embeddingBackward"));
  exports.Set("embeddingBackwardRows", Napi::Function::New(env, EmbeddingBackwardRows, "embeddingBackwardRows"));
  exports.Set("zeroUnmarkedRows", Napi::Function::New(env, ZeroUnmarkedRows, "zeroUnmarkedRows"));
  exports.Set("attentionForward", Napi::Function::New(env, AttentionForward, "attentionForward"));
  exports.Set("attentionBackward", Napi::Function::New(env, AttentionBackward, "attentionBackward"));
  exports.Set("flashAttentionForward", Napi::Function::New(env, FlashAttentionForward, "flashAttentionForward"));
  exports.Set("flashAttentionBackward", Napi::Function::New(env, FlashAttentionBackward, "flashAttentionBackward"));
  exports.Set("swapAxesForward", Napi::Function::New(env, SwapAxesForward, "swapAxesForward"));
  exports.Set("swapAxesBackward", Napi::Function::New(env, SwapAxesBackward, "swapAxesBackward"));
  exports.Set("gatherColumnsForward", Napi::Function::New(env, GatherColumnsForward, "gatherColumnsForward"));
  exports.Set("gatherColumnsBackward", Napi::Function::New(env, GatherColumnsBackward, "gatherColumnsBackward"));
  exports.Set("maskedSoftmaxForward", Napi::Function::New(env, MaskedSoftmaxForward, "maskedSoftmaxForward"));
  exports.Set("maskedSoftmaxBackward", Napi::Function::New(env, MaskedSoftmaxBackward, "maskedSoftmaxBackward"));
  exports.Set("maskedMaxPoolForward", Napi::Function::New(env, MaskedMaxPoolForward, "maskedMaxPoolForward"));
  exports.Set("maskedMaxPoolBackward", Napi::Function::New(env, MaskedMaxPoolBackward, "maskedMaxPoolBackward"));
  exports.Set("dropoutRowsForward", Napi::Function::New(env, DropoutRowsForward, "dropoutRowsForward"));
  exports.Set("dropoutRowsBackward", Napi::Function::New(env, DropoutRowsBackward, "dropoutRowsBackward"));
  exports.Set("gatherRowsForward", Napi::Function::New(env, GatherRowsForward, "gatherRowsForward"));
  exports.Set("gatherRowsBackward", Napi::Function::New(env, GatherRowsBackward, "gatherRowsBackward"));
  exports.Set("varlenAttentionForward", Napi::Function::New(env, VarlenAttentionForward, "varlenAttentionForward"));
  exports.Set("varlenAttentionBackward", Napi::Function::New(env, VarlenAttentionBackward, "varlenAttentionBackward"));
  exports.Set("crossEntropyForward", Napi::Function::New(env, CrossEntropyForward, "crossEntropyForward"));
  exports.Set("crossEntropyBackward", Napi::Function::New(env, CrossEntropyBackward, "crossEntropyBackward"));
  exports.Set("adamwStep", Napi::Function::New(env, AdamWStep, "adamwStep"));
  exports.Set("clipCoefficient", Napi::Function::New(env, ClipCoefficient, "clipCoefficient"));
  exports.Set("multiTensorAdamw", Napi::Function::New(env, MultiTensorAdamW, "multiTensorAdamw"));
  exports.Set("multiTensorSumSquares", Napi::Function::New(env, MultiTensorSumSquares, "multiTensorSumSquares"));
  exports.Set("multiTensorSumSquaresRows", Napi::Function::New(env, MultiTensorSumSquaresRows, "multiTensorSumSquaresRows"));
  exports.Set("adamwRows", Napi::Function::New(env, AdamWRows, "adamwRows"));
  exports.Set("nonfiniteFlag", Napi::Function::New(env, NonfiniteFlag, "nonfiniteFlag"));
}

}  // namespace bertkit
