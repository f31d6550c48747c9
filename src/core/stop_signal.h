/* stop_signal.h — a clean stop on SIGUSR1 or SIGTERM.
 *
 * Schedulers warn a job before they end it: Slurm sends SIGUSR1 (with
 * --signal=USR1@secs) ahead of the time limit and SIGTERM on preemption or
 * scancel. A long job installs these handlers once; the handler only
 * records the signal, and the job checks at its step boundaries, finishes
 * the step it is in, writes a checkpoint and exits 0, so that rerunning
 * (or requeueing) the same command resumes. */
#ifndef TAU2_CORE_STOP_SIGNAL_H
#define TAU2_CORE_STOP_SIGNAL_H

/* Install the handlers for SIGUSR1 and SIGTERM (idempotent). */
void stop_signal_install(void);
/* The signal that asked for a stop, or 0. */
int stop_signal_pending(void);
/* Forget a recorded signal and restore the default actions. */
void stop_signal_reset(void);

#endif
