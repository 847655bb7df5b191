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
