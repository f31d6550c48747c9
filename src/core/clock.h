/* clock.h — the two clocks the program reads: a monotonic one for
 * durations, and the wall clock written into files as τ²-bench writes it. */
#ifndef TAU2_CORE_CLOCK_H
#define TAU2_CORE_CLOCK_H

#define CLOCK_ISO_LEN 32

/* Seconds on the monotonic clock (for differences only). */
double clock_now_s(void);

/* Local wall-clock time as Python's datetime.now().isoformat() writes it
 * (τ²-bench's get_now): "2025-06-17T12:34:56.789012". */
void clock_wall_iso(char out[CLOCK_ISO_LEN]);

#endif
