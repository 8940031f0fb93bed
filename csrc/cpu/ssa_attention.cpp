// Self Speaker Attention core on the CPU, forward and backward, parallel over the batch.
// One item's h (T x d) stays in cache, so the forward takes two passes over it (scores, then the
// weighted sums) instead of an online softmax, and the backward one pass.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

#include "checks.h"

namespace ssa_fast {
namespace {

// Dot product with 8 independent partial sums (the compiler vectorises them; a single running
// sum would be one long dependency chain).
template <typename scalar_t>
inline scalar_t dot(const scalar_t* a, const scalar_t* b, int64_t n) {
  scalar_t acc[8] = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[j + k] * b[j + k];
  scalar_t tail = 0;
  for (; j < n; ++j) tail += a[j] * b[j];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

template <typename scalar_t>
inline void axpy(scalar_t a, const scalar_t* x, scalar_t* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] += a * x[j];
}

void check_core_inputs(const at::Tensor& h_em, const at::Tensor& h_sp, const at::Tensor& qk_em,
                       const at::Tensor& qk_sp) {
  check_cpu_float(h_em, "h_em");
  check_dim(h_em, 3, "h_em");
  TORCH_CHECK(h_sp.sizes() == h_em.sizes(), "h_sp must have the shape of h_em ", h_em.sizes(),
              ", got ", h_sp.sizes());
  const auto B = h_em.size(0), d = h_em.size(2);
  for (const auto* t : {&qk_em, &qk_sp}) {
    TORCH_CHECK(t->dim() == 2 && t->size(0) == B && t->size(1) == d,
                "qk_em / qk_sp must have shape (", B, ", ", d, "), got ", t->sizes());
    check_same_dtype(h_em, *t, "h_em", "qk");
  }
  check_same_dtype(h_em, h_sp, "h_em", "h_sp");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ssa_core_fwd_cpu(
    const at::Tensor& h_em_in, const at::Tensor& h_sp_in, const at::Tensor& qk_em_in,
    const at::Tensor& qk_sp_in, double scale) {
  check_core_inputs(h_em_in, h_sp_in, qk_em_in, qk_sp_in);
  const auto h_em = h_em_in.contiguous(), h_sp = h_sp_in.contiguous();
  const auto qk_em = qk_em_in.contiguous(), qk_sp = qk_sp_in.contiguous();
  const int64_t B = h_em.size(0), T = h_em.size(1), d = h_em.size(2);
  auto p_em = at::zeros({B, d}, h_em.options());
  auto p_sp = at::zeros({B, d}, h_em.options());
  auto alpha = at::empty({B, 2 * T}, h_em.options());
  auto lse = at::empty({B}, h_em.options());
  AT_DISPATCH_FLOATING_TYPES(h_em.scalar_type(), "ssa_core_fwd_cpu", [&] {
    const scalar_t* he = h_em.data_ptr<scalar_t>();
    const scalar_t* hs = h_sp.data_ptr<scalar_t>();
    const scalar_t* qe = qk_em.data_ptr<scalar_t>();
    const scalar_t* qs = qk_sp.data_ptr<scalar_t>();
    scalar_t* pe = p_em.data_ptr<scalar_t>();
    scalar_t* ps = p_sp.data_ptr<scalar_t>();
    scalar_t* al = alpha.data_ptr<scalar_t>();
    scalar_t* ls = lse.data_ptr<scalar_t>();
    const auto sc = static_cast<scalar_t>(scale);
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const scalar_t* hb[2] = {he + b * T * d, hs + b * T * d};
        const scalar_t* qb[2] = {qe + b * d, qs + b * d};
        scalar_t* pb[2] = {pe + b * d, ps + b * d};
        scalar_t* ab = al + b * 2 * T;
        scalar_t m = -std::numeric_limits<scalar_t>::infinity();
        for (int x = 0; x < 2; ++x)
          for (int64_t t = 0; t < T; ++t) {
            const scalar_t s = sc * dot(hb[x] + t * d, qb[x], d);
            ab[x * T + t] = s;
            m = std::max(m, s);
          }
        scalar_t l = 0;
        for (int64_t i = 0; i < 2 * T; ++i) {
          ab[i] = std::exp(ab[i] - m);
          l += ab[i];
        }
        const scalar_t inv = scalar_t(1) / l;
        for (int64_t i = 0; i < 2 * T; ++i) ab[i] *= inv;
        ls[b] = m + std::log(l);
        for (int x = 0; x < 2; ++x)
          for (int64_t t = 0; t < T; ++t) axpy(ab[x * T + t], hb[x] + t * d, pb[x], d);
      }
    });
  });
  return {p_em, p_sp, alpha, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ssa_core_bwd_cpu(
    const at::Tensor& h_em_in, const at::Tensor& h_sp_in, const at::Tensor& qk_em_in,
    const at::Tensor& qk_sp_in, const at::Tensor& alpha_in, const at::Tensor& p_em_in,
    const at::Tensor& p_sp_in, const at::Tensor& dp_em_in, const at::Tensor& dp_sp_in,
    const at::Tensor& dalpha_in, double scale) {
  check_core_inputs(h_em_in, h_sp_in, qk_em_in, qk_sp_in);
  const int64_t B = h_em_in.size(0), T = h_em_in.size(1), d = h_em_in.size(2);
  for (const auto* t : {&p_em_in, &p_sp_in, &dp_em_in, &dp_sp_in})
    TORCH_CHECK(t->dim() == 2 && t->size(0) == B && t->size(1) == d,
                "p / dp must have shape (", B, ", ", d, "), got ", t->sizes());
  for (const auto* t : {&alpha_in, &dalpha_in})
    TORCH_CHECK(t->dim() == 2 && t->size(0) == B && t->size(1) == 2 * T,
                "alpha / dalpha must have shape (", B, ", ", 2 * T, "), got ", t->sizes());
  const auto opt = h_em_in.options();
  auto c = [&](const at::Tensor& t) { return t.to(opt.dtype()).contiguous(); };
  const auto h_em = c(h_em_in), h_sp = c(h_sp_in), qk_em = c(qk_em_in), qk_sp = c(qk_sp_in);
  const auto alpha = c(alpha_in), p_em = c(p_em_in), p_sp = c(p_sp_in);
  const auto dp_em = c(dp_em_in), dp_sp = c(dp_sp_in), dalpha = c(dalpha_in);
  auto dh_em = at::empty({B, T, d}, opt), dh_sp = at::empty({B, T, d}, opt);
  auto dqk_em = at::zeros({B, d}, opt), dqk_sp = at::zeros({B, d}, opt);
  AT_DISPATCH_FLOATING_TYPES(h_em.scalar_type(), "ssa_core_bwd_cpu", [&] {
    const auto sc = static_cast<scalar_t>(scale);
    const scalar_t* h[2] = {h_em.data_ptr<scalar_t>(), h_sp.data_ptr<scalar_t>()};
    const scalar_t* qk[2] = {qk_em.data_ptr<scalar_t>(), qk_sp.data_ptr<scalar_t>()};
    const scalar_t* p[2] = {p_em.data_ptr<scalar_t>(), p_sp.data_ptr<scalar_t>()};
    const scalar_t* dp[2] = {dp_em.data_ptr<scalar_t>(), dp_sp.data_ptr<scalar_t>()};
    scalar_t* dh[2] = {dh_em.data_ptr<scalar_t>(), dh_sp.data_ptr<scalar_t>()};
    scalar_t* dqk[2] = {dqk_em.data_ptr<scalar_t>(), dqk_sp.data_ptr<scalar_t>()};
    const scalar_t* al = alpha.data_ptr<scalar_t>();
    const scalar_t* dal = dalpha.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const scalar_t* ab = al + b * 2 * T;
        const scalar_t* dab = dal + b * 2 * T;
        // D = sum_t alpha_t dalpha_t with dalpha_t = h_t . dp + dalpha_out_t
        scalar_t D = dot(p[0] + b * d, dp[0] + b * d, d) + dot(p[1] + b * d, dp[1] + b * d, d) +
                     dot(ab, dab, 2 * T);
        for (int x = 0; x < 2; ++x) {
          const scalar_t* dpb = dp[x] + b * d;
          const scalar_t* qkb = qk[x] + b * d;
          scalar_t* dqkb = dqk[x] + b * d;
          for (int64_t t = 0; t < T; ++t) {
            const scalar_t* ht = h[x] + (b * T + t) * d;
            scalar_t* dht = dh[x] + (b * T + t) * d;
            const scalar_t a = ab[x * T + t];
            const scalar_t ds = a * (dot(ht, dpb, d) + dab[x * T + t] - D);
            const scalar_t g = sc * ds;
            for (int64_t j = 0; j < d; ++j) dht[j] = a * dpb[j] + g * qkb[j];
            axpy(g, ht, dqkb, d);
          }
        }
      }
    });
  });
  return {dh_em, dh_sp, dqk_em, dqk_sp};
}

}  // namespace

TORCH_LIBRARY_IMPL(ssa_fast, CPU, m) {
  m.impl("ssa_core_fwd", &ssa_core_fwd_cpu);
  m.impl("ssa_core_bwd", &ssa_core_bwd_cpu);
}

}  // namespace ssa_fast
