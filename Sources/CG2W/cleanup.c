#include "cg2w.h"
#include <signal.h>
#include <string.h>
#include <unistd.h>

static char cleanup_path[4096];
static volatile sig_atomic_t cleanup_armed = 0;

void g2w_cleanup_register(const char *path) {
    cleanup_armed = 0;
    size_t n = strlen(path);
    if (n >= sizeof cleanup_path) return;  // too long to track; the writer still removes it on errors
    memcpy(cleanup_path, path, n + 1);
    cleanup_armed = 1;
}

void g2w_cleanup_unregister(void) { cleanup_armed = 0; }

static void on_signal(int sig) {
    if (cleanup_armed) unlink(cleanup_path);  // async-signal-safe
    static const char msg[] = "\ng2w: interrupted; removed the partial output\n";
    if (cleanup_armed) { ssize_t r = write(2, msg, sizeof msg - 1); (void)r; }
    _exit(128 + sig);
}

// `handler` for SIGINT, SIGTERM and SIGHUP. A file-size limit (ulimit -f) or a closed pipe
// becomes an error return (EFBIG, EPIPE) that the writer reports and cleans up after, instead of
// killing the process.
static void install(void (*handler)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
    signal(SIGXFSZ, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
}

void g2w_cleanup_install_handlers(void) { install(on_signal); }

// Deferred stop for long runs (training): SIGINT/SIGTERM/SIGHUP only record the signal; the run
// checks between steps, saves its state and exits 128 + signal. A second signal while a stop is
// pending exits at once (removing a registered temporary file), for a user who will not wait.
static volatile sig_atomic_t stop_signal = 0;

static void on_stop_signal(int sig) {
    if (stop_signal) on_signal(sig);
    stop_signal = sig;
}

void g2w_stop_install_handlers(void) { install(on_stop_signal); }

int g2w_stop_requested(void) { return stop_signal; }

// ---- Opening input files safely ----
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <errno.h>

int g2w_open_regular(const char *path, uint64_t *size, unsigned *type) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) { int e = errno; close(fd); errno = e; return -1; }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        *type = S_ISDIR(st.st_mode) ? 1 : S_ISFIFO(st.st_mode) ? 2 : (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) ? 3 : S_ISSOCK(st.st_mode) ? 4 : 5;
        return -2;
    }
    // Back to blocking reads (O_NONBLOCK only kept open() from waiting on a FIFO's writer).
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    *size = (uint64_t)st.st_size;
    *type = 0;
    return fd;
}
