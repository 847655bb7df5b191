// Internal to CG2W (not part of the public header): the kernel level chosen once from the CPU's
// features and G2W_KERNELS, shared by every file with vector code so they all dispatch alike.
#pragma once

/// 0 portable, 1 AVX2+FMA+F16C, 2 the same + AVX-512F, 3 the same + AVX-512BW/VL/VNNI (chosen in isa.c).
int g2w_isa_level(void);

/// The decoding kernels' prefetch distance per stream in bytes (isa.c; g2w_get_tuning).
size_t g2w_prefetch_bytes(void);
