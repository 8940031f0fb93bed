// CPU emulation of the CUDA logmel_delta kernel: runs the kernel's own block program
// (csrc/cuda/logmel_delta_tile.cuh) block by block with the host compiler. Built by
// test_logmel_cuda_source.py into a small shared library and called through ctypes.
//
// The threads of a block run one after another, each through its share of every loop issued
// since the last barrier (GPU semantics between barriers: a thread's own writes are visible to it,
// another thread's only after a barrier). Threads go in forward or reverse order. Shared memory is
// refilled with NaN before every block, so a read of shared memory nobody wrote, or that another
// thread wrote without a barrier in between, shows up in the output.
//
// The second program (logmel_delta_regfft_tile.cuh) adds teams of P lanes that synchronise with
// warp barriers only and keep registers across them: each lane of a team runs as a coroutine
// (ucontext) that stops at every team barrier, the lanes of a team one after another between two
// team barriers, the teams between two block barriers one after another (both orders forward or
// reverse). A lane that reads what another lane or team writes without the barrier in between
// then reads NaN or gives an order-dependent result, as with the first program.
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <utility>
#include <vector>

#include "cuda/logmel_delta_regfft_tile.cuh"
#include "cuda/logmel_delta_tile.cuh"

namespace {

class HostExec {
 public:
  HostExec(int threads, bool reverse) : threads_(threads), reverse_(reverse) {}
  template <class Fn>
  void strided(int n, Fn&& fn) const {
    phase_.emplace_back(n, std::function<void(int)>(fn));
  }
  void sync() const {
    for (int k = 0; k < threads_; ++k) {
      const int tid = reverse_ ? threads_ - 1 - k : k;
      for (const auto& [n, fn] : phase_)
        for (int i = tid; i < n; i += threads_) fn(i);
    }
    phase_.clear();
  }
  void finish() const { sync(); }

 private:
  int threads_;
  bool reverse_;
  mutable std::vector<std::pair<int, std::function<void(int)>>> phase_;
};

// The executor of the team program. Thread tid = team slot * P + lane; strided loops and team
// loops queued since the last barrier run team slot by team slot at the next one.
class TeamExec;

struct HostTeam {
  TeamExec* ex;
  void sync() const;
};

class TeamExec {
 public:
  TeamExec(int threads, int lanes, bool reverse)
      : threads_(threads), lanes_(lanes), reverse_(reverse), lane_(lanes) {
    for (auto& l : lane_) l.stack.resize(1 << 18);
  }
  template <class Fn>
  void strided(int n, Fn&& fn) const {
    phase_.push_back({n, std::function<void(int)>(fn), {}});
  }
  template <class Fn>
  void teams(int n, int lanes, Fn&& fn) const {
    if (lanes != lanes_) failed_ = true;
    phase_.push_back({n, {}, std::function<void(const HostTeam&, int, int)>(fn)});
  }
  void sync() const {
    const int slots = threads_ / lanes_;
    for (int k = 0; k < slots; ++k) {
      const int slot = reverse_ ? slots - 1 - k : k;
      for (const auto& item : phase_) {
        if (item.strided) {
          for (int l = 0; l < lanes_; ++l) {
            const int tid = slot * lanes_ + (reverse_ ? lanes_ - 1 - l : l);
            for (int i = tid; i < item.n; i += threads_) item.strided(i);
          }
        } else {
          for (int t = slot; t < item.n; t += slots) run_team(item.team, t);
        }
      }
    }
    phase_.clear();
  }
  void finish() const { sync(); }
  bool failed() const { return failed_; }

  // (called by HostTeam::sync from inside a lane's coroutine)
  void team_sync() const {
    Lane& l = lane_[current_];
    ++l.syncs;
    swapcontext(&l.ctx, &main_);
  }

 private:
  struct Item {
    int n;
    std::function<void(int)> strided;
    std::function<void(const HostTeam&, int, int)> team;
  };
  struct Lane {
    ucontext_t ctx;
    std::vector<char> stack;
    int syncs = 0;
    bool done = false;
  };

  static void lane_entry() {
    const TeamExec* ex = running_;
    const HostTeam team{const_cast<TeamExec*>(ex)};
    const int lane = ex->current_;
    (*ex->fn_)(team, ex->t_, lane);
    ex->lane_[lane].done = true;  // (returns to main_ through uc_link)
  }

  // Team t: its lanes as coroutines, round by round (a round: every lane from one team barrier
  // to the next); every lane must pass the same number of barriers.
  void run_team(const std::function<void(const HostTeam&, int, int)>& fn, int t) const {
    running_ = this;
    fn_ = &fn;
    t_ = t;
    for (auto& l : lane_) {
      getcontext(&l.ctx);
      l.ctx.uc_stack.ss_sp = l.stack.data();
      l.ctx.uc_stack.ss_size = l.stack.size();
      l.ctx.uc_link = &main_;
      makecontext(&l.ctx, &TeamExec::lane_entry, 0);
      l.syncs = 0;
      l.done = false;
    }
    for (int round = 0;; ++round) {
      for (int k = 0; k < lanes_; ++k) {
        current_ = reverse_ ? lanes_ - 1 - k : k;
        swapcontext(&main_, &lane_[current_].ctx);
      }
      int done = 0;
      for (const auto& l : lane_) {
        done += l.done;
        if (l.syncs != round + (l.done ? 0 : 1) && !(l.done && l.syncs == round)) failed_ = true;
      }
      if (done == lanes_) break;
      if (done != 0) {  // a barrier that only some lanes reach: undefined on the GPU
        failed_ = true;
        break;
      }
    }
  }

  int threads_, lanes_;
  bool reverse_;
  mutable std::vector<Lane> lane_;
  mutable std::vector<Item> phase_;
  mutable ucontext_t main_;
  mutable int current_ = 0, t_ = 0;
  mutable const std::function<void(const HostTeam&, int, int)>* fn_ = nullptr;
  mutable bool failed_ = false;
  static thread_local const TeamExec* running_;
};

thread_local const TeamExec* TeamExec::running_ = nullptr;

void HostTeam::sync() const { ex->team_sync(); }

}  // namespace

extern "C" {

// out (B, 3, T, M) as the kernel writes it; returns the tile used (or -1 for a bad n_fft).
int ssa_logmel_emulate(const float* x, int64_t B, int64_t N, const int64_t* lengths,
                       const float* window, int n_fft, const float* fb, int n_mels, int hop,
                       int center, float amin, int tile, int threads, int reverse, float* out) {
  using namespace ssa_fast::logmel;
  if (!fft_size_supported(n_fft)) return -1;
  const Geometry g = plan(n_fft, n_mels, hop, center != 0, N, amin, 227 * 1024, tile);
  std::vector<int> bands(2 * n_mels);
  for (int m = 0; m < n_mels; ++m)
    band_range(fb + int64_t(m) * g.n_freqs, g.n_freqs, &bands[2 * m], &bands[2 * m + 1]);
  std::vector<float> smem(smem_layout(g).floats);
  const HostExec ex(threads, reverse != 0);
  for (int64_t block = 0; block < B * g.tiles_per_item; ++block) {
    smem.assign(smem.size(), std::numeric_limits<float>::quiet_NaN());
    tile_program(ex, g, block, x, lengths, window, fb, bands.data(), out, smem.data());
  }
  return g.tile;
}

// The same for the second program (logmel_delta_regfft_tile.cuh); threads a multiple of the team
// size of n_fft (8, 16 or 32 lanes). Returns the tile, -1 for a bad n_fft, -2 when a team
// barrier was reached by only some lanes of a team (or the team size is wrong), -3 for a thread
// count that is not a multiple of the team size.
int ssa_logmel_regfft_emulate(const float* x, int64_t B, int64_t N, const int64_t* lengths,
                              const float* window, int n_fft, const float* fb, int n_mels, int hop,
                              int center, float amin, int tile, int threads, int reverse,
                              float* out) {
  using namespace ssa_fast::logmel;
  if (!fft_size_supported(n_fft)) return -1;
  const int lanes = regfft::split_for(n_fft).lanes;
  if (threads < lanes || threads % lanes != 0) return -3;
  const Geometry g = regfft::plan(n_fft, n_mels, hop, center != 0, N, amin, 227 * 1024, tile);
  std::vector<int> bands(regfft::bands_size(n_mels, n_fft));
  for (int m = 0; m < n_mels; ++m)
    band_range(fb + int64_t(m) * g.n_freqs, g.n_freqs, &bands[2 * m], &bands[2 * m + 1]);
  regfft::deal_filters(bands.data(), n_mels, lanes, bands.data() + 2 * n_mels);
  std::vector<float> smem(regfft::layout(g).floats);
  const TeamExec ex(threads, lanes, reverse != 0);
  for (int64_t block = 0; block < B * g.tiles_per_item; ++block) {
    smem.assign(smem.size(), std::numeric_limits<float>::quiet_NaN());
    regfft::tile_program_for(ex, g, block, x, lengths, window, fb, bands.data(), out,
                             smem.data());
  }
  return ex.failed() ? -2 : g.tile;
}

// deal_filters for the non-zero bin ranges bands (M, 2): deal gets P + 1 + M entries.
void ssa_logmel_regfft_deal(const int* bands, int n_mels, int lanes, int* deal) {
  ssa_fast::logmel::regfft::deal_filters(bands, n_mels, lanes, deal);
}

// The second program's geometry: tile, group, shared memory bytes, T.
void ssa_logmel_regfft_plan(int n_fft, int n_mels, int hop, int center, int64_t N,
                            int64_t smem_limit, int64_t* result) {
  using namespace ssa_fast::logmel;
  const Geometry g = regfft::plan(n_fft, n_mels, hop, center != 0, N, 1e-10f, smem_limit);
  result[0] = g.tile;
  result[1] = g.group;
  result[2] = 4 * int64_t(regfft::layout(g).floats);
  result[3] = g.T;
}

// The geometry the CUDA launcher would choose: tile, group, shared memory bytes, T.
void ssa_logmel_plan(int n_fft, int n_mels, int hop, int center, int64_t N, int64_t smem_limit,
                     int64_t* result) {
  using namespace ssa_fast::logmel;
  const Geometry g = plan(n_fft, n_mels, hop, center != 0, N, 1e-10f, smem_limit);
  result[0] = g.tile;
  result[1] = g.group;
  result[2] = 4 * int64_t(smem_layout(g).floats);
  result[3] = g.T;
}

// power (n_fft / 2 + 1) of one frame through the kernel's FFT steps alone (bit-reversed load,
// FFT passes, real-FFT split).
int ssa_logmel_rfft_power(const float* frame, int n_fft, float* power) {
  using namespace ssa_fast::logmel;
  if (!fft_size_supported(n_fft)) return -1;
  const int half = n_fft / 2, bits = log2_exact(half);
  std::vector<Complex> tw(half), z(slot(half));
  for (int k = 0; k < half; ++k) tw[k] = twiddle(k, n_fft);
  for (int n = 0; n < half; ++n) z[slot(bit_reverse(n, bits))] = {frame[2 * n], frame[2 * n + 1]};
  for (int p = 0; p < fft_passes(bits); ++p)
    for (int j = 0; j < 1 << fft_pass_item_bits(bits, p); ++j)
      fft_pass(z.data(), tw.data(), half, bits, p, j);
  for (int k = 0; k <= half; ++k) power[k] = rfft_power(z.data(), tw.data(), half, k);
  return 0;
}

}  // extern "C"
