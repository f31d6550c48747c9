/* stop_signal.c — see stop_signal.h. */
#include "core/stop_signal.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t g_pending;

static void on_stop_signal(int sig) {
    /* only an assignment: nothing else is async-signal-safe enough here */
    g_pending = sig;
}

void stop_signal_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* blocking reads and MPI waits carry on */
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int stop_signal_pending(void) { return (int)g_pending; }

void stop_signal_reset(void) {
    signal(SIGUSR1, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    g_pending = 0;
}
