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

SWK_AVX512 inline __m512 load_scales(const uint16_t* s) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

// MB rows of activations (xsum: MB rows of K/32 sums) times NT consecutive tiles; tile t's rows go to
// out + t * out_tile. Prefetches past the last tile's end on purpose: callers walk consecutive tiles, which lie
// back to back in memory.
template <int MB, int NT>
SWK_AVX512 inline void tile_avx512_block(const uint16_t* xp, int64_t ldx, const float* xsum, int64_t K,
                                         const int32_t* w, const uint16_t* s, int64_t out_tile, float* out) {
  const __m512i low_nibble = _mm512_set1_epi16(0x000f), bias = _mm512_set1_epi16(0x4300);
  const int64_t groups = K / kGroup, w_tile = groups * 4 * kTileN, s_tile = groups * kTileN;
  __m512 acc[NT][MB];
  for (int t = 0; t < NT; ++t)
    for (int m = 0; m < MB; ++m) acc[t][m] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    for (int t = 0; t < NT; ++t) {
      const int32_t* wg = w + t * w_tile + g * 4 * kTileN;
      for (int l = 0; l < 4; ++l)
        _mm_prefetch(reinterpret_cast<const char*>(wg) + kPrefetch + 64 * l, _MM_HINT_T0);
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
      const __m512 sc = load_scales(s + t * s_tile + g * kTileN);
      for (int m = 0; m < MB; ++m) {
        const __m512 dot = _mm512_add_ps(part[m][0], part[m][1]);
        acc[t][m] = _mm512_fmadd_ps(_mm512_sub_ps(dot, _mm512_set1_ps(xsum[m * groups + g])), sc, acc[t][m]);
      }
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int m = 0; m < MB; ++m) _mm512_storeu_ps(out + t * out_tile + m * kTileN, acc[t][m]);
}

// `tiles` consecutive tiles for m_rows rows into out ([tiles][m_rows][16] floats).
SWK_AVX512 inline void tile_avx512(const uint16_t* xp, int64_t ldx, const float* xsum, int m_rows, int64_t K,
                                   const int32_t* w, const uint16_t* s, int64_t tiles, float* out) {
  const int64_t groups = K / kGroup, w_tile = groups * 4 * kTileN, s_tile = groups * kTileN;
  const int64_t out_tile = m_rows * kTileN;
  int64_t t = 0;
  // One row (decode): two tiles at a time, as two streams keep more reads in flight than one.
  if (m_rows == 1)
    for (; t + 2 <= tiles; t += 2)
      tile_avx512_block<1, 2>(xp, ldx, xsum, K, w + t * w_tile, s + t * s_tile, out_tile, out + t * out_tile);
  for (; t < tiles; ++t) {
    const int32_t* wt = w + t * w_tile;
    const uint16_t* st = s + t * s_tile;
    float* o = out + t * out_tile;
    int m = 0;
    // Four rows share each unpacked weight vector; more would spill the 32 vector registers.
    for (; m + 4 <= m_rows; m += 4)
      tile_avx512_block<4, 1>(xp + m * ldx, ldx, xsum + m * groups, K, wt, st, out_tile, o + m * kTileN);
    const uint16_t* xm = xp + m * ldx;
    const float* sm = xsum + m * groups;
    switch (m_rows - m) {
      case 3: tile_avx512_block<3, 1>(xm, ldx, sm, K, wt, st, out_tile, o + m * kTileN); break;
      case 2: tile_avx512_block<2, 1>(xm, ldx, sm, K, wt, st, out_tile, o + m * kTileN); break;
      case 1: tile_avx512_block<1, 1>(xm, ldx, sm, K, wt, st, out_tile, o + m * kTileN); break;
      default: break;
    }
  }
}

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
