// Inner kernels of the W4A16 CPU linear: each computes one tile of 16 output features for a block of rows.
//
// Weight layout (see kernels/cpu/layout.py): codes int32 [N/16][K/8][16] and scales bf16 [N/16][K/32][16],
// so a tile's 16 rows stream contiguously and one 64-byte load holds 8 inputs of each of the 16 rows
// (lane i = row i, nibble t = input 8c + t, exactly the checkpoint's int32 words, only regrouped).
//
// Activations are bf16, permuted within every block of 8 inputs to (0,4,1,5,2,6,3,7), so that
// "nibble s of the low half-word and nibble s of the high half-word" of each lane is a pair of adjacent
// activations: that is the pairing both vdpbf16ps and AMX's VNNI B tile expect, and it costs no shuffles.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace swarmkeep {

constexpr int kTileN = 16;   // output features per tile
constexpr int kGroup = 32;   // inputs per scale
constexpr int kAmxRows = 16; // rows of an AMX A/C tile

inline float bf16_to_float(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t float_to_bf16(float f) {  // round to nearest even, NaN kept quiet
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// Position of input t (0..7) of a block after the activation permutation.
inline int permuted_pos(int t) { return t < 4 ? 2 * t : 2 * (t - 4) + 1; }

// ---------------------------------------------------------------------------------------------------------
// Portable path: any x86-64 (AVX2 clone when the CPU has it). Correct everywhere, not tuned.
__attribute__((target_clones("avx2,fma", "default")))
inline void tile_generic(const uint16_t* xp, int64_t ldx, int m_rows, int64_t K, const int32_t* w,
                         const uint16_t* s, float* out) {
  float wf[kTileN][kGroup];
  float xf[kGroup];
  for (int i = 0; i < m_rows * kTileN; ++i) out[i] = 0.f;
  for (int64_t g = 0; g < K / kGroup; ++g) {
    for (int i = 0; i < kTileN; ++i) {
      const float sc = bf16_to_float(s[g * kTileN + i]);
      for (int c = 0; c < 4; ++c) {
        const uint32_t word = static_cast<uint32_t>(w[(g * 4 + c) * kTileN + i]);
        for (int t = 0; t < 8; ++t)
          wf[i][c * 8 + permuted_pos(t)] = (static_cast<float>((word >> (4 * t)) & 15u) - 8.f) * sc;
      }
    }
    for (int m = 0; m < m_rows; ++m) {
      for (int k = 0; k < kGroup; ++k) xf[k] = bf16_to_float(xp[m * ldx + g * kGroup + k]);
      for (int i = 0; i < kTileN; ++i) {
        float acc = 0.f;
        for (int k = 0; k < kGroup; ++k) acc += wf[i][k] * xf[k];
        out[m * kTileN + i] += acc;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// AVX-512 BF16 path: vdpbf16ps does 32 multiply-adds per instruction in fp32 and bounds the compute (one per
// two cycles on Sapphire Rapids), so the unpack around it is kept small: a nibble u becomes the bf16 number
// 128 + u (exact) with one vpternlogd, u | 0x4300, rather than a vpermw lookup that only port 5 runs. The
// 136 * sum(x) this adds per group (128 + the code offset 8) is taken off per group from xsum (sum_groups).
#define SWK_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))

constexpr int kPrefetch = 2048;  // bytes of codes prefetched ahead, so reads stay in flight while groups unpack

// Prefetches the codes of group g of a tile kPrefetch bytes ahead, and its scales as many groups ahead (32 bytes a
// group: one line every other group). Without the scales' own prefetch, decode read 80% of the bandwidth on K =
// 2048 rather than 90%: a tile's scales there are a stream of only 2 KiB, too short for the hardware prefetcher.
inline void prefetch_group(const int32_t* wg, const uint16_t* sg, int64_t g) {
  for (int l = 0; l < 4; ++l) _mm_prefetch(reinterpret_cast<const char*>(wg) + kPrefetch + 64 * l, _MM_HINT_T0);
  if (!(g & 1)) _mm_prefetch(reinterpret_cast<const char*>(sg) + kPrefetch / 8, _MM_HINT_T0);
}

// xsum[g] = 136 * (sum of the 32 activations of group g), fp32, for one row of K activations.
inline void sum_groups(const uint16_t* x, int64_t K, float* xsum) {
  for (int64_t g = 0; g < K / kGroup; ++g) {
    float sum = 0.f;
    for (int k = 0; k < kGroup; ++k) sum += bf16_to_float(x[g * kGroup + k]);
    xsum[g] = 136.f * sum;
  }
}

// bf16 of u - 8 for a vpermw lookup, as the AMX path dequantizes (vpermw reads only the low 5 bits of each
// index, so no masking).
SWK_AVX512 inline __m512i nibble_lut() {
  alignas(64) uint16_t lut[32];
  for (int i = 0; i < 32; ++i) lut[i] = float_to_bf16(static_cast<float>((i & 15) - 8));
  return _mm512_load_si512(lut);
}

// 16 bf16 values (scales, or activations) widened to fp32.
SWK_AVX512 inline __m512 load_scales(const uint16_t* s) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

// MB rows of activations (xsum: MB rows of K/32 sums) times NT tiles `step` tiles apart; tile t's rows go to
// out + t * step * out_tile. Prefetches past a tile's end on purpose: callers walk each stream through consecutive
// tiles, which lie back to back in memory.
template <int MB, int NT>
SWK_AVX512 inline void tile_avx512_block(const uint16_t* xp, int64_t ldx, const float* xsum, int64_t K,
                                         const int32_t* w, const uint16_t* s, int64_t out_tile, int64_t step,
                                         float* out) {
  const __m512i low_nibble = _mm512_set1_epi16(0x000f), bias = _mm512_set1_epi16(0x4300);
  const int64_t groups = K / kGroup, w_tile = groups * 4 * kTileN, s_tile = groups * kTileN;
  __m512 acc[NT][MB];
  for (int t = 0; t < NT; ++t)
    for (int m = 0; m < MB; ++m) acc[t][m] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    for (int t = 0; t < NT; ++t) {
      const int32_t* wg = w + t * step * w_tile + g * 4 * kTileN;
      prefetch_group(wg, s + t * step * s_tile + g * kTileN, g);
      // Two chains per row; groups are independent, so out-of-order execution overlaps them.
      __m512 part[MB][2];
      for (int m = 0; m < MB; ++m) part[m][0] = part[m][1] = _mm512_setzero_ps();
      for (int c = 0; c < 4; ++c) {
        const __m512i word = _mm512_loadu_si512(wg + c * kTileN);
        for (int p = 0; p < 4; ++p) {
          const __m512i nibble = p ? _mm512_srli_epi16(word, 4 * p) : word;
          const __m512bh b = (__m512bh)_mm512_ternarylogic_epi32(nibble, low_nibble, bias, 0xea);  // (a & b) | c
          for (int m = 0; m < MB; ++m) {
            const int32_t* xpair = reinterpret_cast<const int32_t*>(xp + m * ldx + g * kGroup + c * 8);
            part[m][p & 1] = _mm512_dpbf16_ps(part[m][p & 1], b, (__m512bh)_mm512_set1_epi32(xpair[p]));
          }
        }
      }
      const __m512 sc = load_scales(s + t * step * s_tile + g * kTileN);
      for (int m = 0; m < MB; ++m) {
        const __m512 dot = _mm512_add_ps(part[m][0], part[m][1]);
        acc[t][m] = _mm512_fmadd_ps(_mm512_sub_ps(dot, _mm512_set1_ps(xsum[m * groups + g])), sc, acc[t][m]);
      }
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int m = 0; m < MB; ++m) _mm512_storeu_ps(out + t * step * out_tile + m * kTileN, acc[t][m]);
}

// Walks `tiles` consecutive tiles for m_rows rows into out ([tiles][m_rows][16] floats) with a block kernel, called
// as block(MB, NT, first row, codes, scales, step, out) with MB and NT as std::integral_constant. One row (decode)
// runs as two streams, which keep more reads in flight than one, each walking its half of the tiles front to back
// so that both stay long sequential reads (pairs of adjacent tiles read 10% less of the bandwidth at K = 2048,
// where a tile is 18 KiB). More rows go four at a time: four rows share each unpacked weight vector, and more would
// spill the 32 vector registers.
template <class Block>
inline void walk_tiles(int m_rows, int64_t K, const int32_t* w, const uint16_t* s, int64_t tiles, float* out,
                       const Block& block) {
  using One = std::integral_constant<int, 1>;
  const int64_t w_tile = (K / kGroup) * 4 * kTileN, s_tile = (K / kGroup) * kTileN, out_tile = m_rows * kTileN;
  int64_t t = 0;
  if (m_rows == 1) {
    const int64_t half = tiles / 2;
    for (int64_t i = 0; i < half; ++i)
      block(One{}, std::integral_constant<int, 2>{}, 0, w + i * w_tile, s + i * s_tile, half, out + i * out_tile);
    t = 2 * half;
  }
  for (; t < tiles; ++t) {
    const int32_t* wt = w + t * w_tile;
    const uint16_t* st = s + t * s_tile;
    float* o = out + t * out_tile;
    int m = 0;
    for (; m + 4 <= m_rows; m += 4) block(std::integral_constant<int, 4>{}, One{}, m, wt, st, 1, o + m * kTileN);
    switch (m_rows - m) {
      case 3: block(std::integral_constant<int, 3>{}, One{}, m, wt, st, 1, o + m * kTileN); break;
      case 2: block(std::integral_constant<int, 2>{}, One{}, m, wt, st, 1, o + m * kTileN); break;
      case 1: block(One{}, One{}, m, wt, st, 1, o + m * kTileN); break;
      default: break;
    }
  }
}

// `tiles` consecutive tiles for m_rows rows into out ([tiles][m_rows][16] floats).
SWK_AVX512 inline void tile_avx512(const uint16_t* xp, int64_t ldx, const float* xsum, int m_rows, int64_t K,
                                   const int32_t* w, const uint16_t* s, int64_t tiles, float* out) {
  const int64_t groups = K / kGroup, out_tile = m_rows * kTileN;
  walk_tiles(m_rows, K, w, s, tiles, out,
             [&](auto mb, auto nt, int m, const int32_t* wt, const uint16_t* st, int64_t step, float* o) {
               tile_avx512_block<decltype(mb)::value, decltype(nt)::value>(xp + m * ldx, ldx, xsum + m * groups, K,
                                                                           wt, st, out_tile, step, o);
             });
}

// ---------------------------------------------------------------------------------------------------------
// AVX-512 FP16 path, for decode and a few rows: vdpbf16ps costs two cycles and holds both 512-bit ports on this
// core, while vfmadd231ph does as many multiply-adds (32) twice per cycle, so unpacking to fp16 and multiplying
// in fp16 doubles the arithmetic rate. Nibbles at bits 0-3 and 4-7 of a 16-bit lane need no shift: one
// vpternlogd makes the exact fp16 1024 + u or 64 + u, one vsubph takes off 1032 or 72, leaving u - 8 exact; one
// shift by 8 brings bits 8-15 down for the other two. Activations arrive in fp16 scaled by 2^-e per row
// (fp16_rows: |x| <= 256), so a group's 16 products per lane (|u - 8| <= 8) sum below 32768, well inside fp16;
// each group's fp16 sum is widened to fp32 and scaled there, so fp16 rounding touches 16 terms at a time only.
#if (defined(__clang__) && __clang_major__ >= 14) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 12)
#define SWK_HAVE_FP16 1
#define SWK_FP16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx512fp16,fma")))

constexpr float kFp16Headroom = 256.f;  // largest |x| after the per-row power-of-two scaling

// Converts `rows` permuted bf16 rows of K (ld K) in place to fp16 times 2^-e_r and returns 2^e_r per row.
SWK_FP16 inline void fp16_rows(uint16_t* x, int64_t rows, int64_t K, float* unscale) {
  for (int64_t r = 0; r < rows; ++r) {
    uint16_t* row = x + r * K;
    __m512 peak = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k += 16) peak = _mm512_max_ps(peak, _mm512_abs_ps(load_scales(row + k)));
    const float amax = _mm512_reduce_max_ps(peak);
    int e = 0;
    if (amax > 0.f && std::isfinite(amax)) std::frexp(amax / kFp16Headroom, &e);  // amax / 256 < 2^e
    unscale[r] = std::ldexp(1.f, e);
    const __m512 down = _mm512_set1_ps(std::ldexp(1.f, -e));
    for (int64_t k = 0; k < K; k += 16) {
      const __m256i h = _mm512_cvtps_ph(_mm512_mul_ps(load_scales(row + k), down), _MM_FROUND_TO_NEAREST_INT);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + k), h);
    }
  }
}

// MB rows of fp16 activations (unscale: their 2^e) times NT consecutive tiles, as tile_avx512_block.
template <int MB, int NT>
SWK_FP16 inline void tile_fp16_block(const uint16_t* xh, int64_t ldx, const float* unscale, int64_t K,
                                     const int32_t* w, const uint16_t* s, int64_t out_tile, int64_t step,
                                     float* out) {
  const __m512i lo_mask = _mm512_set1_epi16(0x000f), lo_bias = _mm512_set1_epi16(0x6400);  // fp16 1024 + u
  const __m512i hi_mask = _mm512_set1_epi16(0x00f0), hi_bias = _mm512_set1_epi16(0x5400);  // fp16 64 + u
  const __m512h lo_off = _mm512_set1_ph(static_cast<_Float16>(1032.f));
  const __m512h hi_off = _mm512_set1_ph(static_cast<_Float16>(72.f));
  // fp16 lanes 2i and 2i+1 hold row i; widened, fp32 lane j of the low (high) half is row j/2 (8 + j/2). Its
  // scale goes to the high half-word of that lane: lane 2j+1 of a 16-bit permute of the 16 bf16 scales.
  alignas(64) uint16_t order[2][32];
  for (int l = 0; l < 32; ++l) {
    order[0][l] = static_cast<uint16_t>(l / 4);
    order[1][l] = static_cast<uint16_t>(8 + l / 4);
  }
  const __m512i scale_lo = _mm512_load_si512(order[0]), scale_hi = _mm512_load_si512(order[1]);
  constexpr __mmask32 kHighHalves = 0xaaaaaaaau;
  const int64_t groups = K / kGroup, w_tile = groups * 4 * kTileN, s_tile = groups * kTileN;
  __m512 acc[NT][MB][2];
  for (int t = 0; t < NT; ++t)
    for (int m = 0; m < MB; ++m) acc[t][m][0] = acc[t][m][1] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    for (int t = 0; t < NT; ++t) {
      const int32_t* wg = w + t * step * w_tile + g * 4 * kTileN;
      prefetch_group(wg, s + t * step * s_tile + g * kTileN, g);
      __m512h part[MB][2];
      for (int m = 0; m < MB; ++m) part[m][0] = part[m][1] = _mm512_setzero_ph();
      for (int c = 0; c < 4; ++c) {
        const __m512i word = _mm512_loadu_si512(wg + c * kTileN);
        const __m512i down = _mm512_srli_epi16(word, 8);
        for (int p = 0; p < 4; ++p) {
          const __m512i src = p < 2 ? word : down;
          const __m512h wv =
              (p & 1) ? _mm512_sub_ph(_mm512_castsi512_ph(_mm512_ternarylogic_epi32(src, hi_mask, hi_bias, 0xea)),
                                      hi_off)
                      : _mm512_sub_ph(_mm512_castsi512_ph(_mm512_ternarylogic_epi32(src, lo_mask, lo_bias, 0xea)),
                                      lo_off);
          for (int m = 0; m < MB; ++m) {
            const int32_t* xpair = reinterpret_cast<const int32_t*>(xh + m * ldx + g * kGroup + c * 8);
            part[m][p & 1] = _mm512_fmadd_ph(wv, _mm512_castsi512_ph(_mm512_set1_epi32(xpair[p])), part[m][p & 1]);
          }
        }
      }
      const __m512i raw = _mm512_castsi256_si512(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + t * step * s_tile + g * kTileN)));
      const __m512 sc_lo = _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(kHighHalves, scale_lo, raw));
      const __m512 sc_hi = _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(kHighHalves, scale_hi, raw));
      for (int m = 0; m < MB; ++m) {
        const __m512i sum = _mm512_castph_si512(_mm512_add_ph(part[m][0], part[m][1]));
        acc[t][m][0] = _mm512_fmadd_ps(_mm512_cvtxph_ps(_mm512_castph512_ph256(_mm512_castsi512_ph(sum))),
                                       sc_lo, acc[t][m][0]);
        acc[t][m][1] = _mm512_fmadd_ps(
            _mm512_cvtxph_ps(_mm256_castsi256_ph(_mm512_extracti64x4_epi64(sum, 1))), sc_hi, acc[t][m][1]);
      }
    }
  }
  alignas(64) int32_t pick[2][16];
  for (int j = 0; j < 16; ++j) {
    pick[0][j] = 2 * j;  // lanes of low then high: row j's first half
    pick[1][j] = 2 * j + 1;
  }
  const __m512i even = _mm512_load_si512(pick[0]), odd = _mm512_load_si512(pick[1]);
  for (int t = 0; t < NT; ++t)
    for (int m = 0; m < MB; ++m) {
      const __m512 rows = _mm512_add_ps(_mm512_permutex2var_ps(acc[t][m][0], even, acc[t][m][1]),
                                        _mm512_permutex2var_ps(acc[t][m][0], odd, acc[t][m][1]));
      _mm512_storeu_ps(out + t * step * out_tile + m * kTileN, _mm512_mul_ps(rows, _mm512_set1_ps(unscale[m])));
    }
}

// `tiles` consecutive tiles for m_rows rows into out ([tiles][m_rows][16] floats), as tile_avx512.
SWK_FP16 inline void tile_fp16(const uint16_t* xh, int64_t ldx, const float* unscale, int m_rows, int64_t K,
                               const int32_t* w, const uint16_t* s, int64_t tiles, float* out) {
  const int64_t out_tile = m_rows * kTileN;
  walk_tiles(m_rows, K, w, s, tiles, out,
             [&](auto mb, auto nt, int m, const int32_t* wt, const uint16_t* st, int64_t step, float* o) {
               tile_fp16_block<decltype(mb)::value, decltype(nt)::value>(xh + m * ldx, ldx, unscale + m, K, wt, st,
                                                                         out_tile, step, o);
             });
}
#else
#define SWK_HAVE_FP16 0
#endif

// ---------------------------------------------------------------------------------------------------------
// AMX path: each group of 32 inputs x 16 features is dequantized (scale folded in, rounded to bf16 as a bf16
// dequantization would) into one VNNI B tile, and tdpbf16ps multiplies it by up to four 16-row A tiles of
// activations. Accumulators stay in tiles across all of K. (Applying scales to a per-group C tile instead
// measured slower from 32 rows up: the tile store and reload per group cost more than the fold.)
// Tiles 0-3: C, 4: A, 5: B.
#define SWK_AMX __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma,amx-tile,amx-bf16")))

constexpr int kAmxMaxM = 64;  // rows per pass: four accumulator tiles

struct alignas(64) AmxConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

SWK_AMX inline void amx_begin() {
  AmxConfig cfg;
  for (int t = 0; t < 6; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  // Not _tile_loadconfig: GCC's version declares an 8-byte memory operand, so the stores that fill the rest
  // of the 64-byte config can be dropped as dead.
  __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
}

SWK_AMX inline void amx_end() { _tile_release(); }

// Writes the VNNI B tile of group g (row r = input pair r; 16 features x 2 bf16 per row) into b.
SWK_AMX inline void amx_dequant_group(const int32_t* w, const uint16_t* s, int64_t g, __m512i lut,
                                      __m512i interleave, uint16_t* b) {
  const __m512 sc = load_scales(s + g * kTileN);
  const __m512i high = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  for (int c = 0; c < 4; ++c) {
    const __m512i word = _mm512_loadu_si512(w + (g * 4 + c) * kTileN);
    for (int p = 0; p < 4; ++p) {
      const __m512i codes = _mm512_permutexvar_epi16(_mm512_srli_epi16(word, 4 * p), lut);
      const __m512 lo = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(codes, 16)), sc);
      const __m512 hi = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_and_si512(codes, high)), sc);
      const __m512i packed = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);  // [lo0..lo15, hi0..hi15]
      _mm512_store_si512(b + (c * 4 + p) * 32, _mm512_permutexvar_epi16(interleave, packed));
    }
  }
}

template <int MT>
SWK_AMX inline void tile_amx_pass(const uint16_t* xp, int64_t ldx, int64_t K, const int32_t* w,
                                  const uint16_t* s, float* out) {
  const __m512i lut = nibble_lut();
  alignas(64) uint16_t order[32];
  for (int i = 0; i < 16; ++i) {
    order[2 * i] = static_cast<uint16_t>(i);
    order[2 * i + 1] = static_cast<uint16_t>(16 + i);
  }
  const __m512i interleave = _mm512_load_si512(order);
  alignas(64) uint16_t bbuf[2][kAmxRows * 32];  // two buffers so the next group's stores never wait on a load
  _tile_zero(0);
  if (MT > 1) _tile_zero(1);
  if (MT > 2) _tile_zero(2);
  if (MT > 3) _tile_zero(3);
  const int64_t stride = ldx * 2;
  for (int64_t g = 0; g < K / kGroup; ++g) {
    uint16_t* b = bbuf[g & 1];
    const char* ahead = reinterpret_cast<const char*>(w + g * 4 * kTileN) + kPrefetch;  // as tile_avx512_block
    for (int l = 0; l < 4; ++l) _mm_prefetch(ahead + 64 * l, _MM_HINT_T0);
    amx_dequant_group(w, s, g, lut, interleave, b);
    _tile_loadd(5, b, 64);
    const uint16_t* a = xp + g * kGroup;
    _tile_loadd(4, a, stride);
    _tile_dpbf16ps(0, 4, 5);
    if (MT > 1) { _tile_loadd(4, a + 16 * ldx, stride); _tile_dpbf16ps(1, 4, 5); }
    if (MT > 2) { _tile_loadd(4, a + 32 * ldx, stride); _tile_dpbf16ps(2, 4, 5); }
    if (MT > 3) { _tile_loadd(4, a + 48 * ldx, stride); _tile_dpbf16ps(3, 4, 5); }
  }
  _tile_stored(0, out, 64);
  if (MT > 1) _tile_stored(1, out + 16 * kTileN, 64);
  if (MT > 2) _tile_stored(2, out + 32 * kTileN, 64);
  if (MT > 3) _tile_stored(3, out + 48 * kTileN, 64);
}

// Any number of rows, 64 at a time; xp must be zero padded to a multiple of 16 rows, and out must have room
// for that many rows of 16 floats.
SWK_AMX inline void tile_amx(const uint16_t* xp, int64_t ldx, int m_rows, int64_t K, const int32_t* w,
                             const uint16_t* s, float* out) {
  for (int m = 0; m < m_rows; m += kAmxMaxM) {
    const uint16_t* x = xp + m * ldx;
    float* o = out + m * kTileN;
    switch ((std::min(kAmxMaxM, m_rows - m) + kAmxRows - 1) / kAmxRows) {
      case 1: tile_amx_pass<1>(x, ldx, K, w, s, o); break;
      case 2: tile_amx_pass<2>(x, ldx, K, w, s, o); break;
      case 3: tile_amx_pass<3>(x, ldx, K, w, s, o); break;
      default: tile_amx_pass<4>(x, ldx, K, w, s, o); break;
    }
  }
}

}  // namespace swarmkeep
