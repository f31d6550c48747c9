/* sysmem.h — how much memory this process may use, to refuse a size that
 * cannot fit (a KV cache budget, a model's weights) with a message naming
 * the size, before an allocation fails or the kernel's OOM killer ends the
 * job midway. */
#ifndef TAU2_CORE_SYSMEM_H
#define TAU2_CORE_SYSMEM_H

#include <stddef.h>

/* The smallest of the machine's physical memory, the cgroup's limit
 * (cgroup v2 memory.max, v1 memory.limit_in_bytes: what Slurm's --mem
 * sets) and the environment variable TAU2_MEMORY_LIMIT (bytes, or with a
 * K, M, G or T suffix: 64G; for nodes shared without cgroups); 0 when none
 * is known. Read once per process; a malformed TAU2_MEMORY_LIMIT is an
 * input error (exit 2). */
double sysmem_limit_bytes(void);

/* bytes as "12.3 GiB" (or MiB below a GiB) in buf; returns buf. */
const char *sysmem_format(double bytes, char *buf, size_t n);

/* 0 when `bytes` fits within sysmem_limit_bytes() (or no limit is known);
 * else -1 with err saying "WHAT would take X GiB, more than the Y GiB of memory
 * this process may use". */
int sysmem_check(double bytes, const char *what, char *err, size_t errlen);

#endif
