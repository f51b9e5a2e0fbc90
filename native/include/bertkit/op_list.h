// The ops of the backend interface, each declared once: backend.h makes them
// pure virtual methods of Backend, and every backend header (cpu_backend.h,
// cuda_backend.h) declares its overrides from this same list. Include it with
// BERTKIT_OP(name, (parameters)) defined; every op returns void.
//
// Pointers point into memory of the backend's own device. All tensors are
// dense, contiguous and row-major; shapes are passed explicitly and were
// validated by the caller (the Node-API layer) before any pointer reaches a
// backend. Backward ops ACCUMULATE into gradient outputs (dx += ...), never
// overwrite, so the autograd engine can sum contributions from several
// consumers; a null gradient pointer means "nobody needs this gradient": skip
// the work. (A few have writing variants for buffers that hold nothing yet,
// declared in backend.h with defaults built from these ops.)
//
// No include guard: this list is meant to be included more than once, each
// time with another BERTKIT_OP.

// ---- matrix products (gemm) -----------------------------------------------
// For each of `batch` problems (pointers advance by the strides, in elements):
//   C[M,N] = alpha * op(A) * op(B) + beta * C
// op(A) is A[M,K] (row-major), or A stored as [K,M] when trans_a.
// op(B) is B[K,N], or B stored as [N,K] when trans_b.
// beta == 0 means C is write-only (its old contents, even NaN, are ignored).
BERTKIT_OP(gemm, (bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  const float* b, float beta, float* c, int64_t batch, int64_t stride_a, int64_t stride_b,
                  int64_t stride_c))
// The same product with A and B in F16 or BF16 (both the same dtype, given by
// ab_dtype) and C in float32; products are accumulated in float32, as torch's
// autocast matmuls are. Strides count elements of each operand's own dtype.
// a_f32 / b_f32: that operand is float32, rounded to ab_dtype as it is read
// (the same bits as multiplying a cast copy, without the copy); CPU only.
// bias: null, or N float32 values added to every row of every C after the
// product, C[i, j] = (alpha * acc + beta * C) + bias[j], rounded as gemm_mixed
// followed by add_bias_rows (a linear layer's bias, without a second pass over C).
// stream_c: C is not read again soon (a weight gradient, read at the
// optimizer step), so a backend may write it around its caches; the CPU's
// bfloat16 kernels then use non-temporal stores, which skip reading each line
// of C before writing it. The bits are the same either way.
BERTKIT_OP(gemm_mixed, (bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                        const void* a, const void* b, DType ab_dtype, float beta, float* c, int64_t batch,
                        int64_t stride_a, int64_t stride_b, int64_t stride_c, bool a_f32, bool b_f32,
                        const float* bias, bool stream_c))

// ---- elementwise and reductions (elementwise.cpp) -------------------------
BERTKIT_OP(fill, (float* x, int64_t n, float value))
// y = alpha * x + beta * y   (beta == 0: y write-only)
BERTKIT_OP(axpby, (int64_t n, float alpha, const float* x, float beta, float* y))
// out = a * b (elementwise)
BERTKIT_OP(mul, (int64_t n, const float* a, const float* b, float* out))
// y[r, c] += bias[c]
BERTKIT_OP(add_bias_rows, (int64_t rows, int64_t cols, const float* bias, float* y))
// out[c] += sum over r of x[r, c]
BERTKIT_OP(sum_rows, (int64_t rows, int64_t cols, const float* x, float* out))
// out[0] += sum of x
BERTKIT_OP(sum, (int64_t n, const float* x, float* out))
// out[0] += sum of x^2   (for global gradient norms)
BERTKIT_OP(sum_squares, (int64_t n, const float* x, float* out))
// Converts between dtypes (F32 <-> F16 / BF16, I32 -> F32).
BERTKIT_OP(cast, (int64_t n, DType src_dtype, const void* src, DType dst_dtype, void* dst))
// dst[b, j, :] = src[b, start + j, :] for j < count; src is [batch, src_rows, cols],
// dst is [batch, count, cols]. Backward of a row slice: scatter-add back.
BERTKIT_OP(slice_rows_forward, (int64_t batch, int64_t src_rows, int64_t cols, int64_t start, int64_t count,
                                const float* src, float* dst))
BERTKIT_OP(slice_rows_backward, (int64_t batch, int64_t src_rows, int64_t cols, int64_t start, int64_t count,
                                 const float* ddst, float* dsrc))

// ---- activations (activation.cpp) ---------------------------------------
// y = f(x) for the kind (Backend::Activation, in backend.h).
BERTKIT_OP(activation_forward, (Activation kind, int64_t n, const float* x, float* y))
// dx += dy * f'(x). Takes x (not y) for every kind, so no output needs keeping.
BERTKIT_OP(activation_backward, (Activation kind, int64_t n, const float* x, const float* dy, float* dx))

// ---- dropout (dropout.cpp) ------------------------------------------------
// Keeps element i with probability 1-p and scales it by 1/(1-p). The mask comes
// from philox.h keyed by (seed, offset + i), identically on every backend, so
// backward regenerates it instead of storing it.
BERTKIT_OP(dropout_forward, (int64_t n, float p, uint64_t seed, uint64_t offset, const float* x, float* y))
BERTKIT_OP(dropout_backward, (int64_t n, float p, uint64_t seed, uint64_t offset, const float* dy, float* dx))

// Dropout of the real-token rows of a padded batch, drawing the padded
// batch's mask: x and y are [rows, cols], row r being row row_index[r] of a
// padded [*, cols] tensor, and element (r, c) is kept exactly when
// dropout_forward over that padded tensor keeps flat element
// row_index[r] * cols + c. So unpadded execution (lib/tensor/packing.ts) drops the same
// elements as the padded path, and backward regenerates the mask as above.
// row_index values are >= 0 (checked by the caller).
BERTKIT_OP(dropout_rows_forward, (int64_t rows, int64_t cols, float p, uint64_t seed, uint64_t offset,
                                  const int32_t* row_index, const float* x, float* y))
BERTKIT_OP(dropout_rows_backward, (int64_t rows, int64_t cols, float p, uint64_t seed, uint64_t offset,
                                   const int32_t* row_index, const float* dy, float* dx))

// ---- layer norm (layernorm.cpp) -------------------------------------------
// y = (x + residual - mean) * rstd * gamma + beta over the last dim `cols`.
// residual may be null. mean / rstd ([rows]) are saved for backward.
// When residual is non-null, x + residual is also written to `sum_out`
// (backward needs the normalised input); sum_out is ignored otherwise.
BERTKIT_OP(layernorm_forward, (int64_t rows, int64_t cols, float eps, const float* x, const float* residual,
                               const float* gamma, const float* beta, float* y, float* sum_out, float* mean,
                               float* rstd))
// x here is the normalised input (x + residual when forward had a residual).
// dx (if non-null) += dL/dx; the same gradient flows to the residual.
BERTKIT_OP(layernorm_backward, (int64_t rows, int64_t cols, const float* x, const float* gamma,
                                const float* mean, const float* rstd, const float* dy, float* dx,
                                float* dgamma, float* dbeta))

// ---- embedding (embedding.cpp) --------------------------------------------
// out[i, :] = table[ids[i], :]. ids were range-checked by the caller.
BERTKIT_OP(embedding_forward, (int64_t n, int64_t dim, const int32_t* ids, const float* table, float* out))
// dtable[ids[i], :] += dout[i, :]; repeated ids must not lose updates.
// Tokens whose id equals padding_idx contribute nothing (torch's
// nn.Embedding(padding_idx=...)); padding_idx < 0 means none.
BERTKIT_OP(embedding_backward, (int64_t n, int64_t dim, int64_t vocab, int64_t padding_idx,
                                const int32_t* ids, const float* dout, float* dtable))
// The same into a row-sparse gradient: row_marks[vocab] says which rows of
// dtable hold values (1); the others hold garbage and count as zero. A row
// this op reaches for the first time is written (exactly 0 + its sum, the
// bits a zero-filled row would get) and marked; marked rows are added to.
// marks_fresh: every row counts as unmarked (row_marks is cleared first).
// The padding row is neither written nor marked. CPU backend only.
BERTKIT_OP(embedding_backward_rows, (int64_t n, int64_t dim, int64_t vocab, int64_t padding_idx,
                                     const int32_t* ids, const float* dout, float* dtable, int32_t* row_marks,
                                     bool marks_fresh))
// x[r, :] = 0 for every row r of [rows, width] whose row_marks[r] is 0: makes
// a row-sparse gradient dense. CPU backend only.
BERTKIT_OP(zero_unmarked_rows, (int64_t rows, int64_t width, const int32_t* row_marks, float* x))

// ---- attention (attention.cpp) --------------------------------------------
// q, k, v, out: [batch, seq, heads * head_dim] (the layout Linear produces).
// mask: [batch, seq] of 0/1 (int32); key positions with 0 get the additive
// bias -FLT_MAX, as transformers does, so fully padded rows give a uniform
// softmax instead of NaN. probs: [batch, heads, seq, seq] softmax before
// dropout, saved for backward. Dropout on probs uses (seed, offset) like
// dropout_forward, element index = flat index into probs.
BERTKIT_OP(attention_forward, (int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, float scale,
                               float dropout_p, uint64_t seed, uint64_t offset, const float* q,
                               const float* k, const float* v, const int32_t* mask, float* probs, float* out))
// dq / dk / dv may each be null (not needed); otherwise accumulated into.
BERTKIT_OP(attention_backward, (int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, float scale,
                                float dropout_p, uint64_t seed, uint64_t offset, const float* q,
                                const float* k, const float* v, const float* probs, const float* dout,
                                float* dq, float* dk, float* dv))

// ---- fused attention (flash_attention.cpp) ----------------------------------
// The attention above without the [batch, heads, seq, seq] probabilities:
// same layout, mask, scale and dropout (the keep decision for probs element
// (b, h, i, j) is the draw of flat index ((b * heads + h) * seq + i) * seq + j,
// bit for bit the materialised op's), computed tile by tile with an online
// softmax. Saves only lse: [batch, heads, seq], each row's log-sum-exp of
// its scores, from which backward recomputes the probabilities. A batch row
// whose keys are all padded gets the same uniform softmax as above.
BERTKIT_OP(flash_attention_forward, (int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, float scale,
                                     float dropout_p, uint64_t seed, uint64_t offset, const float* q,
                                     const float* k, const float* v, const int32_t* mask, float* lse,
                                     float* out))
// out is the forward's output (backward needs rowsum(dout * out)). dq / dk /
// dv may each be null; otherwise accumulated into.
BERTKIT_OP(flash_attention_backward, (int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                                      float scale, float dropout_p, uint64_t seed, uint64_t offset,
                                      const float* q, const float* k, const float* v, const int32_t* mask,
                                      const float* lse, const float* out, const float* dout, float* dq,
                                      float* dk, float* dv))

// ---- unpadded (variable-length) attention (varlen_attention.cpp) ------------
// The attention above over packed sequences instead of a padded batch, as
// FlashAttention's varlen kernels take them: q, k, v, out are [tokens,
// heads * head_dim], sequence b being rows [cu_seqlens[b], cu_seqlens[b + 1])
// (cu_seqlens: int32 [batch + 1], 0 = cu_seqlens[0] <= ... <= cu_seqlens[batch]
// = tokens, every length <= seq; checked by the caller, which passes tokens
// too, so no backend has to read cu_seqlens back to size its work). Each sequence attends
// to itself only: no mask, no work on padding. probs holds, per sequence b,
// its [heads, L_b, L_b] softmax before dropout, the sequences one after the
// other (sum over b of heads * L_b^2 floats). Dropout: element (b, h, i, j)
// draws the flat index ((b * heads + h) * seq + i) * seq + j, i.e. exactly
// the keep decision attention_forward makes on the padded batch of these
// sequences (each at the start of its row, padded to seq). Every (sequence,
// head) pair is independent, so results do not depend on the thread count;
// for a query row they equal attention_forward's on the padded batch.
BERTKIT_OP(varlen_attention_forward, (int64_t batch, int64_t tokens, int64_t seq, int64_t heads, int64_t head_dim, float scale,
                                      float dropout_p, uint64_t seed, uint64_t offset, const int32_t* cu_seqlens,
                                      const float* q, const float* k, const float* v, float* probs, float* out))
// dq / dk / dv may each be null (not needed); otherwise accumulated into.
BERTKIT_OP(varlen_attention_backward, (int64_t batch, int64_t tokens, int64_t seq, int64_t heads, int64_t head_dim, float scale,
                                       float dropout_p, uint64_t seed, uint64_t offset, const int32_t* cu_seqlens,
                                       const float* q, const float* k, const float* v, const float* probs,
                                       const float* dout, float* dq, float* dk, float* dv))

// ---- packing rows: gathers and scatters (packing.cpp) ----------------------------
// What unpadded execution moves between layouts: packing the real tokens of a
// padded batch ([batch * seq, cols] -> [tokens, cols]), unpacking them back,
// and picking one row per sequence (the [CLS] rows). index values lie in
// [0, src_rows) (checked by the caller).
// dst[i, :] = src[index[i], :] for i < n, or dst[i, :] += ... when accumulate.
BERTKIT_OP(gather_rows_forward, (int64_t n, int64_t cols, int64_t src_rows, const int32_t* index, const float* src,
                                 float* dst, bool accumulate))
// dsrc[index[i], :] += ddst[i, :] for i < n; repeated indices all land.
BERTKIT_OP(gather_rows_backward, (int64_t n, int64_t cols, int64_t src_rows, const int32_t* index,
                                  const float* ddst, float* dsrc))

// ---- disentangled attention's pieces (transpose.cpp, gather.cpp, softmax.cpp) ----
// DeBERTa's attention is built from gemms and these three families.
//
// dst[o, c, r, i] = src[o, r, c, i]: src is [outer, rows, cols, inner], dst
// [outer, cols, rows, inner] (torch's x.transpose(1, 2).contiguous() of a 4-D x).
BERTKIT_OP(swap_axes_forward, (int64_t outer, int64_t rows, int64_t cols, int64_t inner, const float* src,
                               float* dst))
// dsrc[o, r, c, i] += ddst[o, c, r, i].
BERTKIT_OP(swap_axes_backward, (int64_t outer, int64_t rows, int64_t cols, int64_t inner, const float* ddst,
                                float* dsrc))
// out[n, s, t] = x[n, s, index[s, t]] (torch.gather along the last dim with an
// index broadcast over n): x [batch, rows, width], index [rows, picks] with
// values in [0, width) (checked by the caller), out [batch, rows, picks].
BERTKIT_OP(gather_columns_forward, (int64_t batch, int64_t rows, int64_t width, int64_t picks, const float* x,
                                    const int32_t* index, float* out))
// dx[n, s, index[s, t]] += dout[n, s, t]; indices repeated within a row all land.
BERTKIT_OP(gather_columns_backward, (int64_t batch, int64_t rows, int64_t width, int64_t picks,
                                     const int32_t* index, const float* dout, float* dx))
// probs = softmax(scale * x) over the last dim, x and probs [groups, batch, seq, seq],
// mask [batch, seq] shared by the groups (heads). Element (i, j) of batch b is
// kept when mask[b, i] != 0 and mask[b, j] != 0; the others are set to
// -FLT_MAX before the softmax (torch's masked_fill with finfo(float32).min),
// so a row with nothing kept (a padded query) is uniform, never NaN.
BERTKIT_OP(masked_softmax_forward, (int64_t groups, int64_t batch, int64_t seq, float scale, const float* x,
                                    const int32_t* mask, float* probs))
// dx += kept ? scale * p * (dp - sum_j p_j dp_j) : 0 (masked_fill passes no
// gradient to the elements it filled).
BERTKIT_OP(masked_softmax_backward, (int64_t groups, int64_t batch, int64_t seq, float scale,
                                     const float* probs, const float* dprobs, const int32_t* mask, float* dx))

// ---- masked max pooling (pooling.cpp) -------------------------------------------
// The "max" classification head: per feature, the maximum of h over the
// tokens of each batch row whose mask is non-zero. h [batch, seq, dim],
// mask [batch, seq] (int32, non-zero = token), out [batch, dim], argmax
// [batch, dim] (int32, the seq index chosen, saved for backward). The first
// index wins ties; a NaN wins over any number (torch's max propagates NaN),
// the first NaN among several. A row with no token at all gets out = 0 and
// argmax = -1 (no gradient): finite, where sentence-transformers' -1e9 fill
// would give -1e9; the TypeScript layer rejects such rows before calling.
BERTKIT_OP(masked_max_pool_forward, (int64_t batch, int64_t seq, int64_t dim, const float* h,
                                     const int32_t* mask, float* out, int32_t* argmax))
// dh[b, argmax[b, d], d] += dout[b, d]. An argmax outside [0, seq) (the -1
// of an empty row) sends no gradient: argmax is written by the forward on
// the device, so it is not range-checked, and this keeps any value harmless.
// Every (b, d) writes its own element of dh: no two updates collide.
BERTKIT_OP(masked_max_pool_backward, (int64_t batch, int64_t seq, int64_t dim, const int32_t* argmax,
                                      const float* dout, float* dh))

// ---- losses (loss.cpp) ------------------------------------------------------
// Mean cross-entropy over rows whose label != ignore_index (torch semantics:
// 0/0 = NaN when every row is ignored). loss[0] is written. Labels were
// range-checked by the caller. Class weights may be null.
BERTKIT_OP(cross_entropy_forward, (int64_t rows, int64_t classes, const float* logits, const int32_t* labels,
                                   int32_t ignore_index, const float* class_weights, float* loss))
// dlogits += dloss[0] * d(mean CE)/dlogits. dloss lives on the device.
BERTKIT_OP(cross_entropy_backward, (int64_t rows, int64_t classes, const float* logits, const int32_t* labels,
                                    int32_t ignore_index, const float* class_weights, const float* dloss,
                                    float* dlogits))

// ---- optimizer (adamw.cpp) --------------------------------------------------
// torch.optim.AdamW, one tensor: param -= lr*wd*param; m,v moments; bias
// correction with `step` (1-based); grad is multiplied by *grad_scale first
// (clipping coefficient / loss-scale inverse, kept on the device; null = 1).
// Hyperparameters are double: torch computes 1 - beta2 etc. in double.
BERTKIT_OP(adamw_step, (int64_t n, double lr, double beta1, double beta2, double eps, double weight_decay,
                        int64_t step, const float* grad_scale, const float* grad, float* param,
                        float* exp_avg, float* exp_avg_sq))
// clip_coef[0] = min(1, max_norm / (sqrt(sum_sq[0]) + 1e-6)), torch's clip_grad_norm_.
BERTKIT_OP(clip_coefficient, (const float* sum_sq, float max_norm, float* clip_coef))

// The same AdamW step for `count` tensors at once (one param group: the
// hyperparameters are shared, the step number is per tensor). Tensor t has
// sizes[t] elements; every element gets exactly the arithmetic of
// adamw_step, so results are bit-identical to calling it per tensor.
// found_inf (null = none) is a one-element device flag: when it is non-zero
// the op changes nothing (torch's GradScaler skipping optimizer.step()).
// halves (null, or per tensor null) receive a BF16 copy of the updated
// parameter, the bits the cast op would give it (autocast's weight copy
// written in the same pass; CPU backend only).
// The arrays are read during the call only; the pointers they hold must
// stay valid until the op has run.
BERTKIT_OP(multi_tensor_adamw, (int64_t count, const int64_t* sizes, float* const* params,
                                const float* const* grads, float* const* exp_avgs, float* const* exp_avg_sqs,
                                double lr, double beta1, double beta2, double eps, double weight_decay,
                                const int64_t* steps, const float* grad_scale, const float* found_inf,
                                uint16_t* const* halves))
// out[0] += sum over the tensors of sum of x^2, accumulated in double and
// rounded to float once: one op for a global gradient norm. Fixed blocks per
// tensor, so the result does not depend on the thread count or the GPU.
BERTKIT_OP(multi_tensor_sum_squares, (int64_t count, const int64_t* sizes, const float* const* tensors,
                                      float* out))
// The same where some tensors are row-sparse gradients: row_marks[t] (null:
// dense) marks the rows of width widths[t] that hold values; the others count
// as zero and are not read. Bit-identical to the dense op on the tensors with
// their unmarked rows zeroed (zeros add nothing to the fixed blocks' sums).
// CPU backend only when some row_marks[t] is set.
BERTKIT_OP(multi_tensor_sum_squares_rows, (int64_t count, const int64_t* sizes, const float* const* tensors,
                                           const int32_t* const* row_marks, const int64_t* widths, float* out))
// AdamW with deferred updates of rows whose gradient is zero (adamw.cpp). The
// tensor is [rows, width]; row_steps[r] is the step row r of param, exp_avg
// and exp_avg_sq is up to date with. log holds log_len consecutive steps, each
// 6 doubles: lr, beta1, beta2, eps, weight_decay, step number; scale_log[j]
// is step j's gradient scale. A row is brought from row_steps[r] to step s by
// the very arithmetic of multi_tensor_adamw with a zero gradient, per step.
//  - grad null (catch up): the rows listed in ids (n_ids, repeats allowed;
//    ids null: every row) are brought to the log's last step.
//  - grad set (a step): the log's last entry is this step; scale_log[last] is
//    set to *grad_scale (1 when null). Rows with row_marks[r] != 0 are caught
//    up to the step before and updated with their gradient row; the others
//    are left behind. grad's unmarked rows are not read.
// CPU backend only.
BERTKIT_OP(adamw_rows, (int64_t rows, int64_t width, const int32_t* ids, int64_t n_ids, const int32_t* row_marks,
                        int32_t* row_steps, int64_t log_len, const double* log, float* scale_log,
                        const float* grad_scale, const float* grad, float* param, float* exp_avg,
                        float* exp_avg_sq))
// found_inf[0] = 1 when x[0] is inf or NaN, else 0. Applied to a sum of
// squares it flags any non-finite gradient (an inf/NaN element makes the sum
// inf/NaN) and also a finite sum too large for float, whose clipping
// coefficient would be 0 anyway.
BERTKIT_OP(nonfinite_flag, (const float* x, float* found_inf))