// g2w kernels: the few hot loops of the runtime, in C so that each can be compiled for the CPU's
// vector extensions with a per-function `target` attribute and chosen at run time. No global
// compiler flags are needed, so the Swift package stays usable as a versioned dependency.
//
// All functions operate on already-validated data: pointers valid for the stated element counts.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), continuing from `crc` (pass 0 to start).
/// Uses the SSE4.2 `crc32` instruction when the CPU has it.
uint32_t g2w_crc32c(uint32_t crc, const void *data, size_t length);

/// Name of the instruction set the kernels dispatch to ("avx2+fma+f16c" or "generic").
const char *g2w_kernel_isa(void);

/// Converts `n` IEEE binary16 values to binary32 (exact).
void g2w_f16_to_f32(const uint16_t *src, float *dst, size_t n);
/// Converts `n` binary32 values to binary16, rounding to nearest, ties to even (overflow -> inf).
void g2w_f32_to_f16(const float *src, uint16_t *dst, size_t n);

#ifdef __cplusplus
}
#endif
