// How long mapping a file's cached pages takes (issue 6 diagnostics; not part of the build).
//
// Maps FILE three ways and times: touching one byte per 4 KB page (page faults), MADV_POPULATE_READ,
// and MAP_POPULATE; then touching every page again once mapped. A file whose page cache holds
// large folios (what readahead builds) maps in ~1 ms per 250 MB here; one cached as 4 KB folios
// (e.g. written 4 KB at a time: `dd if=A of=B bs=4k`) takes 9-38 ms. This is part of the first
// token's time (README, "Performance").
//
//   cc -O2 tools/page_map.c -o /tmp/page_map && /tmp/page_map tools/out/gpt2-124M-f16.g2w
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s FILE\n", argv[0]); return 2; }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) { perror(argv[1]); return 1; }
    size_t n = (size_t)st.st_size;
    const char *how[3] = {"touch each page", "MADV_POPULATE_READ", "MAP_POPULATE"};
    for (int mode = 0; mode < 3; mode++) {
        double t0 = now();
        volatile const char *p = mmap(NULL, n, PROT_READ, MAP_SHARED | (mode == 2 ? MAP_POPULATE : 0), fd, 0);
        if (p == MAP_FAILED) { perror("mmap"); return 1; }
        long s = 0;
        if (mode == 0) for (size_t i = 0; i < n; i += 4096) s += p[i];
        if (mode == 1 && madvise((void *)p, n, MADV_POPULATE_READ) != 0) perror("madvise");
        double t1 = now();
        for (size_t i = 0; i < n; i += 4096) s += p[i];
        double t2 = now();
        printf("%-20s map %.2f ms, touch again %.2f ms%s\n", how[mode], (t1 - t0) * 1e3, (t2 - t1) * 1e3, s == 42 ? " " : "");
        munmap((void *)p, n);
    }
    return 0;
}
