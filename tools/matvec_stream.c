// Streaming rate of the decode kernels on one core (issue 6 diagnostics; not part of the build).
//
// Runs g2w_matvec over the matrices of one GPT-2 124M decoding step (12 x qkv, proj, fc, proj, then
// the LM head), reading the weights either from an anonymous buffer or straight from a mapped
// file (as g2w-run does), and prints GB/s beside a plain read of the same bytes (g2w_bench_read).
// The weights' values do not matter to the speed; with a file, the bytes after its first MB are
// used as weights, so pass a 124M-shaped .g2w of the same dtype (>= 247 MB f16, 494 MB f32).
//
//   clang -O2 -I Sources/CG2W/include tools/matvec_stream.c Sources/CG2W/matmul.c Sources/CG2W/convert.c Sources/CG2W/isa.c Sources/CG2W/bench.c -lm -o /tmp/matvec_stream
//   /tmp/matvec_stream f16 tools/out/gpt2-124M-f16.g2w     # or: f32 FILE, or no FILE for an anonymous buffer
//   G2W_KERNELS=avx2 /tmp/matvec_stream f16 FILE            # cap the kernel level
#include "cg2w.h"
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "f16") && strcmp(argv[1], "f32"))) {
        fprintf(stderr, "usage: %s f16|f32 [FILE]\n", argv[0]);
        return 2;
    }
    int f16 = strcmp(argv[1], "f16") == 0;
    size_t es = f16 ? 2 : 4;
    const size_t R[5] = {2304, 768, 3072, 768, 50257}, C[5] = {768, 768, 768, 3072, 768};
    size_t total = R[4] * C[4];
    for (int m = 0; m < 4; m++) total += 12 * R[m] * C[m];
    size_t bytes = total * es, skip = 1 << 20;
    const char *W;
    if (argc > 2) {
        int fd = open(argv[2], O_RDONLY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) { perror(argv[2]); return 1; }
        if ((size_t)st.st_size < skip + bytes) { fprintf(stderr, "%s: %lld bytes, need %zu\n", argv[2], (long long)st.st_size, skip + bytes); return 1; }
        const char *p = mmap(NULL, skip + bytes, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) { perror("mmap"); return 1; }
        W = p + skip;
    } else {
        char *p = aligned_alloc(64, bytes);
        if (!p) { perror("alloc"); return 1; }
        memset(p, 0x11, bytes);
        W = p;
    }
    float *x = calloc(3072, sizeof(float)), *y = calloc(R[4], sizeof(float));
    printf("%s, %s, kernels %s, %.1f MB per step\n", argv[1], argc > 2 ? argv[2] : "anonymous buffer", g2w_kernel_isa(), bytes / 1e6);
    for (int rep = 0; rep < 6; rep++) {
        double a = now();
        const char *p = W;
        for (int l = 0; l <= 12; l++)
            for (int m = (l == 12 ? 4 : 0); m < (l == 12 ? 5 : 4); m++) {
                if (f16) g2w_matvec_f16((const uint16_t *)p, x, NULL, y, C[m], 0, R[m]);
                else g2w_matvec_f32((const float *)p, x, NULL, y, C[m], 0, R[m]);
                p += R[m] * C[m] * es;
            }
        double b = now();
        uint64_t sink = g2w_bench_read(W, bytes);
        double c = now();
        printf("rep %d: matvec %.2f GB/s, plain read %.2f GB/s%s\n", rep, bytes / (b - a) / 1e9, bytes / (c - b) / 1e9, sink == 42 ? " " : "");
    }
    return 0;
}
