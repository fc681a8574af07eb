// W4A16 CPU operators exposed to Python: the linear, the fused MoE forward, a read-bandwidth probe and the
// CPU feature report that picks a path. The inner tile kernels live in w4a16_tiles.h.
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <torch/extension.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "pool.h"
#include "w4a16_tiles.h"
#include "w4a16_avx2.h"

namespace swarmkeep {
namespace {

enum Path : int64_t { kGeneric = 1, kAvx512 = 2, kAmx = 3, kFp16 = 4, kAvx2 = 5 };

// Feature bits the process may use (limit_features): lets a test or benchmark run this CPU as an AVX2-only one.
std::atomic<int64_t> feature_mask{-1};

bool os_allows_amx() {
  // Linux hands out the 8 KiB AMX tile state only to processes that ask for it.
  constexpr long kReqXcompPerm = 0x1023, kXfeatureTileData = 18;
  static const bool granted = syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureTileData) == 0;
  return granted;
}

int64_t detect_features() {
  unsigned a, b, c, d;
  int64_t caps = 0;
  if (!__get_cpuid_count(1, 0, &a, &b, &c, &d)) return 0;
  const bool osxsave = c & (1u << 27), fma = c & (1u << 12);
  if (!osxsave) return 0;
  unsigned xlo, xhi;
  __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  const bool ymm_os = (xlo & 0x6) == 0x6, zmm_os = (xlo & 0xe6) == 0xe6;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  const bool avx2 = b & (1u << 5), avx512f = b & (1u << 16), avx512bw = b & (1u << 30),
             avx512vl = b & (1u << 31), amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24),
             avx512fp16 = d & (1u << 23);
  unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
  __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1);
  const bool avx512bf16 = a1 & (1u << 5);
  if (avx2 && fma && ymm_os) caps |= 1;                                          // bit 0: AVX2+FMA
  if (zmm_os && avx512f && avx512bw && avx512vl && avx512bf16 && fma) caps |= 2;  // bit 1: AVX-512 BF16
  // XCR0's tile bits say nothing until permission is requested, so the kernel's answer decides.
  if ((caps & 2) && amx_bf16 && amx_tile && os_allows_amx()) caps |= 4;           // bit 2: AMX BF16
  if ((caps & 2) && avx512fp16 && SWK_HAVE_FP16) caps |= 8;                       // bit 3: AVX-512 FP16
  return caps;
}

int64_t cpu_features() {
  static const int64_t caps = detect_features();
  return caps & feature_mask.load(std::memory_order_relaxed);
}

// Keeps only the feature bits in mask (-1: all the CPU has) and returns what is left.
int64_t limit_features(int64_t mask) {
  feature_mask.store(mask, std::memory_order_relaxed);
  return cpu_features();
}

void check_path(int64_t path) {
  const int64_t caps = cpu_features();
  TORCH_CHECK(path == kGeneric || (path == kAvx2 && (caps & 1)) || (path == kAvx512 && (caps & 2)) || (path == kAmx && (caps & 4)) ||
                  (path == kFp16 && (caps & 8)),
              "W4A16 CPU path ", path, " is not supported on this CPU (features ", caps, ")");
}

void check_blocked(const torch::Tensor& w, const torch::Tensor& s, int64_t K, const char* name) {
  TORCH_CHECK(w.scalar_type() == torch::kInt32 && w.is_contiguous() && w.size(-1) == kTileN &&
                  w.size(-2) * 8 == K,
              name, ": blocked codes must be contiguous int32 [..., N/16, K/8, 16] with K = ", K);
  TORCH_CHECK(s.scalar_type() == torch::kBFloat16 && s.is_contiguous() && s.size(-1) == kTileN &&
                  s.size(-2) * kGroup == K && s.size(-3) == w.size(-3),
              name, ": blocked scales must be contiguous bf16 [..., N/16, K/32, 16] matching the codes");
}

// permute_rows with one vpermw per 32 inputs (K is a multiple of 32).
SWK_AVX512 void permute_rows_avx512(const uint16_t* src, int64_t ld_src, int64_t rows, int64_t K, uint16_t* dst) {
  alignas(64) uint16_t order[32];
  for (int l = 0; l < 32; ++l) order[(l / 8) * 8 + permuted_pos(l % 8)] = static_cast<uint16_t>(l);
  const __m512i idx = _mm512_load_si512(order);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < K; k += 32)
      _mm512_storeu_si512(dst + r * K + k, _mm512_permutexvar_epi16(idx, _mm512_loadu_si512(src + r * ld_src + k)));
}

// Copies bf16 rows into dst (ld = K) with every block of 8 inputs permuted to (0,4,1,5,2,6,3,7).
void permute_rows(const uint16_t* src, int64_t ld_src, int64_t rows, int64_t K, uint16_t* dst) {
  if (cpu_features() & 2) {
    permute_rows_avx512(src, ld_src, rows, K, dst);
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* in = src + r * ld_src;
    uint16_t* out = dst + r * K;
    for (int64_t k = 0; k < K; k += 8)
      for (int t = 0; t < 8; ++t) out[k + permuted_pos(t)] = in[k + t];
  }
}

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Permuted activation rows as the tile kernels read them (fp16 on the FP16 path), and what prepare_rows made
// for them: per-group sums on the AVX-512 BF16 path, each row's 2^e on the FP16 path.
struct Rows {
  const uint16_t* x;
  int64_t ld;
  int64_t count;
  const float* aux;
};

// Rows of out per tile that run_tiles writes: AMX stores whole 16-row tiles.
int64_t out_rows(int64_t path, int64_t rows) { return path == kAmx ? round_up(rows, kAmxRows) : rows; }

// Computes `tiles` consecutive 16-feature tiles for the rows into out ([tiles][out_rows][16] floats).
void run_tiles(int64_t path, const Rows& a, int64_t K, const int32_t* w, const uint16_t* s, int64_t tiles,
               float* out) {
  const int rows = static_cast<int>(a.count);
  if (path == kAvx2) {
    tile_avx2(a.aux, rows, K, w, s, tiles, out);
    return;
  }
  if (path == kAvx512) {
    tile_avx512(a.x, a.ld, a.aux, rows, K, w, s, tiles, out);
    return;
  }
#if SWK_HAVE_FP16
  if (path == kFp16) {
    tile_fp16(a.x, a.ld, a.aux, rows, K, w, s, tiles, out);
    return;
  }
#endif
  const int64_t w_tile = (K / 8) * kTileN, s_tile = (K / kGroup) * kTileN;
  const int64_t out_tile = out_rows(path, rows) * kTileN;
  for (int64_t t = 0; t < tiles; ++t) {
    if (path == kAmx) {
      tile_amx(a.x, a.ld, rows, K, w + t * w_tile, s + t * s_tile, out + t * out_tile);
    } else {
      tile_generic(a.x, a.ld, rows, K, w + t * w_tile, s + t * s_tile, out + t * out_tile);
    }
  }
}

// Floats of Rows::aux per row of K.
int64_t aux_per_row(int64_t path, int64_t K) {
  return path == kAvx512 ? K / kGroup : path == kFp16 ? 1 : path == kAvx2 ? avx2_row_floats(K) : 0;
}

// Readies `rows` permuted rows of K for the path: the AVX-512 BF16 path gets per-group sums (sum_groups); the
// FP16 path gets the rows converted in place (fp16_rows) and each row's 2^e; the AVX2 path gets fp32 rows
// (avx2_rows); other paths need nothing.
std::vector<float> prepare_rows(int64_t path, uint16_t* x, int64_t rows, int64_t K) {
  std::vector<float> aux(static_cast<size_t>(rows * aux_per_row(path, K)));
  if (path == kAvx2) avx2_rows(x, rows, K, aux.data());
  if (path == kAvx512)
    for (int64_t r = 0; r < rows; ++r) sum_groups(x + r * K, K, aux.data() + r * (K / kGroup));
#if SWK_HAVE_FP16
  if (path == kFp16) fp16_rows(x, rows, K, aux.data());
#endif
  return aux;
}

// Consecutive tiles per chunk of pool work: about kChunkBytes of weights, so each thread reads long streams
// (and the AVX-512 kernel's prefetch past a tile's end lands in its own next tile), yet at least 8 chunks per
// thread so that others pick up the share of a thread the OS deschedules.
int64_t tiles_per_chunk(int64_t tiles, int64_t K, int64_t threads) {
  constexpr int64_t kChunkBytes = 256 << 10;
  const int64_t tile_bytes = (K / 8) * kTileN * 4 + (K / kGroup) * kTileN * 2;
  return std::max<int64_t>(1, std::min(kChunkBytes / tile_bytes, tiles / (8 * std::max<int64_t>(threads, 1))));
}

std::function<void()> thread_begin(int64_t path) {
  if (path == kAmx) return [] { amx_begin(); };
  return {};
}
std::function<void()> thread_end(int64_t path) {
  if (path == kAmx) return [] { amx_end(); };
  return {};
}

// y[M, n] (bf16) = x[M, K] (bf16) @ W^T for a weight in the blocked layout.
torch::Tensor w4a16_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& s, int64_t n,
                           int64_t path, int64_t threads) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kBFloat16, "x must be bf16 [M, K]");
  const int64_t M = x.size(0), K = x.size(1);
  check_blocked(w, s, K, "weight");
  TORCH_CHECK(w.dim() == 3 && n > 0 && n <= w.size(0) * kTileN, "n out of range for the blocked weight");
  check_path(path);
  auto y = torch::empty({M, n}, x.options());
  if (M == 0) return y;
  const auto xc = x.contiguous();
  const int64_t m_pad = out_rows(path, M);
  std::vector<uint16_t> xp(static_cast<size_t>(m_pad * K), 0);
  permute_rows(reinterpret_cast<const uint16_t*>(xc.data_ptr()), K, M, K, xp.data());
  const std::vector<float> aux = prepare_rows(path, xp.data(), M, K);
  const Rows rows{xp.data(), K, M, aux.data()};
  const int32_t* wp = w.data_ptr<int32_t>();
  const uint16_t* sp = reinterpret_cast<const uint16_t*>(s.data_ptr());
  uint16_t* yp = reinterpret_cast<uint16_t*>(y.data_ptr());
  const int64_t tiles = (n + kTileN - 1) / kTileN, per_chunk = tiles_per_chunk(tiles, K, threads);
  WorkPool::instance().run(
      (tiles + per_chunk - 1) / per_chunk, static_cast<int>(threads),
      [&](int64_t chunk) {
        const int64_t t0 = chunk * per_chunk, count = std::min(tiles - t0, per_chunk);
        std::vector<float> out(static_cast<size_t>(count * m_pad * kTileN));
        run_tiles(path, rows, K, wp + t0 * (K / 8) * kTileN, sp + t0 * (K / kGroup) * kTileN, count, out.data());
        for (int64_t t = 0; t < count; ++t) {
          const int64_t n0 = (t0 + t) * kTileN, cols = std::min<int64_t>(kTileN, n - n0);
          const float* o = out.data() + t * m_pad * kTileN;
          for (int64_t m = 0; m < M; ++m)
            for (int64_t i = 0; i < cols; ++i) yp[m * n + n0 + i] = float_to_bf16(o[m * kTileN + i]);
        }
      },
      thread_begin(path), thread_end(path));
  return y;
}

// Routed experts of one MoE layer: returns fp32 [T, H] = sum over each token's experts of weight * expert(x).
// Experts are SwiGLU with gate/up stacked in w13 ([E, 2I/16, H/8, 16]: gate tiles, then up tiles) and down
// in w2 ([E, H/16, I/8, 16]). Phase 1 runs gate/up per (expert, tile) and writes bf16 silu(g) * u already
// permuted for phase 2; phase 2 owns whole output columns, so experts are summed without atomics.
torch::Tensor moe_forward(const torch::Tensor& x, const torch::Tensor& ids, const torch::Tensor& weights,
                          const torch::Tensor& w13, const torch::Tensor& s13, const torch::Tensor& w2,
                          const torch::Tensor& s2, int64_t path, int64_t threads) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kBFloat16, "x must be bf16 [T, H]");
  TORCH_CHECK(ids.dim() == 2 && ids.scalar_type() == torch::kInt64 && ids.size(0) == x.size(0),
              "topk ids must be int64 [T, k]");
  TORCH_CHECK(weights.sizes() == ids.sizes() && weights.scalar_type() == torch::kFloat32,
              "topk weights must be fp32 [T, k]");
  const int64_t T = x.size(0), H = x.size(1), E = w13.size(0), topk = ids.size(1);
  TORCH_CHECK(w13.dim() == 4 && w2.dim() == 4 && w2.size(0) == E, "w13/w2 must be [E, tiles, K/8, 16]");
  const int64_t I = w13.size(1) * kTileN / 2;
  check_blocked(w13, s13, H, "w13");
  check_blocked(w2, s2, I, "w2");
  TORCH_CHECK(w2.size(1) * kTileN == H && I % kGroup == 0, "w2 must produce H outputs from I inputs");
  check_path(path);
  auto out = torch::zeros({T, H}, x.options().dtype(torch::kFloat32));
  if (T == 0) return out;

  // Group tokens by expert (serial: T * k integers).
  const auto idc = ids.contiguous();
  const auto wc = weights.contiguous();
  const int64_t* idp = idc.data_ptr<int64_t>();
  const float* wtp = wc.data_ptr<float>();
  std::vector<int64_t> count(E, 0);
  for (int64_t i = 0; i < T * topk; ++i) {
    TORCH_CHECK(idp[i] >= 0 && idp[i] < E, "expert id ", idp[i], " out of range [0, ", E, ")");
    ++count[idp[i]];
  }
  std::vector<int64_t> active, row0;  // active experts and where their rows start in the gathered buffers
  int64_t rows_total = 0;
  for (int64_t e = 0; e < E; ++e) {
    if (!count[e]) continue;
    active.push_back(e);
    row0.push_back(rows_total);
    rows_total += out_rows(path, count[e]);
  }
  std::vector<int64_t> slot_of(E, 0), fill(E, 0), token(rows_total, -1);
  std::vector<float> gate_w(rows_total, 0.f);
  for (size_t a = 0; a < active.size(); ++a) slot_of[active[a]] = static_cast<int64_t>(a);
  for (int64_t i = 0; i < T * topk; ++i) {
    const int64_t e = idp[i], r = row0[slot_of[e]] + fill[e]++;
    token[r] = i / topk;
    gate_w[r] = wtp[i];
  }
  const auto xc = x.contiguous();
  const uint16_t* xsrc = reinterpret_cast<const uint16_t*>(xc.data_ptr());
  std::vector<uint16_t> xp(static_cast<size_t>(rows_total * H), 0), hp(static_cast<size_t>(rows_total * I), 0);
  for (int64_t r = 0; r < rows_total; ++r)
    if (token[r] >= 0) permute_rows(xsrc + token[r] * H, H, 1, H, xp.data() + r * H);
  const std::vector<float> xaux = prepare_rows(path, xp.data(), rows_total, H);
  std::vector<float> haux;  // prepare_rows of phase 1's output, for phase 2
  const int64_t n_active = static_cast<int64_t>(active.size());
  auto rows_of = [&](int64_t a, const std::vector<uint16_t>& buf, const std::vector<float>& aux, int64_t K) {
    return Rows{buf.data() + row0[a] * K, K, count[active[a]], aux.data() + row0[a] * aux_per_row(path, K)};
  };

  const int32_t* w13p = w13.data_ptr<int32_t>();
  const uint16_t* s13p = reinterpret_cast<const uint16_t*>(s13.data_ptr());
  const int32_t* w2p = w2.data_ptr<int32_t>();
  const uint16_t* s2p = reinterpret_cast<const uint16_t*>(s2.data_ptr());
  const int64_t tiles13 = 2 * I / kTileN, half = I / kTileN, tiles2 = H / kTileN;
  const int64_t w13_tile = (H / 8) * kTileN, s13_tile = (H / kGroup) * kTileN;
  const int64_t w2_tile = (I / 8) * kTileN, s2_tile = (I / kGroup) * kTileN;

  // Phase 1: chunks of consecutive gate tiles of one expert and the matching up tiles (two streams).
  const int64_t per1 = tiles_per_chunk(half, H, threads), chunks1 = (half + per1 - 1) / per1;
  WorkPool::instance().run(
      n_active * chunks1, static_cast<int>(threads),
      [&](int64_t chunk) {
        const int64_t a = chunk / chunks1, j0 = chunk % chunks1 * per1, e = active[a];
        const int64_t n_tiles = std::min(half - j0, per1), gt = e * tiles13 + j0, ut = gt + half;
        const Rows in = rows_of(a, xp, xaux, H);
        const int64_t out_tile = out_rows(path, in.count) * kTileN;
        std::vector<float> g(static_cast<size_t>(n_tiles * out_tile)), u(g.size());
        run_tiles(path, in, H, w13p + gt * w13_tile, s13p + gt * s13_tile, n_tiles, g.data());
        run_tiles(path, in, H, w13p + ut * w13_tile, s13p + ut * s13_tile, n_tiles, u.data());
        for (int64_t j = 0; j < n_tiles; ++j)
          for (int64_t m = 0; m < in.count; ++m) {
            uint16_t* h = hp.data() + (row0[a] + m) * I + (j0 + j) * kTileN;
            const float* gj = g.data() + j * out_tile + m * kTileN;
            const float* uj = u.data() + j * out_tile + m * kTileN;
            for (int i = 0; i < kTileN; ++i) {
              const float act = gj[i] / (1.f + std::exp(-gj[i])) * uj[i];
              h[(i / 8) * 8 + permuted_pos(i % 8)] = float_to_bf16(act);
            }
          }
      },
      thread_begin(path), thread_end(path));
  haux = prepare_rows(path, hp.data(), rows_total, I);

  // Phase 2: chunks of consecutive output tiles, each expert's run of them read as one stream.
  float* op = out.data_ptr<float>();
  const int64_t per2 = tiles_per_chunk(tiles2, I, threads);
  WorkPool::instance().run(
      (tiles2 + per2 - 1) / per2, static_cast<int>(threads),
      [&](int64_t chunk) {
        const int64_t j0 = chunk * per2, n_tiles = std::min(tiles2 - j0, per2);
        std::vector<float> y;
        for (int64_t a = 0; a < n_active; ++a) {
          const Rows in = rows_of(a, hp, haux, I);
          const int64_t out_tile = out_rows(path, in.count) * kTileN, t = active[a] * tiles2 + j0;
          y.resize(static_cast<size_t>(n_tiles * out_tile));
          run_tiles(path, in, I, w2p + t * w2_tile, s2p + t * s2_tile, n_tiles, y.data());
          for (int64_t j = 0; j < n_tiles; ++j)
            for (int64_t m = 0; m < in.count; ++m) {
              float* o = op + token[row0[a] + m] * H + (j0 + j) * kTileN;
              const float* yj = y.data() + j * out_tile + m * kTileN;
              const float gw = gate_w[row0[a] + m];
              for (int i = 0; i < kTileN; ++i) o[i] += gw * yj[i];
            }
        }
      },
      thread_begin(path), thread_end(path));
  return out;
}

// Reads every byte of buf on `threads` threads and returns a checksum (so the reads cannot be elided).
SWK_AVX512 int64_t read_avx512(const uint8_t* p, int64_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i + 256 <= n; i += 256) {
    a0 = _mm512_add_epi64(a0, _mm512_load_si512(p + i));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + i + 64));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + i + 128));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + i + 192));
  }
  return _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
}

int64_t read_portable(const uint8_t* p, int64_t n) {
  const int64_t* q = reinterpret_cast<const int64_t*>(p);
  int64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (int64_t i = 0; i + 4 <= n / 8; i += 4) {
    a0 += q[i];
    a1 += q[i + 1];
    a2 += q[i + 2];
    a3 += q[i + 3];
  }
  return a0 + a1 + a2 + a3;
}

int64_t read_bytes(const torch::Tensor& buf, int64_t threads) {
  TORCH_CHECK(buf.is_contiguous() && buf.scalar_type() == torch::kUInt8, "buffer must be contiguous uint8");
  const uint8_t* p = buf.data_ptr<uint8_t>();
  TORCH_CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0, "buffer must be 64-byte aligned");
  constexpr int64_t kChunk = 1 << 20;
  const int64_t n = buf.numel(), chunks = n / kChunk;
  std::vector<int64_t> sums(static_cast<size_t>(chunks), 0);
  const int64_t caps = cpu_features();
  WorkPool::instance().run(chunks, static_cast<int>(threads), [&](int64_t c) {
    const uint8_t* q = p + c * kChunk;
    sums[c] = (caps & 2) ? read_avx512(q, kChunk) : (caps & 1) ? read_avx2(q, kChunk) : read_portable(q, kChunk);
  });
  int64_t total = 0;
  for (auto v : sums) total += v;
  return total;
}

}  // namespace
}  // namespace swarmkeep

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("cpu_features", &swarmkeep::cpu_features, "bit 0: AVX2+FMA, bit 1: AVX-512 BF16, bit 2: AMX BF16, bit 3: AVX-512 FP16");
  m.def("limit_features", &swarmkeep::limit_features, "use only these feature bits (-1: all); returns the bits left");
  m.def("w4a16_linear", &swarmkeep::w4a16_linear, "W4A16 linear on the blocked layout");
  m.def("moe_forward", &swarmkeep::moe_forward, "routed experts of a W4A16 SwiGLU MoE layer");
  m.def("read_bytes", &swarmkeep::read_bytes, "read a buffer on N threads (bandwidth probe)");
}
