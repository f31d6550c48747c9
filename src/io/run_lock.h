/* run_lock.h — one job at a time in a run directory.
 *
 * Two jobs writing the same output_dir would interleave their metrics,
 * overwrite each other's checkpoints and resume from each other's markers.
 * The job's rank 0 holds an exclusive POSIX record lock on
 * "<output_dir>/.lock" from its setup to its end; a second job asking for it
 * is refused with the holder's description (pid, host, start time), which
 * the holder writes into the file.
 *
 * A record lock (fcntl) rather than flock: it is what cluster filesystems
 * share between nodes (NFS through its lock manager, Lustre mounted with
 * -o flock, GPFS). The kernel drops it when the holder's process ends,
 * however it ends (a crash, SIGKILL, the scheduler's time limit), so a
 * resubmitted job never finds a stale lock. Where the filesystem has no
 * locks at all the job says so on stderr and goes on unlocked.
 */
#ifndef TAU2_IO_RUN_LOCK_H
#define TAU2_IO_RUN_LOCK_H

#include <stddef.h>

typedef struct RunLock RunLock;

/* Create dir (and its parents) if missing and lock it for this process,
 * describing the holder as `what` (e.g. "grpo job inputs/tiny.json").
 * A lock held by another process is tried again every second for up to
 * wait_s seconds (a requeued job: the lease of its previous attempt's lock
 * may outlive a node that died). NULL with err saying why: the directory
 * cannot be made, or another process holds the lock (err then quotes its
 * description). */
RunLock *run_lock_acquire(const char *dir, const char *what, int wait_s, char *err, size_t errlen);
/* How long a job should wait for its run directory: 180 s when Slurm
 * restarted it (SLURM_RESTART_COUNT > 0: a requeue after a preemption or a
 * node failure, whose NFS lock lease lasts up to 90 s), else 0. */
int run_lock_wait_s(void);
/* Release the lock (the file stays; an unlocked file means no holder). */
void run_lock_release(RunLock *lock);

#endif
