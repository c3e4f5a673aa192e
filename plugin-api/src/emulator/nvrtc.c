// NVRTC for the CPU emulation of device codecs (see driver.c): "compiling" keeps the source,
// which the emulated driver compiles as C++ when the module is loaded.
#include <stdlib.h>
#include <string.h>

typedef struct { char* source; } program;

int nvrtcCreateProgram(program** prog, const char* src, const char* name, int n, const char* const* headers,
                       const char* const* names) {
    (void)name; (void)n; (void)headers; (void)names;
    *prog = malloc(sizeof(program));
    (*prog)->source = strdup(src);
    return 0;
}
int nvrtcCompileProgram(program* prog, int n, const char* const* options) { (void)prog; (void)n; (void)options; return 0; }
int nvrtcGetPTXSize(program* prog, size_t* size) { *size = strlen(prog->source) + 1; return 0; }
int nvrtcGetPTX(program* prog, char* ptx) { memcpy(ptx, prog->source, strlen(prog->source) + 1); return 0; }
int nvrtcGetProgramLogSize(program* prog, size_t* size) { (void)prog; *size = 1; return 0; }
int nvrtcGetProgramLog(program* prog, char* log) { (void)prog; log[0] = 0; return 0; }
int nvrtcDestroyProgram(program** prog) { free((*prog)->source); free(*prog); *prog = 0; return 0; }
const char* nvrtcGetErrorString(int result) { return result == 0 ? "NVRTC_SUCCESS" : "NVRTC_ERROR_EMULATION"; }
