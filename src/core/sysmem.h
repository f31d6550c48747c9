/* sysmem.h — how much memory this process may use, to refuse a size that
 * cannot fit (a KV cache budget, a model's weights) with a message naming
 * the size, before an allocation fails or the kernel's OOM killer ends the
 * job midway. */
#ifndef TAU2_CORE_SYSMEM_H
#define TAU2_CORE_SYSMEM_H

#include <stddef.h>

/* The smaller of the machine's physical memory and the cgroup's limit
 * (cgroup v2 memory.max, v1 memory.limit_in_bytes: what Slurm's --mem
 * sets); 0 when neither is known. */
double sysmem_limit_bytes(void);

/* 0 when `bytes` fits within sysmem_limit_bytes() (or no limit is known);
 * else -1 with err saying "WHAT would take X GiB, more than the Y GiB of memory
 * this process may use". */
int sysmem_check(double bytes, const char *what, char *err, size_t errlen);

#endif
