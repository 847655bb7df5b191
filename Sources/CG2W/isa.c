// The one place the vector level is chosen: once, at the first call, from the CPU's features and
// G2W_KERNELS (generic or avx2 caps it); every kernel file asks g2w_isa_level() (isa.h).
#include "cg2w.h"
#include "simd.h"
#include <stdlib.h>
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

