// The one place the vector level is chosen: once, at the first call, from the CPU's features and
// G2W_KERNELS (generic or avx2 caps it); every kernel file asks g2w_isa_level() (isa.h).
#include "cg2w.h"
#include "simd.h"
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

int g2w_isa_cache = -1;  // 0 generic, 1 avx2+fma+f16c, 2 the same + avx512f, 3 the same + avx512bw/vl/vnni (int8 dot products)

static int detect_isa(void) {
#if G2W_X86
    const char *env = getenv("G2W_KERNELS");
    if (env && strcmp(env, "generic") == 0) return 0;
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))) return 0;
    if (env && strcmp(env, "avx2") == 0) return 1;
    if (!__builtin_cpu_supports("avx512f")) return 1;
    if (env && strcmp(env, "avx512") == 0) return 2;
    return (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")) ? 3 : 2;
#endif
    return 0;
}

int g2w_isa_level(void) {
    int v = __atomic_load_n(&g2w_isa_cache, __ATOMIC_RELAXED);
    if (v < 0) { v = detect_isa(); __atomic_store_n(&g2w_isa_cache, v, __ATOMIC_RELAXED); }
    return v;
}

int g2w_force_isa(int level) {
    int best = detect_isa();
    int v = level < 0 || level > best ? best : level;
    __atomic_store_n(&g2w_isa_cache, v, __ATOMIC_RELAXED);
    return v;
}

const char *g2w_kernel_isa(void) {
    switch (isa_level()) {
    case 3: return "avx512vnni+avx512bw+avx512f+avx2+fma+f16c";
    case 2: return "avx512f+avx2+fma+f16c";
    case 1: return "avx2+fma+f16c";
    default: return "generic";
    }
}


// ---------------------------------------------------------------------------------------------
// Streaming parameters per machine class. The decoding kernels read each thread's rows as four
// far-apart streams with a software prefetch some bytes ahead on each; the best distance depends
// on the core's miss handling and prefetchers, not on the ISA. Measured (interleaved A/B runs of
// the 124M decoding step, two threads, kernel GB/s over a plain read of the same bytes next to
// it): Intel Sapphire Rapids 1 KB (f16, the distance the kernels were tuned with); AMD EPYC
// Zen 5 (family 26) 2 KB: f16 0.87 -> 0.99, q8_0 0.69 -> 0.73-0.82, q4_0 0.74 -> 0.86 of the
// read, 4 KB no better. Zen 4 (family 25) was not measured with this choice; it takes Zen 5's
// row (it showed the same shortfall at 1 KB: issue 20). G2W_PREFETCH overrides the table;
// `g2w-run --bench` prints the choice and sweeps the alternatives.
static size_t prefetch_cache = 0;
static size_t prefetch_chosen = 0;
static char prefetch_source[64];

static size_t clamp_prefetch(size_t b) {
    b &= ~(size_t)63;
    return b < 256 ? 256 : b > 16384 ? 16384 : b;
}

static size_t choose_prefetch(char *source, size_t cap) {
    const char *env = getenv("G2W_PREFETCH");
    if (env && *env) {
        char *end = NULL;
        unsigned long v = strtoul(env, &end, 10);
        if (end && *end == 0 && v > 0) { snprintf(source, cap, "G2W_PREFETCH"); return clamp_prefetch((size_t)v); }
    }
#if G2W_X86
    __builtin_cpu_init();
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(1), "c"(0));
    unsigned family = (eax >> 8) & 0xF;
    if (family == 0xF) family += (eax >> 20) & 0xFF;
    if (__builtin_cpu_is("amd")) {
        if (family >= 0x19) { snprintf(source, cap, "AMD family %u (table)", family); return 2048; }
        snprintf(source, cap, "AMD family %u (table default)", family);
        return 1024;
    }
    if (__builtin_cpu_is("intel")) { snprintf(source, cap, "Intel family %u (table)", family); return 1024; }
#endif
    snprintf(source, cap, "default");
    return 1024;
}

size_t g2w_prefetch_bytes(void) {
    size_t v = __atomic_load_n(&prefetch_cache, __ATOMIC_RELAXED);
    if (v == 0) {
        char source[64];
        size_t chosen = choose_prefetch(source, sizeof source);
        memcpy(prefetch_source, source, sizeof source);
        __atomic_store_n(&prefetch_chosen, chosen, __ATOMIC_RELAXED);
        __atomic_store_n(&prefetch_cache, chosen, __ATOMIC_RELEASE);
        v = chosen;
    }
    return v;
}

g2w_tuning g2w_get_tuning(void) {
    g2w_tuning t;
    t.prefetch_bytes = g2w_prefetch_bytes();
    if (t.prefetch_bytes != __atomic_load_n(&prefetch_chosen, __ATOMIC_RELAXED)) snprintf(t.source, sizeof t.source, "set by the caller");
    else memcpy(t.source, prefetch_source, sizeof t.source);
    return t;
}

void g2w_set_prefetch_bytes(size_t bytes) {
    (void)g2w_prefetch_bytes();  // make the machine's choice first, so 0 has something to restore
    size_t chosen = __atomic_load_n(&prefetch_chosen, __ATOMIC_RELAXED);
    __atomic_store_n(&prefetch_cache, bytes == 0 ? chosen : clamp_prefetch(bytes), __ATOMIC_RELAXED);
}
