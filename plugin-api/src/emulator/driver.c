// The CUDA driver API calls device codecs make, emulated on the CPU for
// testkit::assert_device_matches_host. A module's "PTX" is its CUDA C source (see nvrtc.c): it
// is compiled as C++ with kernels.h (from this library's folder) in front, one entry point per
// `extern "C" __global__` kernel, and loaded with dlopen. Memory is host memory.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
enum { OK = 0, FAILED = 999 };

CUresult cuCtxPushCurrent_v2(void* ctx) { (void)ctx; return OK; }
CUresult cuCtxPopCurrent_v2(void** ctx) { if (ctx) *ctx = 0; return OK; }

CUresult cuGetErrorName(CUresult error, const char** name) {
    *name = error == OK ? "CUDA_SUCCESS" : "CUDA_ERROR_EMULATION";
    return OK;
}

// Device memory is written in stream order as each call is made, but a device-to-host copy
// lands as on a GPU: only when its stream is synchronized. Until then its destination holds
// 0xFF bytes (NaN in every float type), so host code that reads a copy without waiting for
// it reads garbage in the tests too instead of the right values by luck.
typedef struct pending {
    void* stream;
    void* dst;
    void* data;
    size_t n;
    struct pending* next;
} pending;
static pending* copies_in_flight = 0;
// Test threads share the emulator.
static pthread_mutex_t copies_lock = PTHREAD_MUTEX_INITIALIZER;

CUresult cuMemcpyDtoHAsync_v2(void* dst, unsigned long long src, size_t n, void* stream) {
    pending* copy = malloc(sizeof(pending));
    if (!copy) return FAILED;
    copy->data = malloc(n ? n : 1);
    if (!copy->data) { free(copy); return FAILED; }
    memcpy(copy->data, (const void*)src, n);
    memset(dst, 0xFF, n);
    copy->stream = stream;
    copy->dst = dst;
    copy->n = n;
    copy->next = 0;
    pthread_mutex_lock(&copies_lock);
    // Appended, so copies land in the order they were made.
    pending** end = &copies_in_flight;
    while (*end) end = &(*end)->next;
    *end = copy;
    pthread_mutex_unlock(&copies_lock);
    return OK;
}

CUresult cuStreamSynchronize(void* stream) {
    pthread_mutex_lock(&copies_lock);
    for (pending** at = &copies_in_flight; *at;) {
        pending* copy = *at;
        if (copy->stream != stream) { at = &copy->next; continue; }
        memcpy(copy->dst, copy->data, copy->n);
        *at = copy->next;
        free(copy->data);
        free(copy);
    }
    pthread_mutex_unlock(&copies_lock);
    return OK;
}

CUresult cuMemsetD8Async(unsigned long long dst, unsigned char value, size_t n, void* stream) {
    (void)stream;
    memset((void*)dst, value, n);
    return OK;
}

// Page-locked host memory is ordinary host memory here.
CUresult cuMemHostAlloc(void** p, size_t n, unsigned flags) {
    (void)flags;
    *p = malloc(n ? n : 1);
    return *p ? OK : FAILED;
}

CUresult cuMemFreeHost(void* p) {
    free(p);
    return OK;
}

CUresult cuModuleLoadData(void** module, const void* image) {
    const char* source = image;
    Dl_info self;
    if (!dladdr((void*)cuModuleLoadData, &self) || !self.dli_fname) return FAILED;
    char dir[4096], header[4096];
    snprintf(dir, sizeof dir, "%s", self.dli_fname);
    char* slash = strrchr(dir, '/');
    if (!slash) return FAILED;
    *slash = 0;
    snprintf(header, sizeof header, "%s/kernels.h", dir);
    static int count = 0;
    char cpp[4096], so[4096], command[16384];
    snprintf(cpp, sizeof cpp, "%s/module-%d-%d.cpp", dir, (int)getpid(), count);
    snprintf(so, sizeof so, "%s/module-%d-%d.so", dir, (int)getpid(), count);
    count++;
    FILE* f = fopen(cpp, "w");
    if (!f) return FAILED;
    fputs(source, f);
    // One C entry point per kernel: (grid, block, params) -> sb_emu_launch.
    const char* marker = "extern \"C\" __global__ void ";
    for (const char* at = strstr(source, marker); at; at = strstr(at + 1, marker)) {
        const char* name = at + strlen(marker);
        int len = (int)strcspn(name, "( \n");
        fprintf(f, "\nextern \"C\" void sb_emu_entry_%.*s(unsigned g, unsigned b, void** p) "
                   "{ sb_emu_launch(%.*s, g, b, p); }\n", len, name, len, name);
    }
    fclose(f);
    snprintf(command, sizeof command,
             "c++ -std=c++20 -O1 -shared -fPIC -pthread -w -include '%s' -x c++ '%s' -o '%s' >&2",
             header, cpp, so);
    if (system(command) != 0) return FAILED;
    void* handle = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    // The mapping outlives the files.
    unlink(cpp);
    unlink(so);
    if (!handle) {
        fprintf(stderr, "%s\n", dlerror());
        return FAILED;
    }
    *module = handle;
    return OK;
}

CUresult cuModuleGetFunction(void** function, void* module, const char* name) {
    char symbol[512];
    snprintf(symbol, sizeof symbol, "sb_emu_entry_%s", name);
    *function = dlsym(module, symbol);
    return *function ? OK : FAILED;
}

typedef void (*entry_fn)(unsigned, unsigned, void**);

CUresult cuLaunchKernel(void* function, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                        unsigned bz, unsigned shared, void* stream, void** params, void** extra) {
    (void)shared; (void)stream; (void)extra;
    if (gy != 1 || gz != 1 || by != 1 || bz != 1 || bx % 32 != 0) return FAILED;
    ((entry_fn)function)(gx, bx, params);
    return OK;
}
