// AVX2 + FMA tile kernel of the W4A16 CPU linear, for x86 CPUs without AVX-512 (AMD Zen 2/3, many Intel parts).
//
// Same blocked weights as the other paths (w4a16_tiles.h): a 64-byte word load holds one int32 word of each of a
// tile's 16 rows, so a 256-bit register holds rows 0-7 or 8-15 of it, lane i = row i, nibble t = input 8c + t.
// AVX2 has no bf16 or fp16 arithmetic, so the products are fp32 with the unpack kept to two instructions per eight
// weights: nibble t is masked in place (vpand with 0xf << 4t; the top one shifted down, vpsrld 28) and converted
// exactly to fp32 as u * 2^(4t) (vcvtdq2ps); the 2^-4t goes into the activation, prepared once per call in fp32
// (avx2_rows). The code offset 8 is taken off per group from each row's group sum: sum x (u - 8) =
// sum x u - 8 sum x, then the group's scale multiplies that in fp32.
#pragma once

#include "w4a16_tiles.h"

namespace swarmkeep {

#define SWK_AVX2 __attribute__((target("avx2,fma")))

// Floats per activation row on the AVX2 path: K scaled activations, then K/32 group sums times 8.
inline int64_t avx2_row_floats(int64_t K) { return K + K / kGroup; }

// What multiplies input 8c + t so that its product with nibble t, converted in place, is x * u.
inline float avx2_nibble_unscale(int t) { return t == 7 ? 1.f : std::ldexp(1.f, -4 * t); }

// From `rows` permuted bf16 rows of K (ld K, as permute_rows writes them) to the AVX2 path's fp32 rows in aux
// ([rows][avx2_row_floats(K)]): inputs back in order, each scaled by avx2_nibble_unscale, then 8 * each group's sum.
inline void avx2_rows(const uint16_t* xp, int64_t rows, int64_t K, float* aux) {
  float unscale[8];
  for (int t = 0; t < 8; ++t) unscale[t] = avx2_nibble_unscale(t);
  int src[8];
  for (int t = 0; t < 8; ++t) src[t] = permuted_pos(t);
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* in = xp + r * K;
    float* xs = aux + r * avx2_row_floats(K);
    float* sums = xs + K;
    for (int64_t g = 0; g < K / kGroup; ++g) {
      float sum = 0.f;
      for (int k = g * kGroup; k < (g + 1) * kGroup; ++k) {
        const float v = bf16_to_float(in[(k / 8) * 8 + src[k % 8]]);
        sum += v;
        xs[k] = v * unscale[k % 8];
      }
      sums[g] = 8.f * sum;
    }
  }
}

// 8 bf16 scales widened to fp32.
SWK_AVX2 inline __m256 avx2_scales(const uint16_t* s) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
}

// MB rows (xs: fp32 rows of avx2_row_floats(K)) times NT tiles `step` tiles apart, as tile_avx512_block. Each half
// tile (8 rows) of a group sums its 32 products per row in CH chains, enough to cover the FMA latency at one row.
template <int MB, int NT>
SWK_AVX2 inline void tile_avx2_block(const float* xs, int64_t ldx, int64_t K, const int32_t* w, const uint16_t* s,
                                     int64_t out_tile, int64_t step, float* out) {
  constexpr int CH = MB == 1 ? 4 : MB == 2 ? 2 : 1;
  const int64_t groups = K / kGroup, w_tile = groups * 4 * kTileN, s_tile = groups * kTileN;
  __m256 acc[NT][MB][2];
  for (int t = 0; t < NT; ++t)
    for (int m = 0; m < MB; ++m) acc[t][m][0] = acc[t][m][1] = _mm256_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    for (int t = 0; t < NT; ++t) {
      const int32_t* wg = w + t * step * w_tile + g * 4 * kTileN;
      const uint16_t* sg = s + t * step * s_tile + g * kTileN;
      prefetch_group(wg, sg, g);
      for (int h = 0; h < 2; ++h) {
        __m256 part[MB][CH];
        for (int m = 0; m < MB; ++m)
          for (int c = 0; c < CH; ++c) part[m][c] = _mm256_setzero_ps();
        for (int c = 0; c < 4; ++c) {
          const __m256i word = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg + c * kTileN + 8 * h));
          for (int p = 0; p < 8; ++p) {
            const __m256i u = p == 7 ? _mm256_srli_epi32(word, 28)
                                     : _mm256_and_si256(word, _mm256_set1_epi32(0xf << (4 * p)));
            const __m256 f = _mm256_cvtepi32_ps(u);
            const int chain = (c * 8 + p) % CH;
            for (int m = 0; m < MB; ++m)
              part[m][chain] =
                  _mm256_fmadd_ps(f, _mm256_broadcast_ss(xs + m * ldx + g * kGroup + c * 8 + p), part[m][chain]);
          }
        }
        const __m256 sc = avx2_scales(sg + 8 * h);
        for (int m = 0; m < MB; ++m) {
          __m256 dot = part[m][0];
          for (int c = 1; c < CH; ++c) dot = _mm256_add_ps(dot, part[m][c]);
          const __m256 offset = _mm256_broadcast_ss(xs + m * ldx + K + g);
          acc[t][m][h] = _mm256_fmadd_ps(_mm256_sub_ps(dot, offset), sc, acc[t][m][h]);
        }
      }
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int m = 0; m < MB; ++m)
      for (int h = 0; h < 2; ++h) _mm256_storeu_ps(out + t * step * out_tile + m * kTileN + 8 * h, acc[t][m][h]);
}

// From kAvx2GemmRows rows up, the unpack of a weight vector costs more per row block than the rows share: each
// run of kAvx2ChunkGroups groups of a tile is unpacked once into fp32 in L1 (scale and offset folded in) and every
// block of up to six rows multiplies it with 12 independent accumulators (tile_avx2_gemm).
constexpr int kAvx2GemmRows = 5;
constexpr int kAvx2ChunkGroups = 8;  // 256 inputs: 16 KiB of fp32 weights

// Writes groups [g0, g0 + count) of a tile as fp32 into wf ([32 * count][16]): input k's 16 weights, each
// (u - 8) * 2^(4t) * scale, so that with avx2_rows' activation (x * 2^-4t) the product is the real one.
SWK_AVX2 inline void avx2_unpack_groups(const int32_t* w, const uint16_t* s, int64_t g0, int count, float* wf) {
  for (int g = 0; g < count; ++g) {
    const int32_t* wg = w + (g0 + g) * 4 * kTileN;
    prefetch_group(wg, s + (g0 + g) * kTileN, g0 + g);
    for (int h = 0; h < 2; ++h) {
      const __m256 sc = avx2_scales(s + (g0 + g) * kTileN + 8 * h);
      __m256 offset[8];
      for (int p = 0; p < 8; ++p) offset[p] = _mm256_mul_ps(sc, _mm256_set1_ps(-8.f / avx2_nibble_unscale(p)));
      for (int c = 0; c < 4; ++c) {
        const __m256i word = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg + c * kTileN + 8 * h));
        for (int p = 0; p < 8; ++p) {
          const __m256i u = p == 7 ? _mm256_srli_epi32(word, 28)
                                   : _mm256_and_si256(word, _mm256_set1_epi32(0xf << (4 * p)));
          _mm256_store_ps(wf + (g * kGroup + c * 8 + p) * kTileN + 8 * h,
                          _mm256_fmadd_ps(_mm256_cvtepi32_ps(u), sc, offset[p]));
        }
      }
    }
  }
}

// out[MB][16] += xs[MB][k0 .. k0 + kc) @ wf[kc][16].
template <int MB>
SWK_AVX2 inline void avx2_gemm_block(const float* xs, int64_t ldx, int64_t k0, int kc, const float* wf, float* out) {
  __m256 acc[MB][2];
  for (int m = 0; m < MB; ++m)
    for (int h = 0; h < 2; ++h) acc[m][h] = _mm256_loadu_ps(out + m * kTileN + 8 * h);
  for (int k = 0; k < kc; ++k) {
    const __m256 w0 = _mm256_load_ps(wf + k * kTileN), w1 = _mm256_load_ps(wf + k * kTileN + 8);
    for (int m = 0; m < MB; ++m) {
      const __m256 xb = _mm256_broadcast_ss(xs + m * ldx + k0 + k);
      acc[m][0] = _mm256_fmadd_ps(w0, xb, acc[m][0]);
      acc[m][1] = _mm256_fmadd_ps(w1, xb, acc[m][1]);
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int h = 0; h < 2; ++h) _mm256_storeu_ps(out + m * kTileN + 8 * h, acc[m][h]);
}

// One tile for m_rows rows into out ([m_rows][16] floats), through fp32 weights unpacked chunk by chunk.
SWK_AVX2 inline void tile_avx2_gemm(const float* xs, int64_t ldx, int m_rows, int64_t K, const int32_t* w,
                                    const uint16_t* s, float* out) {
  alignas(32) float wf[kAvx2ChunkGroups * kGroup * kTileN];
  for (int i = 0; i < m_rows * kTileN; ++i) out[i] = 0.f;
  const int64_t groups = K / kGroup;
  for (int64_t g0 = 0; g0 < groups; g0 += kAvx2ChunkGroups) {
    const int count = static_cast<int>(std::min<int64_t>(kAvx2ChunkGroups, groups - g0));
    avx2_unpack_groups(w, s, g0, count, wf);
    const int64_t k0 = g0 * kGroup;
    const int kc = count * kGroup;
    int m = 0;
    for (; m + 6 <= m_rows; m += 6) avx2_gemm_block<6>(xs + m * ldx, ldx, k0, kc, wf, out + m * kTileN);
    const float* xm = xs + m * ldx;
    float* om = out + m * kTileN;
    switch (m_rows - m) {
      case 5: avx2_gemm_block<5>(xm, ldx, k0, kc, wf, om); break;
      case 4: avx2_gemm_block<4>(xm, ldx, k0, kc, wf, om); break;
      case 3: avx2_gemm_block<3>(xm, ldx, k0, kc, wf, om); break;
      case 2: avx2_gemm_block<2>(xm, ldx, k0, kc, wf, om); break;
      case 1: avx2_gemm_block<1>(xm, ldx, k0, kc, wf, om); break;
      default: break;
    }
  }
}

// `tiles` consecutive tiles for m_rows rows (xs as avx2_rows writes them) into out ([tiles][m_rows][16] floats).
SWK_AVX2 inline void tile_avx2(const float* xs, int m_rows, int64_t K, const int32_t* w, const uint16_t* s,
                               int64_t tiles, float* out) {
  const int64_t ldx = avx2_row_floats(K), out_tile = m_rows * kTileN;
  if (m_rows >= kAvx2GemmRows) {
    const int64_t w_tile = (K / 8) * kTileN, s_tile = (K / kGroup) * kTileN;
    for (int64_t t = 0; t < tiles; ++t) tile_avx2_gemm(xs, ldx, m_rows, K, w + t * w_tile, s + t * s_tile, out + t * out_tile);
    return;
  }
  walk_tiles(m_rows, K, w, s, tiles, out,
             [&](auto mb, auto nt, int m, const int32_t* wt, const uint16_t* st, int64_t step, float* o) {
               tile_avx2_block<decltype(mb)::value, decltype(nt)::value>(xs + m * ldx, ldx, K, wt, st, out_tile,
                                                                         step, o);
             });
}

// Sums buf in 256-bit loads (the read-bandwidth probe on CPUs without AVX-512).
SWK_AVX2 inline int64_t read_avx2(const uint8_t* p, int64_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i + 128 <= n; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  alignas(32) int64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

}  // namespace swarmkeep
