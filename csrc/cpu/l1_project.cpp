// L1 weight projection (design.md section 6) on the CPU, in place: row c of weight (K, n) gets L1
// norm r = N / (K * sum_i ||x_i||_1); a zero row stays zero; a batch whose total norm is zero or
// not finite leaves weight untouched.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <functional>
#include <limits>

#include "checks.h"

namespace ssa_fast {
namespace {

void l1_project_cpu_(at::Tensor& weight, const at::Tensor& x_in) {
  check_cpu_float(weight, "weight");
  check_dim(weight, 2, "weight");
  check_dim(x_in, 2, "x");
  TORCH_CHECK(x_in.size(1) == weight.size(1), "x must have ", weight.size(1),
              " columns (the layer's inputs), got shape ", x_in.sizes());
  TORCH_CHECK(weight.is_contiguous(), "weight must be contiguous");
  const int64_t K = weight.size(0), n = weight.size(1), N = x_in.size(0);
  const auto x = x_in.to(weight.scalar_type()).contiguous();
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "l1_project_cpu_", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    // sum_i ||x_i||_1 in double: chunks in parallel, 8 independent partial sums per chunk (a
    // single running sum is one long dependency chain).
    const double total = at::parallel_reduce(
        0, N * n, 4096, 0.0,
        [&](int64_t i0, int64_t i1, double init) {
          double acc[8] = {};
          int64_t i = i0;
          for (; i + 8 <= i1; i += 8)
            for (int k = 0; k < 8; ++k) acc[k] += std::abs(static_cast<double>(xp[i + k]));
          for (; i < i1; ++i) acc[0] += std::abs(static_cast<double>(xp[i]));
          return init + ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                 ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        },
        std::plus<double>());
    if (!(total > 0) || !std::isfinite(total)) return;
    const double r = static_cast<double>(N) / (static_cast<double>(K) * total);
    // a batch so small that the target norm overflows the weight's type leaves it unchanged
    if (!(r <= static_cast<double>(std::numeric_limits<scalar_t>::max()))) return;
    scalar_t* w = weight.data_ptr<scalar_t>();
    at::parallel_for(0, K, 16, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        scalar_t* row = w + k * n;
        double norm = 0;
        for (int64_t j = 0; j < n; ++j) norm += std::abs(static_cast<double>(row[j]));
        // a zero row stays zero; a row holding NaN or Inf stays as it is (r / inf x inf = NaN)
        if (!(norm > 0) || !std::isfinite(norm)) continue;
        const double f = r / norm;
        const auto f_w = static_cast<scalar_t>(f);
        if (std::isfinite(static_cast<double>(f_w))) {
          for (int64_t j = 0; j < n; ++j) row[j] *= f_w;
        } else {  // a row of tiny norm: the factor overflows the weight's type (0 x inf = NaN)
          for (int64_t j = 0; j < n; ++j) row[j] = static_cast<scalar_t>(row[j] * f);
        }
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(ssa_fast, CPU, m) { m.impl("l1_project_", &l1_project_cpu_); }

}  // namespace ssa_fast
