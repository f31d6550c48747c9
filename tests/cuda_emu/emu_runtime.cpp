/* emu_runtime.cpp — the CUDA runtime over host memory, and the kernel
 * launcher: each block's threads are cooperative fibers run round-robin
 * (tests/cuda_emu/README.md). Single host thread: launches from two host
 * threads at once abort. */
#include <assert.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

extern "C" {
uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim;
dim3 gridDim;
}

/* ------------------------------------------------------------ errors */

static thread_local cudaError_t g_last_error = cudaSuccess;

static cudaError_t fail(cudaError_t e, const char *fmt, ...) {
    if (getenv("TAU2_CUDA_EMU_QUIET") == NULL) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "cuda-emu: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
    }
    g_last_error = e;
    return e;
}

/* A bug the emulator caught that CUDA would leave undefined (a barrier some
 * threads never reach, a warp collective missing lanes): report, then abort
 * unless TAU2_CUDA_EMU_CONTINUE is set. */
static void emu_bug(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cuda-emu: KERNEL BUG: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (!getenv("TAU2_CUDA_EMU_CONTINUE")) abort();
    g_last_error = cudaErrorLaunchFailure;
}

/* ------------------------------------------------------------ stream capture (state) */

/* A stream being captured into a graph by this host thread: the work
 * queued on it is recorded as nodes (closures over the call's arguments, as
 * a graph's nodes hold them) instead of run. CUDA refuses the calls that
 * would synchronize with or allocate under a capture (modes global and
 * thread-local); so does this, and the capture is then invalid. */
typedef std::vector<std::function<void()>> EmuNodes;
struct EmuCapture {
    cudaStream_t stream;
    cudaStreamCaptureMode mode;
    std::shared_ptr<EmuNodes> nodes;
    bool invalid;
};
static thread_local EmuCapture *g_cap = NULL;

static bool capturing(cudaStream_t s) { return g_cap && g_cap->stream == s; }

/* what is refused while this thread captures (not in relaxed mode) */
static cudaError_t capture_refuse(const char *what) {
    if (!g_cap || g_cap->mode == cudaStreamCaptureModeRelaxed) return cudaSuccess;
    g_cap->invalid = true;
    return fail(cudaErrorStreamCaptureUnsupported, "%s while stream %p is being captured (the capture is now invalid)",
                what, (void *)g_cap->stream);
}

/* ------------------------------------------------------------ memory registry */

struct Alloc {
    size_t size;
    bool device;     /* false: cudaMallocHost, or registered */
    bool registered; /* the program's own memory, page-locked by cudaHostRegister */
};
static std::mutex g_mem_mu;
static std::map<uintptr_t, Alloc> g_allocs;
static size_t g_device_bytes, g_device_peak; /* now, and the most since the start or the last reset */
static int g_device = 0; /* cudaSetDevice's */
/* Each emulated device's memory (one count per process, as each rank
 * takes a device of its own): 80 GiB, or TAU2_CUDA_EMU_MEMORY_MIB. A
 * cudaMalloc past it fails as on a GPU, so that a job's plan can be tried
 * against a small device. */
static size_t emu_device_memory(void) {
    static size_t bytes = 0;
    if (!bytes) {
        const char *e = getenv("TAU2_CUDA_EMU_MEMORY_MIB");
        unsigned long long mib = e ? strtoull(e, NULL, 10) : 0;
        bytes = mib > 0 ? (size_t)mib << 20 : (size_t)80 << 30;
    }
    return bytes;
}

/* The allocation holding [p, p + n), or NULL. */
static const std::pair<const uintptr_t, Alloc> *find_alloc(const void *p, size_t n = 1) {
    std::lock_guard<std::mutex> g(g_mem_mu);
    uintptr_t a = (uintptr_t)p;
    auto it = g_allocs.upper_bound(a);
    if (it == g_allocs.begin()) return NULL;
    --it;
    if (a >= it->first && a + (n ? n : 1) <= it->first + (it->second.size ? it->second.size : 1)) return &*it;
    return NULL;
}
static bool is_device(const void *p, size_t n = 1) {
    const auto *a = find_alloc(p, n);
    return a && a->second.device;
}
/* Inside some device allocation but running past its end. */
static bool overruns_device(const void *p, size_t n) {
    const auto *a = find_alloc(p, 1);
    return a && a->second.device && !is_device(p, n);
}

/* Exactly the bytes asked for (256-aligned like cudaMalloc): under
 * AddressSanitizer (TAU2_CUDA_EMU_ASAN) a kernel reading or writing past the
 * end of a buffer hits the redzone. */
static void *emu_alloc(size_t size, bool device) {
    void *p = NULL;
    if (device) {
        std::lock_guard<std::mutex> g(g_mem_mu);
        if (g_device_bytes + size > emu_device_memory()) return NULL;
    }
    if (posix_memalign(&p, 256, size ? size : 1)) return NULL;
    /* Fresh device memory holds garbage on a GPU: NaN bytes make reads of
     * unwritten memory visible. */
    memset(p, 0xff, size ? size : 1);
    std::lock_guard<std::mutex> g(g_mem_mu);
    g_allocs[(uintptr_t)p] = Alloc{size, device, false};
    if (device) g_device_bytes += size;
    if (g_device_bytes > g_device_peak) g_device_peak = g_device_bytes;
    return p;
}
static cudaError_t emu_free(void *p, bool device, const char *what) {
    if (!p) return cudaSuccess;
    {
        std::lock_guard<std::mutex> g(g_mem_mu);
        auto it = g_allocs.find((uintptr_t)p);
        if (it == g_allocs.end() || it->second.device != device || it->second.registered) goto bad;
        if (device) g_device_bytes -= it->second.size;
        g_allocs.erase(it);
    }
    free(p);
    return cudaSuccess;
bad:
    return fail(cudaErrorInvalidValue, "%s(%p): not a pointer from the matching allocator", what, p);
}

extern "C" {

cudaError_t cudaMalloc(void **p, size_t size) {
    if (cudaError_t e = capture_refuse("cudaMalloc")) return e;
    if (!p) return fail(cudaErrorInvalidValue, "cudaMalloc: NULL out pointer");
    *p = emu_alloc(size, true);
    return *p ? cudaSuccess : fail(cudaErrorMemoryAllocation, "cudaMalloc(%zu): out of memory", size);
}
cudaError_t cudaFree(void *p) {
    if (cudaError_t e = capture_refuse("cudaFree")) return e;
    return emu_free(p, true, "cudaFree");
}
/* (a graph's allocation nodes are not emulated: refused under capture) */
cudaError_t cudaMallocAsync(void **p, size_t size, cudaStream_t s) {
    if (g_cap) return capture_refuse("cudaMallocAsync (allocation nodes are not emulated)");
    (void)s;
    return cudaMalloc(p, size);
}
cudaError_t cudaFreeAsync(void *p, cudaStream_t s) {
    if (g_cap) return capture_refuse("cudaFreeAsync (allocation nodes are not emulated)");
    (void)s;
    return emu_free(p, true, "cudaFreeAsync");
}
cudaError_t cudaMallocHost(void **p, size_t size) {
    if (cudaError_t e = capture_refuse("cudaMallocHost")) return e;
    if (!p) return fail(cudaErrorInvalidValue, "cudaMallocHost: NULL out pointer");
    *p = emu_alloc(size, false);
    return *p ? cudaSuccess : fail(cudaErrorMemoryAllocation, "cudaMallocHost(%zu): out of memory", size);
}
cudaError_t cudaHostAlloc(void **p, size_t size, unsigned flags) { (void)flags; return cudaMallocHost(p, size); }
cudaError_t cudaFreeHost(void *p) {
    if (cudaError_t e = capture_refuse("cudaFreeHost")) return e;
    return emu_free(p, false, "cudaFreeHost");
}
/* The program's memory stays its own: registered, it counts as pinned for
 * the copies' checks until cudaHostUnregister, which must come first. */
cudaError_t cudaHostRegister(void *p, size_t size, unsigned flags) {
    (void)flags;
    if (!p || !size) return fail(cudaErrorInvalidValue, "cudaHostRegister(%p, %zu): nothing to register", p, size);
    std::lock_guard<std::mutex> g(g_mem_mu);
    uintptr_t a = (uintptr_t)p;
    auto next = g_allocs.lower_bound(a);
    bool overlaps = next != g_allocs.end() && next->first < a + size;
    if (next != g_allocs.begin()) {
        auto prev = std::prev(next);
        overlaps = overlaps || prev->first + prev->second.size > a;
    }
    if (overlaps)
        return fail(cudaErrorHostMemoryAlreadyRegistered, "cudaHostRegister(%p, %zu): overlaps memory CUDA knows", p,
                    size);
    g_allocs[a] = Alloc{size, false, true};
    return cudaSuccess;
}
cudaError_t cudaHostUnregister(void *p) {
    std::lock_guard<std::mutex> g(g_mem_mu);
    auto it = g_allocs.find((uintptr_t)p);
    if (it == g_allocs.end() || !it->second.registered)
        return fail(cudaErrorHostMemoryNotRegistered, "cudaHostUnregister(%p): not registered", p);
    g_allocs.erase(it);
    return cudaSuccess;
}

static const char *kind_name(cudaMemcpyKind k) {
    switch (k) {
    case cudaMemcpyHostToHost: return "HostToHost";
    case cudaMemcpyHostToDevice: return "HostToDevice";
    case cudaMemcpyDeviceToHost: return "DeviceToHost";
    case cudaMemcpyDeviceToDevice: return "DeviceToDevice";
    default: return "Default";
    }
}

/* Checks that each side of a copy is (or is not) device memory as its kind
 * says, and that the device side lies inside one allocation. */
static cudaError_t check_side(const void *p, size_t n, bool want_device, const char *side, const char *what,
                              cudaMemcpyKind kind) {
    if (n == 0) return cudaSuccess;
    if (want_device) {
        if (!is_device(p, n))
            return fail(cudaErrorInvalidValue, "%s %s: %s %p (+%zu bytes) is %s", what, kind_name(kind), side, p, n,
                        overruns_device(p, n) ? "past the end of its device allocation" : "not device memory");
    } else if (find_alloc(p, 1) && find_alloc(p, 1)->second.device) {
        return fail(cudaErrorInvalidValue, "%s %s: %s %p is device memory", what, kind_name(kind), side, p);
    }
    return cudaSuccess;
}

/* A copy's sides against its kind (cudaSuccess, or the error). */
static cudaError_t copy_check(void *dst, const void *src, size_t n, cudaMemcpyKind kind, const char *what) {
    if (n == 0) return cudaSuccess;
    if (!dst || !src) return fail(cudaErrorInvalidValue, "%s: NULL pointer", what);
    cudaError_t e = cudaSuccess;
    switch (kind) {
    case cudaMemcpyHostToDevice:
        if ((e = check_side(dst, n, true, "dst", what, kind)) || (e = check_side(src, n, false, "src", what, kind)))
            return e;
        break;
    case cudaMemcpyDeviceToHost:
        if ((e = check_side(src, n, true, "src", what, kind)) || (e = check_side(dst, n, false, "dst", what, kind)))
            return e;
        break;
    case cudaMemcpyDeviceToDevice:
        if ((e = check_side(src, n, true, "src", what, kind)) || (e = check_side(dst, n, true, "dst", what, kind)))
            return e;
        break;
    case cudaMemcpyHostToHost:
        break;
    default: /* cudaMemcpyDefault: either side, as long as a device side fits */
        if (overruns_device(src, n) || overruns_device(dst, n))
            return fail(cudaErrorInvalidValue, "%s Default: a device side runs past its allocation", what);
        break;
    }
    return cudaSuccess;
}

static cudaError_t emu_memcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind, const char *what) {
    if (cudaError_t e = copy_check(dst, src, n, kind, what)) return e;
    if (n) memmove(dst, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
    if (cudaError_t e = capture_refuse("cudaMemcpy")) return e;
    return emu_memcpy(dst, src, n, kind, "cudaMemcpy");
}
/* Whether p is pinned host memory (cudaMallocHost / cudaHostAlloc). */
static bool is_pinned(const void *p, size_t n) {
    auto a = find_alloc(p, n);
    return a && !a->second.device;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t s) {
    if (g_cap && s == 0) return capture_refuse("cudaMemcpyAsync on the legacy default stream");
    if (!capturing(s)) return emu_memcpy(dst, src, n, kind, "cudaMemcpyAsync");
    /* a copy node: checked now, made at each launch of the graph; its host
     * side must be pinned (CUDA cannot capture a pageable copy) */
    if ((kind == cudaMemcpyHostToDevice && !is_pinned(src, n)) || (kind == cudaMemcpyDeviceToHost && !is_pinned(dst, n)))
        return capture_refuse("cudaMemcpyAsync with a pageable host side");
    if (cudaError_t e = copy_check(dst, src, n, kind, "cudaMemcpyAsync")) return e;
    g_cap->nodes->push_back([=] { emu_memcpy(dst, src, n, kind, "cudaMemcpyAsync (graph node)"); });
    return cudaSuccess;
}
cudaError_t cudaMemcpy2D(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                         cudaMemcpyKind kind) {
    if (cudaError_t e = capture_refuse("cudaMemcpy2D")) return e;
    for (size_t r = 0; r < height; r++) {
        cudaError_t e = emu_memcpy((char *)dst + r * dpitch, (const char *)src + r * spitch, width, kind, "cudaMemcpy2D");
        if (e) return e;
    }
    return cudaSuccess;
}
cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t s) {
    if (g_cap) return capture_refuse("cudaMemcpy2DAsync (not emulated in a graph)");
    (void)s;
    return cudaMemcpy2D(dst, dpitch, src, spitch, width, height, kind);
}
static cudaError_t emu_memset(void *p, int v, size_t n) {
    if (n == 0) return cudaSuccess;
    if (!is_device(p, n))
        return fail(cudaErrorInvalidValue, "cudaMemset(%p, %zu bytes): %s", p, n,
                    overruns_device(p, n) ? "past the end of its device allocation" : "not device memory");
    memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaMemset(void *p, int v, size_t n) {
    if (cudaError_t e = capture_refuse("cudaMemset")) return e;
    return emu_memset(p, v, n);
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s) {
    if (g_cap && s == 0) return capture_refuse("cudaMemsetAsync on the legacy default stream");
    if (!capturing(s)) return emu_memset(p, v, n);
    if (n && !is_device(p, n)) return emu_memset(p, v, n); /* the same error, now */
    g_cap->nodes->push_back([=] { emu_memset(p, v, n); });
    return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *a, const void *p) {
    if (!a) return fail(cudaErrorInvalidValue, "cudaPointerGetAttributes: NULL");
    memset(a, 0, sizeof *a);
    const auto *al = find_alloc(p, 1);
    if (al && al->second.device) {
        a->type = cudaMemoryTypeDevice;
        a->device = g_device;
        a->devicePointer = (void *)p;
    } else if (al) {
        a->type = cudaMemoryTypeHost;
        a->hostPointer = (void *)p;
        a->devicePointer = (void *)p;
    } else {
        a->type = cudaMemoryTypeUnregistered;
        a->device = -2;
        a->hostPointer = (void *)p;
    }
    return cudaSuccess;
}

/* the profiler's range marks (bench_decode_gpu): nothing to profile here */
cudaError_t cudaProfilerStart(void) { return cudaSuccess; }
cudaError_t cudaProfilerStop(void) { return cudaSuccess; }

/* The emulation's own: the most device memory held at once since the
 * start or the last reset (tests of memory plans declare them weak, so the
 * same test links against the real runtime too). */
size_t tau2_cuda_emu_peak_bytes(void) {
    std::lock_guard<std::mutex> g(g_mem_mu);
    return g_device_peak;
}
void tau2_cuda_emu_peak_reset(void) {
    std::lock_guard<std::mutex> g(g_mem_mu);
    g_device_peak = g_device_bytes;
}
/* Device memory a library takes for itself, with no pointer the program
 * sees (a cuBLAS handle's, emu_cublas.cpp): counted by cudaMemGetInfo and
 * the peak like an allocation, with no host memory behind it. bytes < 0
 * gives it back. False when the device has no room. */
bool tau2_cuda_emu_hold(long bytes) {
    std::lock_guard<std::mutex> g(g_mem_mu);
    if (bytes > 0 && g_device_bytes + (size_t)bytes > emu_device_memory()) return false;
    g_device_bytes = (size_t)((long)g_device_bytes + bytes);
    if (g_device_bytes > g_device_peak) g_device_peak = g_device_bytes;
    return true;
}

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total) {
    std::lock_guard<std::mutex> g(g_mem_mu);
    if (total) *total = emu_device_memory();
    if (free_b) *free_b = emu_device_memory() > g_device_bytes ? emu_device_memory() - g_device_bytes : 0;
    return cudaSuccess;
}

/* ------------------------------------------------------------ device, streams, events */

/* Devices a process sees: TAU2_CUDA_EMU_DEVICES (default 1), so multi-rank
 * tests can give every rank "its own GPU" (rank % count) as on a real node.
 * All of them are the same host memory; the emulated NCCL (emu_nccl.cpp)
 * moves data between the processes. */
static int emu_device_count(void) {
    static int n = -1;
    if (n < 0) {
        const char *e = getenv("TAU2_CUDA_EMU_DEVICES");
        n = e && atoi(e) > 0 ? atoi(e) : 1;
    }
    return n;
}

cudaError_t cudaGetDeviceCount(int *n) {
    if (n) *n = emu_device_count();
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
    if (d < 0 || d >= emu_device_count())
        return fail(cudaErrorInvalidDevice, "cudaSetDevice(%d): the emulator has %d device(s) (TAU2_CUDA_EMU_DEVICES)",
                    d, emu_device_count());
    g_device = d;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int *d) {
    if (d) *d = g_device;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int d) {
    if (d < 0 || d >= emu_device_count() || !p) return fail(cudaErrorInvalidDevice, "cudaGetDeviceProperties(%d)", d);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CPU emulation (tau2 cuda_emu)");
    /* device d is the same "GPU" in every process, as on a node whose
     * GPUs all processes see (NCCL's duplicate check compares UUIDs) */
    memcpy(p->uuid.bytes, "tau2-cuda-emu", 13);
    p->uuid.bytes[15] = (char)d;
    p->totalGlobalMem = emu_device_memory();
    p->sharedMemPerBlock = 48 << 10;
    p->sharedMemPerBlockOptin = 227 << 10;
    p->sharedMemPerMultiprocessor = 228 << 10;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 0x7fffffff, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 132;
    p->maxThreadsPerMultiProcessor = 2048;
    p->totalConstMem = 65536;
    p->l2CacheSize = 50 << 20;
    p->unifiedAddressing = 1;
    p->concurrentKernels = 1;
    p->asyncEngineCount = 2;
    return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *v, enum cudaDeviceAttr attr, int d) {
    (void)d;
    if (!v) return cudaErrorInvalidValue;
    switch (attr) {
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = 227 << 10; break;
    case cudaDevAttrMultiProcessorCount: *v = 132; break;
    case cudaDevAttrMaxThreadsPerBlock: *v = 1024; break;
    case cudaDevAttrWarpSize: *v = 32; break;
    case cudaDevAttrComputeCapabilityMajor: *v = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
    default: *v = 0; break;
    }
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) { return capture_refuse("cudaDeviceSynchronize"); }
cudaError_t cudaDeviceReset(void) { return cudaSuccess; }
cudaError_t cudaGetLastError(void) {
    cudaError_t e = g_last_error;
    g_last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return g_last_error; }

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    default: return "cudaErrorUnknown(emu)";
    }
}
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulator-detected kernel bug)";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    default: return "error (cuda emulator)";
    }
}

struct EmuStream {
    unsigned flags;
};
cudaError_t cudaStreamCreate(cudaStream_t *s) {
    if (!s) return cudaErrorInvalidValue;
    *s = (cudaStream_t)(new EmuStream{0});
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    if (!s) return cudaErrorInvalidValue;
    *s = (cudaStream_t)(new EmuStream{flags});
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithPriority(cudaStream_t *s, unsigned flags, int prio) {
    (void)prio;
    return cudaStreamCreateWithFlags(s, flags);
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy(NULL)");
    delete (EmuStream *)s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    return capturing(s) || (g_cap && s == 0) ? capture_refuse("cudaStreamSynchronize") : cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t s) { return capturing(s) ? capture_refuse("cudaStreamQuery") : cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags) {
    (void)s, (void)e, (void)flags;
    return cudaSuccess;
}

struct EmuEvent {
    double t;
};
static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) {
    if (!e) return cudaErrorInvalidValue;
    *e = (cudaEvent_t)(new EmuEvent{0});
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) { (void)flags; return cudaEventCreate(e); }
cudaError_t cudaEventDestroy(cudaEvent_t e) { delete (EmuEvent *)e; return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    (void)s;
    if (!e) return cudaErrorInvalidResourceHandle;
    ((EmuEvent *)e)->t = now_ms();
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    (void)e;
    return capture_refuse("cudaEventSynchronize");
}
cudaError_t cudaEventQuery(cudaEvent_t e) { (void)e; return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    if (!ms || !a || !b) return cudaErrorInvalidValue;
    *ms = (float)(((EmuEvent *)b)->t - ((EmuEvent *)a)->t);
    return cudaSuccess;
}

static int g_pool_dummy;
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *pool, int d) {
    if (d < 0 || d >= emu_device_count() || !pool) return fail(cudaErrorInvalidDevice, "cudaDeviceGetDefaultMemPool(%d)", d);
    *pool = (cudaMemPool_t)&g_pool_dummy;
    return cudaSuccess;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, enum cudaMemPoolAttr attr, void *v) {
    (void)attr;
    if (!pool || !v) return fail(cudaErrorInvalidValue, "cudaMemPoolSetAttribute: NULL");
    return cudaSuccess;
}
cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t keep) { (void)pool, (void)keep; return cudaSuccess; }

/* Max dynamic shared memory set per kernel (cudaFuncSetAttribute). */
static std::map<const void *, int> g_func_smem;
cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value) {
    if (!func) return fail(cudaErrorInvalidDeviceFunction, "cudaFuncSetAttribute(NULL)");
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (value < 0 || value > (227 << 10))
            return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: %d bytes of dynamic shared memory (max %d)",
                        value, 227 << 10);
        g_func_smem[func] = value;
    }
    return cudaSuccess;
}

} /* extern "C" */

/* ------------------------------------------------------------ fibers */

/* x86-64 System V: a switch saves the callee-saved registers on the old
 * stack and restores them from the new one. The floating-point control
 * words (MXCSR, x87 CW), callee-saved too, are left alone: no kernel
 * changes its rounding mode, so every fiber runs in the host thread's. */
#if defined(__x86_64__)
extern "C" void emu_ctx_switch(void **save_sp, void *load_sp);
extern "C" void emu_fiber_trampoline(void);
asm(".text\n"
    ".globl emu_ctx_switch\n"
    ".type emu_ctx_switch,@function\n"
    "emu_ctx_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size emu_ctx_switch, .-emu_ctx_switch\n"
    ".globl emu_fiber_trampoline\n"
    ".type emu_fiber_trampoline,@function\n"
    "emu_fiber_trampoline:\n"
    "  movq %r12, %rdi\n"
    "  callq *%r13\n"
    "  ud2\n"
    ".size emu_fiber_trampoline, .-emu_fiber_trampoline\n");
#else
#error "cuda_emu fibers: x86-64 only"
#endif

enum ThreadState : uint8_t { T_READY, T_BARRIER, T_WARP, T_DONE };

struct Fiber {
    void *sp;
    ThreadState state;
    unsigned mask; /* the warp collective's mask while T_WARP */
    uint64_t deposit;
    void *fake;  /* AddressSanitizer's fake stack while switched out */
    bool waited; /* passed emu_grid_dependency_wait */
};

static const size_t STACK_SIZE = 64 << 10, GUARD = 4096;
static const int MAX_THREADS = 1024;

static struct Sched {
    char *stacks = NULL; /* MAX_THREADS x (GUARD + STACK_SIZE) */
    Fiber fib[MAX_THREADS];
    void *sched_sp;
    int cur;
    int n;
    uint3 bdim;
    uint64_t snapshot[MAX_THREADS / 32][32];
    void (*body)(void *);
    void *ctx;
    const char *name;
    char *smem;
    size_t smem_size;
    bool programmatic; /* the launch may start before its predecessor ends */
    std::atomic<bool> busy{false};
} S;

/* AddressSanitizer is told of every stack switch (TAU2_CUDA_EMU_ASAN). */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define ASAN_START(save, bottom, size) __sanitizer_start_switch_fiber(save, bottom, size)
#define ASAN_FINISH(save, bottom, size) __sanitizer_finish_switch_fiber(save, bottom, size)
#else
#define ASAN_START(save, bottom, size) ((void)0)
#define ASAN_FINISH(save, bottom, size) ((void)0)
#endif
static const void *g_sched_bottom;
static size_t g_sched_size;
static void *g_sched_fake;

static void fiber_main(void *arg) {
    (void)arg;
    ASAN_FINISH(NULL, &g_sched_bottom, &g_sched_size);
    S.body(S.ctx);
    /* On a GPU a programmatic dependent may run beside the kernel before
     * it; only griddepcontrol.wait orders a thread after that kernel's
     * writes, and a grid whose threads skip it may end before it. */
    if (S.programmatic && !S.fib[S.cur].waited)
        emu_bug("%s block (%u,%u,%u), thread %d: launched as a programmatic dependent, exited without "
                "grid_dependency_wait", S.name, blockIdx.x, blockIdx.y, blockIdx.z, S.cur);
    S.fib[S.cur].state = T_DONE;
    ASAN_START(NULL, g_sched_bottom, g_sched_size);
    emu_ctx_switch(&S.fib[S.cur].sp, S.sched_sp);
    abort(); /* never resumed */
}

static void fiber_init(int t) {
    char *top = S.stacks + (size_t)t * (GUARD + STACK_SIZE) + GUARD + STACK_SIZE;
    uint64_t *sp = (uint64_t *)((uintptr_t)top & ~(uintptr_t)15);
    /* after `ret` into the trampoline rsp is 16-aligned, as its call needs */
    *--sp = (uint64_t)emu_fiber_trampoline;  /* return address */
    *--sp = 0;                                /* rbp */
    *--sp = 0;                                /* rbx */
    *--sp = 0;                                /* r12: argument */
    *--sp = (uint64_t)fiber_main;             /* r13: entry */
    *--sp = 0;                                /* r14 */
    *--sp = 0;                                /* r15 */
    S.fib[t].sp = sp;
    S.fib[t].state = T_READY;
    S.fib[t].waited = false;
}

static void ensure_stacks(void) {
    if (S.stacks) return;
    size_t per = GUARD + STACK_SIZE, total = per * MAX_THREADS;
    void *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        perror("cuda-emu: mmap of the fiber stacks");
        abort();
    }
    S.stacks = (char *)m;
    for (int t = 0; t < MAX_THREADS; t++) mprotect(S.stacks + (size_t)t * per, GUARD, PROT_NONE);
}

/* threadIdx of each thread of the block, computed once per launch: the
 * divisions at every switch into a thread showed in profiles. */
static uint3 g_tidx[MAX_THREADS];

static void thread_idx_table(void) {
    for (int t = 0; t < S.n; t++)
        g_tidx[t] = uint3{t % S.bdim.x, (t / S.bdim.x) % S.bdim.y, t / (S.bdim.x * S.bdim.y)};
}

static inline void set_thread_idx(int t) { threadIdx = g_tidx[t]; }

static inline void yield_to_sched(void) {
    int me = S.cur;
    ASAN_START(&S.fib[me].fake, g_sched_bottom, g_sched_size);
    emu_ctx_switch(&S.fib[me].sp, S.sched_sp);
    ASAN_FINISH(S.fib[me].fake, &g_sched_bottom, &g_sched_size);
}

static inline void run_thread(int t) {
    S.cur = t;
    set_thread_idx(t);
    ASAN_START(&g_sched_fake, S.stacks + (size_t)t * (GUARD + STACK_SIZE) + GUARD, STACK_SIZE);
    emu_ctx_switch(&S.sched_sp, S.fib[t].sp);
    ASAN_FINISH(g_sched_fake, NULL, NULL);
}

extern "C" void emu_syncthreads(void) {
    S.fib[S.cur].state = T_BARRIER;
    yield_to_sched();
}

extern "C" const uint64_t *emu_warp_exchange(uint64_t mine, unsigned mask) {
    Fiber &f = S.fib[S.cur];
    f.state = T_WARP;
    f.mask = mask;
    f.deposit = mine;
    yield_to_sched();
    return S.snapshot[S.cur / 32];
}

extern "C" void *emu_dynamic_smem(void) { return S.smem; }

extern "C" void emu_grid_dependency_wait(void) { S.fib[S.cur].waited = true; }

static std::string block_name(void) {
    char b[160];
    snprintf(b, sizeof b, "%s block (%u,%u,%u) of grid (%u,%u,%u), %u threads", S.name, blockIdx.x, blockIdx.y,
             blockIdx.z, gridDim.x, gridDim.y, gridDim.z, S.n);
    return b;
}

/* The order threads run in between two synchronization points
 * (TAU2_CUDA_EMU_ORDER): forward (thread 0 first), reverse, or random (a
 * new permutation at every pass, from TAU2_CUDA_EMU_SEED). Code that is
 * correct on a GPU gives the same results in every order; a missing
 * __syncthreads / __syncwarp shows up as a difference between orders. */
enum Order { ORDER_FORWARD, ORDER_REVERSE, ORDER_RANDOM };
static Order g_order = [] {
    const char *o = getenv("TAU2_CUDA_EMU_ORDER");
    if (!o || !*o || !strcmp(o, "forward")) return ORDER_FORWARD;
    if (!strcmp(o, "reverse")) return ORDER_REVERSE;
    if (!strcmp(o, "random")) return ORDER_RANDOM;
    fprintf(stderr, "cuda-emu: TAU2_CUDA_EMU_ORDER=%s: not forward, reverse or random\n", o);
    abort();
}();
static uint64_t g_rng = [] {
    const char *s = getenv("TAU2_CUDA_EMU_SEED");
    return s ? strtoull(s, NULL, 0) * 0x9E3779B97F4A7C15ull + 1 : 0x2545F4914F6CDD1Dull;
}();
static uint32_t rng_next(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 32);
}
/* order[0..n) := the visiting order of 0..n-1 for one pass. */
static void make_order(int *order, int n) {
    for (int i = 0; i < n; i++) order[i] = g_order == ORDER_REVERSE ? n - 1 - i : i;
    if (g_order == ORDER_RANDOM)
        for (int i = n - 1; i > 0; i--) {
            int j = (int)(rng_next() % (uint32_t)(i + 1)), t = order[i];
            order[i] = order[j], order[j] = t;
        }
}

/* Runs one warp's lanes until each is at a barrier or done (releasing warp
 * collectives as they fill). */
static void run_warp(int w) {
    int lo = w * 32, hi = lo + 32 < S.n ? lo + 32 : S.n;
    unsigned exist = hi - lo == 32 ? 0xffffffffu : ((1u << (hi - lo)) - 1u);
    int order[32];
    for (;;) {
        make_order(order, hi - lo);
        for (int i = 0; i < hi - lo; i++) {
            int t = lo + order[i];
            if (S.fib[t].state == T_READY) run_thread(t);
        }
        /* every lane is now at a barrier, at a collective or done */
        unsigned at_warp = 0, done = 0, barrier = 0, need = 0;
        for (int t = lo; t < hi; t++) {
            unsigned bit = 1u << (t - lo);
            switch (S.fib[t].state) {
            case T_WARP: at_warp |= bit; need |= S.fib[t].mask; break;
            case T_DONE: done |= bit; break;
            case T_BARRIER: barrier |= bit; break;
            default: break;
            }
        }
        if (!at_warp) return;
        need &= exist;
        if ((need & at_warp) != need) {
            unsigned missing = need & ~at_warp;
            emu_bug("%s: warp %d: a warp collective (mask %08x) is missing lanes %08x (%s)", block_name().c_str(), w,
                    need, missing,
                    (missing & done) ? "they exited" : (missing & barrier) ? "they wait at __syncthreads" : "?");
            need = at_warp; /* continue: release the lanes that came */
        }
        for (int t = lo; t < hi; t++) {
            if (S.fib[t].state == T_WARP && ((need >> (t - lo)) & 1u)) {
                S.snapshot[w][t - lo] = S.fib[t].deposit;
                S.fib[t].state = T_READY;
            } else {
                S.snapshot[w][t - lo] = 0; /* absent or idle lane: undefined on a GPU */
            }
        }
    }
}

static void run_block(void) {
    int nw = (S.n + 31) / 32;
    for (int t = 0; t < S.n; t++) fiber_init(t);
    if (S.smem_size) memset(S.smem, 0xff, S.smem_size); /* NaN: stale reads show */
    int worder[MAX_THREADS / 32];
    for (;;) {
        make_order(worder, nw);
        for (int w = 0; w < nw; w++) run_warp(worder[w]);
        int at_barrier = 0, done = 0;
        for (int t = 0; t < S.n; t++) {
            if (S.fib[t].state == T_BARRIER) at_barrier++;
            else if (S.fib[t].state == T_DONE) done++;
        }
        if (done == S.n) return;
        if (done) {
            int first_done = -1;
            for (int t = 0; t < S.n && first_done < 0; t++)
                if (S.fib[t].state == T_DONE) first_done = t;
            emu_bug("%s: %d thread(s) wait at __syncthreads while %d exited (first exited: thread %d)",
                    block_name().c_str(), at_barrier, done, first_done);
        }
        for (int t = 0; t < S.n; t++)
            if (S.fib[t].state == T_BARRIER) S.fib[t].state = T_READY;
    }
}

static bool g_trace = getenv("TAU2_CUDA_EMU_TRACE") != NULL;

/* A launch's configuration as CUDA checks it: true, or false with the
 * error set for cudaGetLastError. */
static bool launch_ok(const char *name, const void *func, dim3 grid, dim3 block, size_t smem) {
    unsigned long n = (unsigned long)block.x * block.y * block.z;
    if (n == 0 || n > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64) {
        fail(cudaErrorInvalidConfiguration, "launch of %s: block (%u,%u,%u) is not 1..1024 threads", name, block.x,
             block.y, block.z);
        return false;
    }
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
        fail(cudaErrorInvalidConfiguration, "launch of %s: grid (%u,%u,%u) out of range", name, grid.x, grid.y,
             grid.z);
        return false;
    }
    size_t limit = 48 << 10;
    auto it = g_func_smem.find(func);
    if (it != g_func_smem.end() && (size_t)it->second > limit) limit = it->second;
    if (smem > limit) {
        fail(cudaErrorInvalidValue,
             "launch of %s: %zu bytes of dynamic shared memory over the limit %zu (cudaFuncSetAttribute)", name, smem,
             limit);
        return false;
    }
    return true;
}

static void launch_run(const char *name, dim3 grid, dim3 block, size_t smem, bool programmatic,
                       void (*body)(void *), void *ctx);

extern "C" void emu_launch_kernel(const char *name, const void *func, dim3 grid, dim3 block, size_t smem,
                                  cudaStream_t stream, bool programmatic, void (*body)(void *), void *ctx) {
    if (g_cap && stream == 0) {
        capture_refuse("a kernel launch on the legacy default stream");
        return;
    }
    if (!launch_ok(name, func, grid, block, smem)) return;
    launch_run(name, grid, block, smem, programmatic, body, ctx);
}

extern "C" bool emu_capture_active(cudaStream_t stream) { return capturing(stream); }

/* A launch into a captured stream: a kernel node owning its arguments
 * (ctx, freed by del with the last graph that holds it). */
extern "C" void emu_capture_kernel(const char *name, const void *func, dim3 grid, dim3 block, size_t smem,
                                   cudaStream_t stream, bool programmatic, void (*body)(void *), void *ctx,
                                   void (*del)(void *)) {
    std::shared_ptr<void> args(ctx, del);
    if (!capturing(stream) || !launch_ok(name, func, grid, block, smem)) return;
    g_cap->nodes->push_back([=] { launch_run(name, grid, block, smem, programmatic, body, args.get()); });
}

/* Work for a captured stream from outside this file (emu_cublas.cpp): true
 * when it was recorded as a node, false when the stream is not captured
 * (the caller then runs it now). */
bool emu_capture_add(cudaStream_t stream, std::function<void()> node) {
    if (!capturing(stream)) return false;
    g_cap->nodes->push_back(std::move(node));
    return true;
}

static void launch_run(const char *name, dim3 grid, dim3 block, size_t smem, bool programmatic,
                       void (*body)(void *), void *ctx) {
    unsigned long n = (unsigned long)block.x * block.y * block.z;
    if (S.busy.exchange(true)) {
        fprintf(stderr, "cuda-emu: concurrent kernel launches from two host threads (%s)\n", name);
        abort();
    }
    if (g_trace) fprintf(stderr, "cuda-emu: %s <<<(%u,%u,%u), (%u,%u,%u), %zu>>>\n", name, grid.x, grid.y, grid.z,
                         block.x, block.y, block.z, smem);
    ensure_stacks();
    S.n = (int)n;
    S.bdim = uint3{block.x, block.y, block.z};
    thread_idx_table();
    S.body = body;
    S.ctx = ctx;
    S.name = name;
    S.programmatic = programmatic;
    S.smem_size = smem;
    S.smem = NULL;
    if (smem && posix_memalign((void **)&S.smem, 256, smem)) {
        fprintf(stderr, "cuda-emu: out of memory for %zu bytes of shared memory\n", smem);
        abort();
    }
    blockDim = block;
    gridDim = grid;
    /* blocks one after another, in the same order mode as the threads */
    size_t nblocks = (size_t)grid.x * grid.y * grid.z;
    std::vector<int> border;
    if (g_order == ORDER_RANDOM && nblocks < ((size_t)1 << 31)) {
        border.resize(nblocks);
        make_order(border.data(), (int)nblocks);
    }
    for (size_t i = 0; i < nblocks; i++) {
        size_t b = g_order == ORDER_REVERSE ? nblocks - 1 - i : border.empty() ? i : (size_t)border[i];
        blockIdx = uint3{(unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y), (unsigned)(b / grid.x / grid.y)};
        run_block();
    }
    free(S.smem);
    S.smem = NULL;
    S.busy.store(false);
}

/* ------------------------------------------------------------ graphs */

struct EmuGraph {
    std::shared_ptr<EmuNodes> nodes;
};

extern "C" {

cudaError_t cudaStreamBeginCapture(cudaStream_t s, enum cudaStreamCaptureMode mode) {
    if (s == 0) return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamBeginCapture: the legacy default stream");
    if (g_cap) return fail(cudaErrorIllegalState, "cudaStreamBeginCapture: this thread already captures a stream");
    g_cap = new EmuCapture{s, mode, std::make_shared<EmuNodes>(), false};
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph) {
    if (!graph) return fail(cudaErrorInvalidValue, "cudaStreamEndCapture: NULL graph pointer");
    if (!capturing(s)) return fail(cudaErrorIllegalState, "cudaStreamEndCapture: stream %p is not captured", (void *)s);
    EmuCapture *c = g_cap;
    g_cap = NULL;
    *graph = NULL;
    bool invalid = c->invalid;
    if (!invalid) *graph = (cudaGraph_t)(new EmuGraph{c->nodes});
    delete c;
    return invalid ? fail(cudaErrorStreamCaptureInvalidated, "cudaStreamEndCapture: the capture was invalidated")
                   : cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t s, enum cudaStreamCaptureStatus *status) {
    if (!status) return fail(cudaErrorInvalidValue, "cudaStreamIsCapturing: NULL status");
    *status = !capturing(s) ? cudaStreamCaptureStatusNone
              : g_cap->invalid ? cudaStreamCaptureStatusInvalidated
                               : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags) {
    (void)flags;
    if (!exec || !graph) return fail(cudaErrorInvalidValue, "cudaGraphInstantiate: NULL argument");
    *exec = (cudaGraphExec_t)(new EmuGraph{((EmuGraph *)graph)->nodes});
    return cudaSuccess;
}

/* The nodes in capture order: a captured stream is one chain. */
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
    if (!exec) return fail(cudaErrorInvalidResourceHandle, "cudaGraphLaunch: NULL graph");
    std::shared_ptr<EmuNodes> nodes = ((EmuGraph *)exec)->nodes;
    if (capturing(s)) {
        g_cap->nodes->push_back([nodes] {
            for (auto &n : *nodes) n();
        });
        return cudaSuccess;
    }
    if (g_cap && s == 0) return capture_refuse("cudaGraphLaunch on the legacy default stream");
    for (auto &n : *nodes) n();
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    delete (EmuGraph *)exec;
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    delete (EmuGraph *)graph;
    return cudaSuccess;
}

} /* extern "C" */
